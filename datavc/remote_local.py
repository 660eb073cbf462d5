"""A remote in a local directory (a mount, a NAS, another disk): ``<root>/objects/ab/<30 hex>``.

Writes follow the cache's rule (RELIABILITY.md §1): a read-only temp file in ``<root>/tmp/``
(the same file system as ``objects/``), write, fsync, rename into place, fsync the directory.
A crash leaves at most a temp file, which a later put removes once it is a day old (another
machine may still be writing a younger one: the directory can be shared).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import unquote, urlsplit

from . import crash, fsutil, pack
from .errors import ConfigError, IntegrityError, ObjectMissingError, RemoteError, from_oserror
from .hashing import Oid
from .objects import clear_dir, copy_and_hash
from .remote_base import (
    FANOUT,
    MAX_RUN,
    OBJECTS,
    PACKS,
    RUNS,
    Listed,
    Sink,
    missing,
    object_key,
    parse_name,
    remote_oserror,
)

STALE_TMP_SECONDS = 24 * 3600
LIST_PAGE = 8
"""Directory entries read and parsed in about the time of one stat (about 5 on a local disk,
many more on a network file system, where a stat is a round trip): the listing cost."""
CHUNK = 1 << 20


class LocalRemote:
    """A directory remote; ``path`` is an absolute path or a ``file://`` URL. The directory
    and its ``objects/`` and ``tmp/`` are created by the first put."""

    def __init__(self, path: str) -> None:
        self.root = local_path(path)
        self.objects_dir = os.path.join(self.root, OBJECTS)
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.packs_dir = os.path.join(self.root, PACKS)
        self.packing = True  # push many small objects as packs
        self._shelf = pack.dir_shelf(self.packs_dir, remote_oserror)
        self._cleaned = False
        self._lock = threading.Lock()
        self._batch: list[tuple[str, str]] | None = None  # (temp, key) awaiting end_batch

    def __repr__(self) -> str:
        return f"LocalRemote({self.root!r})"

    def describe(self) -> str:
        return self.root

    def close(self) -> None:
        pass

    def path_of(self, oid: Oid) -> str:
        """Where object ``oid`` is (or would be) stored."""
        return os.path.join(self.root, object_key(oid))

    # ------------------------------------------------------------------ reading

    def pack_path(self, name: str, suffix: str = pack.PACK_SUFFIX) -> str:
        return os.path.join(self.packs_dir, name + suffix)

    def missing(self, oids: Iterable[Oid]) -> set[Oid]:
        packed = self._shelf.get()
        return missing((o for o in oids if o.digest not in packed), probe=self._exists,
                       list_prefix=self._list_prefix, page=LIST_PAGE)

    def locate(self, oids: Iterable[Oid]) -> dict[Oid, pack.Packed]:
        return self._shelf.get().locate(oids)

    def iter_packs(self, *, on_junk: Callable[[str], object] | None = None
                   ) -> list[pack.PackInfo]:
        return self._shelf.scan(on_junk)

    def read_range(self, name: str, start: int, length: int, sink: Sink) -> None:
        self._read(self.pack_path(name), start, length, sink,
                   lambda: f"pack {name} is not on remote {self.describe()}")

    def _exists(self, oid: Oid) -> bool:
        path = self.path_of(oid)
        try:
            os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise remote_oserror(exc, path, "check object") from None
        return True

    def _list_prefix(self, prefix: int) -> Iterator[bytes]:
        sub = f"{prefix:02x}"
        for name in self._names(os.path.join(self.objects_dir, sub)):
            digest = parse_name(sub, name)
            if digest is not None:
                yield digest

    def _names(self, directory: str) -> Iterator[str]:
        try:
            with os.scandir(directory) as it:
                yield from (entry.name for entry in it)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise remote_oserror(exc, directory, "list") from None

    def iter_oids(self, *, on_junk: Callable[[str], object] | None = None) -> Iterator[Oid]:
        return (listed.oid for listed in self.iter_listed(on_junk=on_junk))

    def iter_listed(self, *, on_junk: Callable[[str], object] | None = None
                    ) -> Iterator[Listed]:
        for sub in sorted(self._names(self.objects_dir)):
            path = os.path.join(self.objects_dir, sub)
            if len(sub) != FANOUT or not os.path.isdir(path) or os.path.islink(path):
                _junk(on_junk, f"{OBJECTS}/{sub}")
                continue
            for name in sorted(self._names(path)):
                digest = parse_name(sub, name)
                st = _file_stat(os.path.join(path, name)) if digest is not None else None
                if digest is None or st is None:
                    _junk(on_junk, f"{OBJECTS}/{sub}/{name}")
                    continue
                yield Listed(Oid(digest), st.st_size, max(st.st_mtime, st.st_ctime))

    def get(self, oid: Oid, sink: Sink) -> None:
        at = self._shelf.get().get(oid.digest)
        if at is not None and os.path.exists(self.pack_path(at.pack)):
            self.read_range(at.pack, at.offset, at.size, sink)
            return
        self._read(self.path_of(oid), 0, -1, sink,
                   lambda: f"object {oid} is not on remote {self.describe()}")

    def _read(self, path: str, start: int, length: int, sink: Sink,
              absent: Callable[[], str]) -> None:
        """Bytes ``[start, start + length)`` of ``path`` (``length`` -1: to the end)."""
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below; sink errors stay unwrapped
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissingError(absent(), hint="push it from a clone that has it") from None
        except OSError as exc:
            raise remote_oserror(exc, path, "read object") from None
        with f:
            left = length
            try:
                f.seek(start)
            except OSError as exc:
                raise remote_oserror(exc, path, "read object") from None
            while left:
                try:
                    chunk = f.read(CHUNK if left < 0 else min(CHUNK, left))
                except OSError as exc:
                    raise remote_oserror(exc, path, "read object") from None
                if not chunk:
                    return
                sink.write(chunk)
                if left > 0:
                    left -= len(chunk)

    # ------------------------------------------------------------------ writing

    def begin_batch(self) -> None:
        with self._lock:
            self._batch = []

    def end_batch(self, *, commit: bool) -> None:
        with self._lock:
            batch, self._batch = self._batch, None
        if not batch:
            return
        if commit:
            self._publish(batch, self.objects_dir, "write objects")
        else:
            _discard(batch)

    def _publish(self, moves: list[tuple[str, str]], where: str, action: str,
                 point: str | None = None) -> None:
        """Give written temps their names: a sync barrier (every temp's bytes durable),
        the renames in order, a second barrier (the names durable). What is left of the
        temps afterwards (after a failure) is removed."""
        try:
            fsutil.sync_barrier(self.root)
            for tmp, dest in moves:
                self._rename(tmp, dest)
                if point:
                    crash.point(point)
            fsutil.sync_barrier(self.root)
        except OSError as exc:
            raise remote_oserror(exc, where, action) from None
        finally:
            _discard(moves)

    def _rename(self, tmp: str, dest: str) -> None:
        try:
            os.rename(tmp, dest)
        except FileNotFoundError:  # the first object under this prefix
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.rename(tmp, dest)

    def put(self, oid: Oid, path: str, size: int) -> None:
        dest = self.path_of(oid)
        self.prepare()
        try:
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise from_oserror(exc, path, "read") from None
        tmp = os.path.join(self.tmp_dir, f"{oid.hex}-{fsutil.tmp_name()}")
        batched = self._batch is not None
        try:
            self._write_tmp(oid, src, path, size, tmp, durable=not batched)
            crash.point("remote-tmp-written")
            if batched:
                with self._lock:
                    if self._batch is not None:
                        self._batch.append((tmp, dest))
                        tmp = ""  # owned by the batch now
                        return
                self._fsync_file(tmp)  # the batch ended meanwhile: publish on our own
            try:
                os.rename(tmp, dest)
            except FileNotFoundError:  # the first object under this prefix
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                fsutil.fsync_dir(self.objects_dir)
                os.rename(tmp, dest)
            fsutil.fsync_dir(os.path.dirname(dest))
        except OSError as exc:
            raise remote_oserror(exc, dest, "write object") from None
        finally:
            os.close(src)
            if tmp:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    @staticmethod
    def _fsync_file(path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_tmp(self, oid: Oid, src: int, path: str, size: int, tmp: str, *,
                   durable: bool = True) -> None:
        """Copy ``src`` into a new read-only ``tmp``, verify it is ``oid``, and (when
        ``durable``) fsync it."""
        out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        try:
            digest = copy_and_hash(src, out)
            written = os.fstat(out).st_size
            if digest != oid.digest or written != size:
                raise IntegrityError(
                    f"'{path}' does not hold object {oid} ({written} bytes read, {size} "
                    f"expected): not uploaded to {self.describe()}",
                    hint="run `datavc fsck` to find and repair corrupt cache objects")
            if durable:
                os.fsync(out)
        finally:
            os.close(out)

    def put_packs(self, built: list[tuple[str, bytes]]) -> None:
        """The pack temps are in ``tmp/`` (same file system): write each index as a temp
        too, one sync barrier (every byte durable), rename each pack then its index into
        ``packs/``, a second barrier (the names durable). A crash in between can leave a
        pack without its index, which readers ignore and ``gc`` removes, never the other
        way round: a reader counts an index only when its pack is there, as long as the
        index says.  Two writers of one name write the same bytes (see datavc.pack)."""
        self.prepare()
        infos = [pack.own_index(index, time.time())[1] for _, index in built]
        moves: list[tuple[str, str]] = []
        try:
            for (tmp, index), info in zip(built, infos, strict=True):
                name = info.name
                moves.append((tmp, self.pack_path(name)))
                itmp = os.path.join(self.tmp_dir, f"{name}.idx-{fsutil.tmp_name()}")
                moves.append((itmp, self.pack_path(name, pack.INDEX_SUFFIX)))
                fd = os.open(itmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
                try:
                    fsutil.write_all(fd, index)
                finally:
                    os.close(fd)
        except BaseException as exc:
            _discard(moves)
            if isinstance(exc, OSError):
                raise remote_oserror(exc, self.tmp_dir, "write packs") from None
            raise
        self._publish(moves, self.packs_dir, "write packs", "remote-pack-renamed")
        for info in infos:
            self._shelf.added(info)

    def delete_pack(self, name: str) -> None:
        _unlink(self.pack_path(name, pack.INDEX_SUFFIX), "delete pack index")
        _unlink(self.pack_path(name), "delete pack")

    def prepare(self) -> None:
        """Create ``tmp/`` and remove stale temps, once per instance."""
        with self._lock:
            if self._cleaned:
                return
            try:
                os.makedirs(self.tmp_dir, exist_ok=True)
                os.makedirs(self.objects_dir, exist_ok=True)
            except OSError as exc:
                raise remote_oserror(exc, self.root, "create remote directory") from None
            clear_dir(self.tmp_dir, time.time() - STALE_TMP_SECONDS)
            self._cleaned = True

    def delete(self, oid: Oid) -> None:
        _unlink(self.path_of(oid), "delete object")


    # ------------------------------------------------------------ run-cache entries

    def _run_path(self, key: Oid) -> str:
        return os.path.join(self.root, object_key(key, RUNS))

    def get_run(self, key: Oid) -> bytes | None:
        path = self._run_path(key)
        try:
            with open(path, "rb") as f:
                data = fsutil.read_limited(f, MAX_RUN)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise remote_oserror(exc, path, "read run-cache entry") from None
        if len(data) > MAX_RUN:
            raise RemoteError(f"run-cache entry {path} is larger than {MAX_RUN} bytes")
        return data

    def put_run(self, key: Oid, data: bytes) -> None:
        dest = self._run_path(key)
        self.prepare()
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fsutil.atomic_write(dest, data, tmp_dir=self.tmp_dir)
        except OSError as exc:
            raise remote_oserror(exc, dest, "write run-cache entry") from None

    def iter_runs(self) -> Iterator[Oid]:
        runs = os.path.join(self.root, RUNS)
        for sub in sorted(self._names(runs)):
            for name in sorted(self._names(os.path.join(runs, sub))):
                digest = parse_name(sub, name)
                if digest is not None and _is_file(os.path.join(runs, sub, name)):
                    yield Oid(digest)

    def delete_run(self, key: Oid) -> None:
        _unlink(self._run_path(key), "delete run-cache entry")


def local_path(path: str) -> str:
    """An absolute directory path from a path or a ``file://`` URL; ConfigError otherwise."""
    if path.startswith("file:"):
        parts = urlsplit(path)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ConfigError(f"remote URL {path!r} must be file:///ABSOLUTE/PATH",
                              hint="a file URL names a directory on this machine")
        path = unquote(parts.path)
    if not path or "\0" in path or not os.path.isabs(path):
        raise ConfigError(f"a directory remote needs an absolute path, not {path!r}")
    return os.path.normpath(path)


def _unlink(path: str, action: str) -> None:
    """Remove ``path``; an absent one is not an error."""
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        raise remote_oserror(exc, path, action) from None


def _discard(moves: list[tuple[str, str]]) -> None:
    """Remove the temps of ``(temp, destination)`` pairs that are still there."""
    for tmp, _ in moves:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _junk(on_junk: Callable[[str], object] | None, key: str) -> None:
    if on_junk is not None:
        on_junk(key)


def _is_file(path: str) -> bool:
    return _file_stat(path) is not None


def _file_stat(path: str) -> os.stat_result | None:
    """The stat of ``path`` when it is a regular file (not a symlink to one), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None
