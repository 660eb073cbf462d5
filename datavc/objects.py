"""The content-addressed object store: ``<cache>/objects/ab/cdef...`` (DESIGN.md §2).

Contract: an object file either is absent or holds exactly the bytes its name says, even
after a power loss. Writing is two-phase (git's ``core.fsyncMethod=batch``): every object of
an operation is first written, read-only, to a temp file ``<cache>/tmp/<hex>-<unique>``;
then :func:`publish` runs one sync barrier, renames them all into place and runs a second
barrier, after which the manifests that name them may be written. No per-object fsync, and
an object never reaches its name before its bytes are durable. Bytes are hashed as they are
copied, so every byte is read once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import BinaryIO, NamedTuple

import xxhash

from . import crash, fsutil, pack
from .errors import DatavcError, IntegrityError, ObjectMissingError, from_oserror
from .hashing import CHUNK, Oid, hash_fd

FANOUT = 2
PRIVATE = "private-"  # a directory in tmp/ of one command running without the lock
PRIVATE_MAX_AGE = 24 * 3600
_SMALL = 1 << 20


StatKey = tuple[int, int, int, int, int]
"""What the stat cache compares: (dev, ino, size, mtime_ns, ctime_ns). A plain tuple, built
once per file on the hottest path of a 100k-file status."""


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Stored(NamedTuple):
    """The result of hashing (and maybe storing) one workspace file. ``tmp`` is the temp
    file awaiting :func:`publish`, None when nothing was written (object already stored);
    ``pack``, the temp pack (a :func:`write_pack` stem) that holds it instead."""

    digest: bytes
    size: int
    executable: bool
    stat: StatKey
    tmp: str | None = None
    pack: str | None = None


class ObjectStore:
    """A directory of objects named by their XXH3-128 id."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.objects_dir = os.path.join(root, "objects")
        self.tmp_dir = os.path.join(root, "tmp")
        self.packs_dir = os.path.join(root, pack.PACKS)
        self.pending: list[str] = []  # temps written in this process, awaiting publish
        self.pending_packs: dict[str, list[bytes]] = {}  # temp pack stem -> its digests
        self.pack_small = False  # stage many small files into packs (see hash_files)
        self._shelf = pack.dir_shelf(self.packs_dir, from_oserror, local=True)

    def ensure_layout(self) -> None:
        try:
            os.makedirs(self.tmp_dir, exist_ok=True)
            for i in range(256):
                os.makedirs(os.path.join(self.objects_dir, f"{i:02x}"), exist_ok=True)
        except OSError as exc:
            raise from_oserror(exc, self.root, "create the cache") from exc

    def path(self, oid: Oid) -> str:
        return object_path(self.objects_dir, oid.digest)

    def has(self, oid: Oid) -> bool:
        return os.path.isfile(self.path(oid)) or oid.digest in self.packed()

    def packed(self) -> pack.PackSet:
        """The cache's usable packs (read once per instance, then kept up to date by
        :meth:`publish`): ``packs/<P>.pack`` with its index ``packs/<P>.idx``, as on a
        directory remote. Unusable ones are left out (their objects look absent; fsck
        reports them)."""
        return self._shelf.get()

    def reload_packs(self) -> None:
        """Read the packs afresh on next use (after packs were deleted)."""
        self._shelf.reset()

    def forget_packed(self, digests: Iterable[bytes]) -> None:
        """Count these packed objects as absent from now on in this instance: ``fsck
        --repair`` fetches loose copies of damaged packed objects (a loose copy is always
        read first)."""
        where = self.packed().where
        for d in digests:
            where.pop(d, None)

    def scan_packs(self, on_junk: Callable[[str], object] | None = None) -> list[pack.PackInfo]:
        """Every pack file pair of the cache, read afresh (fsck, gc)."""
        return self._shelf.scan(on_junk)

    def delete_pack(self, name: str) -> None:
        """Delete pack ``name``: its index first, so no reader counts half a pack."""
        for suffix in (pack.INDEX_SUFFIX, pack.PACK_SUFFIX):
            path = self.pack_path(name, suffix)
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise from_oserror(exc, path, "delete pack") from exc

    def pack_path(self, name: str, suffix: str = pack.PACK_SUFFIX) -> str:
        return os.path.join(self.packs_dir, name + suffix)

    def locate(self, digests: Iterable[bytes]) -> dict[bytes, pack.Packed]:
        """Of ``digests``, those found only in packs, and where (pack name, offset, size:
        :meth:`pack_path` names the file). A loose copy is preferred where there is one
        (fsck --repair fetches a good loose copy of an object whose packed copy is
        damaged). The records are the pack set's own: 100k of them cost no copies."""
        names = self.packed().names
        return {d: pack.decode_place(code, names) for d, code in self.locate_codes(digests).items()}

    def locate_codes(self, digests: Iterable[bytes]) -> dict[bytes, int]:
        """:meth:`locate` in the pack set's compact form (``pack.decode_place`` with
        ``packed().names`` reads it): what a 100k-file checkout hands its workers."""
        where = self.packed().where
        if not where:
            return {}
        found = {d: where[d] for d in digests if d in where}
        if found:
            for d in self._loose_digests(set(found)):
                del found[d]
        return found

    def present(self, oids: Iterable[Oid]) -> set[Oid]:
        """The subset of ``oids`` in the store."""
        wanted = {oid.digest: oid for oid in oids}
        return {wanted[d] for d in self.present_digests(set(wanted))}

    def present_digests(self, digests: set[bytes]) -> set[bytes]:
        """The subset of raw ``digests`` in the store, loose or packed."""
        where = self.packed().where
        packed = {d for d in digests if d in where} if where else set()
        return packed | self._loose_digests(digests - packed)

    def _loose_digests(self, digests: set[bytes]) -> set[bytes]:
        """The subset of ``digests`` stored loose; lists fan-out dirs when asked many."""
        if len(digests) < 4096:
            return {d for d in digests if os.path.isfile(object_path(self.objects_dir, d))}
        by_prefix: dict[str, dict[str, bytes]] = {}
        for d in digests:
            h = d.hex()
            by_prefix.setdefault(h[:FANOUT], {})[h[FANOUT:]] = d
        found: set[bytes] = set()
        for prefix, rest in by_prefix.items():
            try:
                names = os.listdir(os.path.join(self.objects_dir, prefix))
            except FileNotFoundError:
                continue
            found.update(rest[n] for n in names if n in rest)
        return found

    def clear_tmp(self) -> None:
        """Remove temp files of dead writers, in ``tmp/`` and its fan-out directories (which
        stay), private directories a day old, and half packs (one file of the two: a writer
        of ``packs/`` holds the lock, so one found now was left by a killed one); only call
        with the repository lock held."""
        clear_dir(self.tmp_dir)
        try:
            names = os.listdir(self.packs_dir)
        except OSError:  # none yet, or unreadable: nothing is removed on a partial view
            names = []
        halves: dict[str, int] = {}
        for name in names:
            stem, dot, suffix = name.partition(".")
            if f"{dot}{suffix}" in (pack.PACK_SUFFIX, pack.INDEX_SUFFIX):
                halves[stem] = halves.get(stem, 0) + 1
        for stem, n in halves.items():
            if n == 1 and pack.is_pack_name(stem):
                with contextlib.suppress(DatavcError):
                    self.delete_pack(stem)
        before = time.time() - PRIVATE_MAX_AGE
        with contextlib.suppress(OSError), os.scandir(self.tmp_dir) as it:
            for entry in it:
                with contextlib.suppress(OSError):
                    if (entry.name.startswith(PRIVATE) and entry.is_dir(follow_symlinks=False)
                            and entry.stat(follow_symlinks=False).st_mtime < before):
                        shutil.rmtree(entry.path, ignore_errors=True)

    @contextlib.contextmanager
    def private_tmp(self) -> Iterator[str]:
        """A directory of its own in ``tmp/`` for a command that runs without the lock
        (``push``), removed when done: the lock holder's clearing of ``tmp/`` leaves it
        alone unless it is a day old (left by a killed process)."""
        path = os.path.join(self.tmp_dir, PRIVATE + fsutil.tmp_name())
        try:
            os.makedirs(path)
        except OSError as exc:
            raise from_oserror(exc, self.tmp_dir, "create a temp directory in") from exc
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def iter_oids(self) -> Iterable[Oid]:
        """Every object stored loose (packed ones: :meth:`packed`)."""
        for prefix in sorted(os.listdir(self.objects_dir)):
            sub = os.path.join(self.objects_dir, prefix)
            if len(prefix) != FANOUT or not os.path.isdir(sub):
                continue
            for name in sorted(os.listdir(sub)):
                with contextlib.suppress(ValueError, DatavcError):
                    yield Oid(bytes.fromhex(prefix + name))

    def read_bytes(self, oid: Oid, *, limit: int = 64 << 20) -> bytes:
        """Read a (small) object whole and verify it against its id."""
        path = self.path(oid)
        try:
            with open(path, "rb") as f:
                data = fsutil.read_limited(f, limit)
        except FileNotFoundError:
            at = self.packed().get(oid.digest)
            if at is not None:
                try:
                    return self._read_packed(oid, at, limit)
                except ObjectMissingError:  # its pack went (gc rewrote it): look again
                    self.reload_packs()
                    at = self.packed().get(oid.digest)
                    if at is None:
                        raise
                    return self._read_packed(oid, at, limit)
            raise ObjectMissingError(
                f"object {oid} is not in the cache ({path})",
                hint="re-add the data that produced it, or copy the object from another "
                     "clone's .datavc/cache",
            ) from None
        except OSError as exc:
            raise from_oserror(exc, path, "read object") from exc
        if len(data) > limit:
            raise IntegrityError(f"object {oid} is larger than the {limit}-byte limit for it")
        if xxhash.xxh3_128_digest(data) != oid.digest:
            raise IntegrityError(
                f"cache object {oid} is corrupt: its content does not match its id ({path})",
                hint="delete the object file and re-add the data that produced it",
            )
        return data

    def _read_packed(self, oid: Oid, at: pack.Packed, limit: int) -> bytes:
        path = self.pack_path(at.pack)
        if at.size > limit:
            raise IntegrityError(f"object {oid} is larger than the {limit}-byte limit for it")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                data = os.pread(fd, at.size, at.offset)
            finally:
                os.close(fd)
        except FileNotFoundError:
            raise ObjectMissingError(f"object {oid} is not in the cache (its pack {path} "
                                     f"is gone)", hint="run the command again") from None
        except OSError as exc:
            raise from_oserror(exc, path, "read object") from exc
        if xxhash.xxh3_128_digest(data) != oid.digest:
            raise IntegrityError(
                f"cache object {oid} is corrupt: its bytes in pack {path} do not match its id",
                hint="`datavc fsck --repair --remote NAME` fetches a good copy; or, with a "
                     "good copy of the file, `datavc hash-object -w FILE` stores it loose "
                     "(read first)")
        return data

    def extract(self, oids: Iterable[Oid], into: Callable[[], str]) -> dict[Oid, str]:
        """A file path holding each of ``oids``: the loose object, or for one found only in
        a pack a verified copy written into the directory ``into()`` gives, asked for only
        then (for code that reads whole files: uploads of single objects)."""
        oids = list(oids)
        located = self.locate(o.digest for o in oids)
        where = into() if located else ""
        out = {}
        for oid in oids:
            if oid.digest not in located:
                out[oid] = self.path(oid)
                continue
            data = self.read_bytes(oid, limit=pack.MAX_OBJECT)
            try:
                out[oid] = write_tmp(where, oid.digest, data)
            except OSError as exc:
                raise from_oserror(exc, where, f"copy object {oid} into") from exc
        return out

    def unpack(self, digests: Iterable[bytes]) -> int:
        """Stage a loose copy of each of ``digests`` found only in packs (hardlink and
        symlink checkouts link loose objects); pending until :func:`publish`. The count."""
        located = self.locate(digests)
        for digest in located:
            data = self.read_bytes(Oid(digest), limit=pack.MAX_OBJECT)
            try:
                self.pending.append(write_tmp(self.tmp_dir, digest, data))
            except OSError as exc:
                raise from_oserror(exc, self.tmp_dir, f"store object {Oid(digest)} in") from exc
        return len(located)

    def size_of(self, oid: Oid) -> int:
        """The size of a stored object (loose or packed)."""
        path = self.path(oid)
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            at = self.packed().get(oid.digest)
            if at is not None:
                return at.size
            raise ObjectMissingError(f"object {oid} is not in the cache ({path})") from None
        except OSError as exc:
            raise from_oserror(exc, path, "read object") from exc

    def add_bytes(self, data: bytes, *, replace: bool = False) -> Oid:
        """Stage ``data`` as an object (pending until :func:`publish`); return its id.
        With ``replace``, even when an object of that name exists (a corrupt one is then
        replaced by the right bytes, atomically)."""
        digest = xxhash.xxh3_128_digest(data)
        if replace or not os.path.exists(object_path(self.objects_dir, digest)):
            try:
                self.pending.append(write_tmp(self.tmp_dir, digest, data))
            except OSError as exc:
                raise from_oserror(exc, self.tmp_dir, f"store object {Oid(digest)} in") from exc
        return Oid(digest)

    def receive(self, oid: Oid, fill: Callable[[_HashingSink], object]) -> int:
        """Stage object ``oid`` from bytes that ``fill(sink)`` writes into ``sink`` (a
        download), hashing them as they arrive. Returns the size. When they do not hash to
        ``oid`` nothing is staged and IntegrityError (exit 3) is raised; when ``fill``
        fails, nothing is staged either. Thread-safe."""
        try:
            tmp = tmp_path(self.tmp_dir, oid.digest)
            f = open(tmp, "xb")  # noqa: SIM115 - closed below, unlinked on failure
        except OSError as exc:
            raise from_oserror(exc, self.tmp_dir, f"store object {oid} in") from exc
        sink = _HashingSink(f)
        try:
            with f:
                fill(sink)
            if sink.hasher.digest() != oid.digest:
                raise IntegrityError(
                    f"object {oid} arrived with other content ({sink.size} bytes hashing to "
                    f"{Oid(sink.hasher.digest())}); it was not stored")
            os.chmod(tmp, 0o444)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise from_oserror(exc, tmp, f"store object {oid} in") from exc
            raise
        crash.point("object-tmp-written")
        self.pending.append(tmp)
        return sink.size

    def add_file(self, path: str) -> Stored:
        """Stage one file's content as an object (pending until :func:`publish`)."""
        stored = store_file(path, self.objects_dir, self.tmp_dir)
        if stored.tmp:
            self.pending.append(stored.tmp)
        return stored

    def pending_digests(self) -> set[bytes]:
        """Digests of the objects staged in this process, not yet published."""
        out = {bytes.fromhex(os.path.basename(t)[:32]) for t in self.pending}
        for digests in self.pending_packs.values():
            out.update(digests)
        return out

    def sync(self) -> None:
        """One sync barrier on the cache's file system."""
        fsutil.sync_barrier(self.root)

    def publish(self, rename: Callable[[list[str]], object] | None = None) -> None:
        """Barrier, name every pending object and pack, barrier. ``rename`` names the loose
        ones (default: here, serially; see parallel.publish)."""
        tmps, self.pending = self.pending, []
        stems, self.pending_packs = list(self.pending_packs), {}
        if not tmps and not stems:
            return
        try:
            self.sync()
            crash.point("objects-synced")
            if tmps:
                (rename or partial(rename_into_place, self.objects_dir))(tmps)
            self._name_packs(stems)
            self.sync()
        finally:
            for stem in stems:  # left only when the rename failed
                discard_pack(stem)

    def _name_packs(self, stems: list[str]) -> None:
        """Rename each synced temp pack into ``packs/``: the pack, then its index (a reader
        counts a pack only once both are there)."""
        if not stems:
            return
        try:
            os.makedirs(self.packs_dir, exist_ok=True)
        except OSError as exc:
            raise from_oserror(exc, self.packs_dir, "create") from exc
        for stem in stems:
            name = os.path.basename(stem)[len(PACK_TMP):][:32]
            for suffix in (pack.PACK_SUFFIX, pack.INDEX_SUFFIX):
                dest = self.pack_path(name, suffix)
                try:
                    os.rename(stem + suffix, dest)
                except OSError as exc:
                    raise from_oserror(exc, dest, "name pack") from exc
                crash.point("pack-renamed")
            with open(self.pack_path(name, pack.INDEX_SUFFIX), "rb") as f:
                _, info = pack.own_index(f.read(), time.time())
            self._shelf.added(info)


class _HashingSink:
    """A write-only binary file that hashes what passes through it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.hasher, self.size = f, xxhash.xxh3_128(), 0

    def write(self, data: bytes, /) -> int:
        self.hasher.update(data)
        self.size += len(data)
        return self.f.write(data)


def object_path(objects_dir: str, digest: bytes) -> str:
    hexd = digest.hex()
    return os.path.join(objects_dir, hexd[:FANOUT], hexd[FANOUT:])


def store_file(path: str, objects_dir: str, tmp_dir: str | None) -> Stored:
    """Hash ``path`` and, when ``tmp_dir`` is given, copy it into the store in the same read.

    Raises DatavcError when the file changes while it is read.
    """
    return store_fd(open_for_read(path), path, objects_dir, tmp_dir)


def open_for_read(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise from_oserror(exc, path, "read") from exc


def store_fd(fd: int, path: str, objects_dir: str, tmp_dir: str | None,
             keep: Callable[[bytes, bytes], None] | None = None) -> Stored:
    """:func:`store_file` on an already opened ``fd`` (closed here). With ``keep``, a
    small file's bytes go to ``keep(digest, data)`` (a pack in the making) instead of a
    temp file, unless the object is stored loose already."""
    tmp = None
    try:
        before = os.fstat(fd)
        if before.st_size <= _SMALL:
            digest, tmp = _store_small(fd, before.st_size, objects_dir, tmp_dir, keep)
        else:
            digest, tmp = _store_stream(fd, objects_dir, tmp_dir)
        after = os.fstat(fd)
    except OSError as exc:
        raise from_oserror(exc, path, "store") from exc
    finally:
        os.close(fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        if tmp:
            os.unlink(tmp)
        raise DatavcError(
            f"'{path}' changed while it was being read",
            hint="wait for whatever writes it to finish, then run the command again",
        )
    return Stored(digest, before.st_size, bool(before.st_mode & 0o100), stat_key(before), tmp)


def _store_small(fd: int, size: int, objects_dir: str, tmp_dir: str | None,
                 keep: Callable[[bytes, bytes], None] | None = None
                 ) -> tuple[bytes, str | None]:
    # One read: a regular file yields ``size`` bytes at once. If it grew meanwhile, read the
    # rest; the caller's fstat-after check then refuses the changed file anyway.
    data = os.read(fd, size + 1)
    if len(data) > size:
        chunks = [data]
        while more := os.read(fd, CHUNK):
            chunks.append(more)
        data = b"".join(chunks)
    digest = xxhash.xxh3_128_digest(data)
    if tmp_dir is None or os.path.exists(object_path(objects_dir, digest)):
        return digest, None
    if keep is not None and len(data) == size:
        keep(digest, data)
        return digest, None
    return digest, write_tmp(tmp_dir, digest, data)


def _store_stream(fd: int, objects_dir: str,
                  tmp_dir: str | None) -> tuple[bytes, str | None]:
    if tmp_dir is None:
        return hash_fd(fd)[0].digest, None
    tmp = os.path.join(tmp_dir, f"stream-{fsutil.tmp_name()}")
    out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    try:
        digest = copy_and_hash(fd, out)
    except BaseException:
        os.close(out)
        os.unlink(tmp)
        raise
    os.close(out)
    if os.path.exists(object_path(objects_dir, digest)):
        os.unlink(tmp)
        return digest, None
    named = tmp_path(tmp_dir, digest)
    os.rename(tmp, named)  # within tmp/: the name now says which object it will become
    crash.point("object-tmp-written")
    return digest, named


def copy_and_hash(src: int, out: int) -> bytes:
    """Copy ``src`` into ``out`` in CHUNK pieces and return the digest of what ``out`` holds.

    The kernel copies each piece (copy_file_range: no trip through Python, and a reflink or
    server-side copy where the file system offers one); the piece is then read back from
    ``out`` (page cache) and hashed, so the object's name always matches the bytes it holds,
    even if the source changes meanwhile (the caller's fstat check refuses such a source).
    Falls back to read-hash-write where copy_file_range is unsupported.
    """
    hasher = xxhash.xxh3_128()
    piece = min(CHUNK, max(os.fstat(src).st_size, _MIN_PIECE))  # a listing needs no 4 MiB
    buf = bytearray(piece)
    view = memoryview(buf)
    pos = 0
    while True:
        try:
            n = os.copy_file_range(src, out, piece, pos, pos)
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
            return _copy_by_hand(src, out, pos, hasher, buf)
        if not n:
            return hasher.digest()
        got = os.preadv(out, [view[:n]], pos)
        hasher.update(view[:got])
        pos += n


def _copy_by_hand(src: int, out: int, pos: int, hasher: xxhash.xxh3_128,
                  buf: bytearray) -> bytes:
    view = memoryview(buf)
    while n := os.preadv(src, [buf], pos):
        hasher.update(view[:n])
        os.lseek(out, pos, os.SEEK_SET)
        fsutil.write_all(out, view[:n])
        pos += n
    return hasher.digest()


_MIN_PIECE = 64 << 10
_NO_COPY_RANGE = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}


def clear_dir(tmp_dir: str, before: float | None = None) -> None:
    """Remove the files in ``tmp_dir`` and in its 2-hex fan-out directories (those older
    than ``before``, a time, when given); the directories stay."""
    with contextlib.suppress(OSError), os.scandir(tmp_dir) as it:
        for entry in it:
            with contextlib.suppress(OSError):
                if len(entry.name) == FANOUT and entry.is_dir(follow_symlinks=False):
                    clear_dir(entry.path, before)
                elif before is None or entry.stat(follow_symlinks=False).st_mtime < before:
                    os.unlink(entry.path)


def tmp_path(tmp_dir: str, digest: bytes) -> str:
    """A new staging name for object ``digest``: ``<tmp>/<2 hex>/<32 hex>-<unique>``, its
    fan-out directory created when missing. Staging fans out like ``objects/``: 100k temps
    in one directory made two writers wait on its lock (creating 100k files from two
    processes took 4.7 s there, 2.0 s in 256 directories)."""
    hexd = digest.hex()
    sub = os.path.join(tmp_dir, hexd[:FANOUT])
    if not os.path.isdir(sub):
        os.makedirs(sub, exist_ok=True)
    return os.path.join(sub, f"{hexd}-{fsutil.tmp_name()}")


def write_tmp(tmp_dir: str, digest: bytes, data: bytes) -> str:
    """Write ``data`` read-only to a new :func:`tmp_path`; no fsync (see publish)."""
    tmp = tmp_path(tmp_dir, digest)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    try:
        fsutil.write_all(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    crash.point("object-tmp-written")
    return tmp


def rename_into_place(objects_dir: str, tmps: list[str]) -> list[str]:
    """Give synced temps their object names (idempotent: same name, same bytes)."""
    for tmp in tmps:
        name = os.path.basename(tmp)
        dest = os.path.join(objects_dir, name[:FANOUT], name[FANOUT:32])
        try:
            try:
                os.rename(tmp, dest)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.rename(tmp, dest)
        except OSError as exc:
            raise from_oserror(exc, dest, "name object") from exc
        crash.point("object-renamed")
    return tmps


def read_verified(store: ObjectStore, oid: Oid) -> Iterator[bytes]:
    """An object's bytes in chunks, after the whole object was verified against its id.

    Raises IntegrityError before yielding anything when the content does not match.
    """
    if store.locate([oid.digest]):
        yield store.read_bytes(oid, limit=pack.MAX_OBJECT)
        return
    path = store.path(oid)
    verify_object(path, oid)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def verify_object(path: str, oid: Oid) -> None:
    """Re-hash one object file; raise ObjectMissingError or IntegrityError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ObjectMissingError(f"object {oid} is not in the cache ({path})") from None
    try:
        got, _ = hash_fd(fd)
    finally:
        os.close(fd)
    if got != oid:
        raise IntegrityError(f"cache object {oid} is corrupt: its content does not match its id "
                             f"({path})",
                             hint="delete the object file and re-add the data that produced it")


PACK_TMP = "pack-"


def write_pack(tmp_dir: str, objects: list[tuple[bytes, bytes]]) -> str:
    """Write ``objects`` (digest, bytes; verified by the caller) as a pack and its index,
    read-only, to ``<tmp_dir>/pack-<P>-<unique>.pack`` and ``.idx``; no fsync (see
    :meth:`ObjectStore.publish`). Returns that stem. Nothing is left on failure."""
    entries = [(d, len(data)) for d, data in objects]
    body = b"".join(data for _, data in objects)
    index = pack.encode_index(xxhash.xxh3_128_digest(body), entries)
    stem = os.path.join(tmp_dir, f"{PACK_TMP}{pack.index_name(index)}-{fsutil.tmp_name()}")
    written = []
    try:
        for suffix, data in ((pack.PACK_SUFFIX, body), (pack.INDEX_SUFFIX, index)):
            fd = os.open(stem + suffix, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o444)
            written.append(stem + suffix)
            try:
                fsutil.write_all(fd, data)
                fsutil.start_writeback(fd)
            finally:
                os.close(fd)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    crash.point("pack-tmp-written")
    return stem


def read_pack_objects(path: str, places: Iterable[tuple[bytes, int, int]]
                      ) -> list[tuple[bytes, bytes]] | None:
    """``(digest, bytes)`` of each ``(digest, offset, size)`` of pack file ``path``, each
    verified against its id; None when the pack is gone or one does not read back as its
    id. Other OSErrors are the caller's to word."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        out = []
        for digest, offset, size in places:
            data = os.pread(fd, size, offset)
            if len(data) != size or xxhash.xxh3_128_digest(data) != digest:
                return None
            out.append((digest, data))
        return out
    finally:
        os.close(fd)


def discard_pack(stem: str) -> None:
    """Remove what is left of a temp pack (its two files)."""
    for suffix in (pack.PACK_SUFFIX, pack.INDEX_SUFFIX):
        with contextlib.suppress(OSError):
            os.unlink(stem + suffix)
