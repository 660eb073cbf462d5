"""Reading one tracked file of a stored tree: finding it by walking only the listings on its
path, and a read-only file object over its cache object that never hands out the whole
content of an object that does not match its id.

Verification (docs/api.md, "Verified reading"): an object of at most ``WHOLE_MAX`` bytes is
read into memory and verified when it is opened, so every byte handed out is verified. A
bigger one is streamed from the cache: bytes are hashed in order as they are first read
(a read that skips ahead hashes the bytes skipped), and the read that reaches the end of the
object verifies the whole object before it returns, so ``read()`` of the whole content,
and every consumer that reads to the end, gets an :class:`IntegrityError` (exit 3) instead
of corrupt data; a consumer that stops early has seen an unverified prefix.
"""

from __future__ import annotations

import io
import os
import stat
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

from . import listing
from .errors import (
    DatavcError,
    IntegrityError,
    InvalidInputError,
    ObjectMissingError,
    UnsafePathError,
    UsageError,
    from_oserror,
)
from .hashing import CHUNK, Oid
from .paths import split_relpath

WHOLE_MAX = 16 << 20
"""Objects up to this size are read whole and verified when opened."""

BUFFER_SIZE = 128 << 10
MODES = ("rb", "br")


def check_mode(mode: str) -> None:
    """Only binary reading is offered (exit 2 otherwise)."""
    if mode not in MODES:
        raise UsageError(f"mode {mode!r} is not supported: datavc opens tracked files "
                         "read-only in binary mode ('rb')",
                         hint="for text, wrap the file: io.TextIOWrapper(f, encoding='utf-8')")


def data_path(root: str, path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The components of a work-tree path given to ``open``: relative to the repository
    root (``/``-separated, taken literally), or absolute inside it. ``..``, ``.``, empty
    components and ``.git``/``.datavc`` are refused (exit 6); a path outside the repository
    or the root itself is a usage error (exit 2)."""
    text = os.fspath(path)
    rel = text
    if os.path.isabs(text):
        rel = os.path.relpath(os.path.normpath(text), root).replace(os.sep, "/")
        if rel == ".." or rel.startswith("../"):
            raise UsageError(f"'{text}' is not inside the repository {root}")
    if rel in ("", "."):
        raise UsageError(f"'{text}' is the repository root itself",
                         hint="name a tracked file, e.g. data/images/cat.jpg")
    try:
        return split_relpath(rel, where=f"the path '{text}'")
    except UnsafePathError as exc:
        raise UnsafePathError(exc.message, hint="name a tracked file by its path from the "
                              "repository root, e.g. data/images/cat.jpg (no '.' or '..')"
                              ) from None


@dataclass(frozen=True, slots=True)
class Found:
    """The tracked file a path names: its content's id and size."""

    path: str
    oid: Oid
    size: int


@dataclass(frozen=True, slots=True)
class _Decoded:
    entries: dict[str, listing.Entry]
    size: int
    nfiles: int


class Listings:
    """Decoded listings by id, verified and validated once, kept for later lookups (ids
    name immutable content). Bounded by the number of entries held, least recently used
    dropped first."""

    MAX_ENTRIES = listing.MAX_ENTRIES

    def __init__(self, load: Callable[[Oid], bytes]) -> None:
        self._load = load
        self._held: OrderedDict[Oid, _Decoded] = OrderedDict()
        self._count = 0

    def get(self, oid: Oid) -> _Decoded:
        found = self._held.get(oid)
        if found is not None:
            self._held.move_to_end(oid)
            return found
        entries = listing.decode(self._load(oid), where=str(oid))
        found = _Decoded({e.name: e for e in entries}, sum(e.size for e in entries),
                         sum(e.nfiles for e in entries))
        self._held[oid] = found
        self._count += len(entries)
        while self._count > self.MAX_ENTRIES and len(self._held) > 1:
            _, dropped = self._held.popitem(last=False)
            self._count -= len(dropped.entries)
        return found


def lookup(listings: Listings, top: listing.Entry, target: str, rest: tuple[str, ...],
           *, path: str, rev: str | None) -> Found:
    """Walk from the target's ``top`` entry (its pointer, as an entry) down ``rest``,
    reading one listing per directory on the way. Each listing must add up to what its
    parent declares (exit 6); a missing name is not tracked (exit 1); a directory is not a
    file (exit 2)."""
    at = f" at revision '{rev}'" if rev is not None else ""
    entry, where = top, target
    for name in rest:
        if entry.kind != listing.DIR:
            raise DatavcError(f"'{path}' is not tracked by datavc{at}: '{where}' is a file, "
                              "not a directory", hint=_ls_hint(target, rev))
        decoded = listings.get(entry.oid)
        if (decoded.size, decoded.nfiles) != (entry.size, entry.nfiles):
            raise InvalidInputError(
                f"listing {entry.oid} does not add up: it holds {decoded.nfiles} files / "
                f"{decoded.size} bytes where its parent declares {entry.nfiles} / "
                f"{entry.size}", hint="the manifest or listing was altered; restore it from git")
        child = decoded.entries.get(name)
        if child is None:
            raise DatavcError(f"'{path}' is not tracked by datavc{at}: '{where}' has no "
                              f"entry '{name}'", hint=_ls_hint(target, rev))
        entry, where = child, f"{where}/{name}"
    if entry.kind != listing.FILE:
        what = "a tracked directory" if path == target else f"a directory in '{target}'"
        raise UsageError(f"'{path}' is {what}, not a file",
                         hint=f"open one of its files; {_ls_hint(target, rev)}")
    return Found(path, entry.oid, entry.size)


def _ls_hint(target: str, rev: str | None) -> str:
    return f"`datavc ls {target}{'' if rev is None else ' --rev ' + rev}` lists its files"


def open_object(object_path: str, found: Found) -> io.BufferedReader:
    """A verified, read-only binary file over the cache object of ``found``.

    Raises ObjectMissingError when the object is not there, IntegrityError (exit 3) when its
    size differs from the one declared or, for objects up to WHOLE_MAX, its content does not
    match its id."""
    try:
        fd = os.open(object_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ObjectMissingError(f"object {found.oid} is not in the cache "
                                 f"({object_path})") from None
    except OSError as exc:
        raise from_oserror(exc, object_path, "read object") from exc
    return io.BufferedReader(ObjectReader(fd, found, object_path), buffer_size=BUFFER_SIZE)


def open_bytes(data: bytes, found: Found, where: str) -> io.BufferedReader:
    """:func:`open_object` over an object's bytes read and verified already (``where``,
    the pack they came from, for messages)."""
    return io.BufferedReader(ObjectReader(None, found, where, data), buffer_size=BUFFER_SIZE)


def _corrupt(oid: Oid, path: str) -> IntegrityError:
    return IntegrityError(
        f"cache object {oid} is corrupt: its content does not match its id ({path})",
        hint="delete the object file and re-add the data that produced it")


class ObjectReader(io.RawIOBase):
    """The raw, seekable, read-only file under :func:`open_object` (see the module doc).

    ``oid`` and ``size`` are those of the content; ``verified`` says whether every byte was
    checked against ``oid`` already. After a mismatch every read raises IntegrityError.
    """

    def __init__(self, fd: int | None, found: Found, object_path: str,
                 data: bytes | None = None) -> None:
        """Takes ownership of ``fd`` (closed here when this raises); or, with ``fd``
        None, serves ``data``: the object's bytes, already verified (a packed object)."""
        self._fd: int | None = fd
        self._data: memoryview | None = None
        super().__init__()
        self.oid, self.size, self._path = found.oid, found.size, object_path
        self._name = found.path
        self._pos = self._hashed = 0
        self._hasher: xxhash.xxh3_128 | None = xxhash.xxh3_128()
        self._failed = False
        if fd is None:
            if data is None or len(data) != self.size:
                raise IntegrityError(
                    f"cache object {self.oid} holds {len(data or b'')} bytes where the "
                    f"manifest declares {self.size} ({object_path})",
                    hint="if the manifest was altered, restore it from git")
            self._data, self._hasher, self._hashed = memoryview(data), None, self.size
            return
        try:
            self._check_size(os.fstat(fd))
            if self.size <= WHOLE_MAX:
                self._load_whole()
        except BaseException:
            self.close()
            raise

    def _check_size(self, st: os.stat_result) -> None:
        if stat.S_ISREG(st.st_mode) and st.st_size == self.size:
            return
        got = f"{st.st_size} bytes" if stat.S_ISREG(st.st_mode) else "no regular file"
        raise IntegrityError(
            f"cache object {self.oid} is corrupt: it holds {got} where the manifest "
            f"declares {self.size} ({self._path})",
            hint="delete the object file and re-add the data that produced it; or, "
                 "if the manifest was altered, restore it from git")

    @property
    def name(self) -> str:
        return self._name

    @property
    def mode(self) -> str:
        return "rb"

    @property
    def verified(self) -> bool:
        return self._hasher is None

    def _load_whole(self) -> None:
        buf = bytearray(self.size)
        if self._pread_full(memoryview(buf), 0) != self.size:
            raise _corrupt(self.oid, self._path)
        if xxhash.xxh3_128_digest(buf) != self.oid.digest:
            raise _corrupt(self.oid, self._path)
        self._data, self._hasher, self._hashed = memoryview(buf), None, self.size
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def readable(self) -> bool:
        self._check_open()
        return True

    def seekable(self) -> bool:
        self._check_open()
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check_open()
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence ({whence})")
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: object) -> int:
        self._check_open()
        view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        n = max(0, min(len(view), self.size - self._pos))
        if self._data is not None:
            view[:n] = self._data[self._pos:self._pos + n]
            self._pos += n
            return n
        return self._read_stream(view[:n])

    def readall(self) -> bytes:
        self._check_open()
        if self._data is not None:
            out = bytes(self._data[self._pos:])
            self._pos = max(self._pos, self.size)
            return out
        buf = bytearray(max(0, self.size - self._pos))
        got = self._read_stream(memoryview(buf))
        return bytes(buf) if got == len(buf) else bytes(buf[:got])

    def _read_stream(self, view: memoryview) -> int:
        if self._failed:
            raise _corrupt(self.oid, self._path)
        pos = self._pos
        self._hash_upto(min(pos, self.size))
        got = self._pread_full(view, pos)
        try:
            if got != len(view):  # the object shrank under us
                self._fail()
            if self._hasher is not None and pos + got > self._hashed:
                self._hasher.update(view[self._hashed - pos:got])
                self._hashed = pos + got
            if pos + got >= self.size and self._hasher is not None:
                self._finish()
        except IntegrityError:
            view[:got] = bytes(got)  # nothing of a corrupt object's end is handed out
            raise
        self._pos = pos + got
        return got

    def _hash_upto(self, end: int) -> None:
        """Hash the bytes between what was hashed and ``end`` (a read that skipped ahead)."""
        if self._hasher is None or end <= self._hashed:
            return
        buf = bytearray(min(CHUNK, end - self._hashed))
        while self._hashed < end:
            view = memoryview(buf)[:min(len(buf), end - self._hashed)]
            got = self._pread_full(view, self._hashed)
            if got != len(view):
                self._fail()
            self._hasher.update(view)
            self._hashed += got

    def _finish(self) -> None:
        self._hash_upto(self.size)
        if self._hasher is None or self._hasher.digest() != self.oid.digest:
            self._fail()
        self._hasher = None

    def _fail(self) -> None:
        self._failed = True
        raise _corrupt(self.oid, self._path)

    def _pread_full(self, view: memoryview, pos: int) -> int:
        """Read ``len(view)`` bytes at ``pos``, fewer only at the end of the file."""
        assert self._fd is not None
        done = 0
        try:
            while done < len(view):
                n = os.preadv(self._fd, [view[done:]], pos + done)
                if not n:
                    break
                done += n
        except OSError as exc:
            raise from_oserror(exc, self._path, "read object") from exc
        return done

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        self._data = None
        super().close()
