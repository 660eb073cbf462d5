"""Packs: many small objects in one file on a remote, so a push or pull of 100k small files
costs a few hundred requests and file creations instead of 100k (docs/format.md, Packs).

A pack is the plain concatenation of its objects' bytes; its index says which objects, in
order, and how long each is, so offsets are the running sums of the sizes::

    packs/<P>.pack    the objects' bytes
    packs/<P>.idx     body ++ XXH3-128(body), body = canonical msgpack of
                      ["datavc.pack", 1, <XXH3-128 of the .pack>, <entries>],
                      entries = n x (16-byte id, u64 size)

<P> is the XXH3-128 of the entries (32 hex): they determine the pack's bytes, so two writers
of one name write the same two files (a name from the pack's bytes alone would not do: with
an empty object, [A, empty, B] and [A, B] are the same bytes).

A reader counts a pack only when both files are there and the ``.pack`` is as long as its
index says; every object read out of a pack is still verified against its own id. This
module is the format alone: encoding, the hostile-input decoder, the in-memory set of a
remote's packs and the planning of ranged reads. The remotes store and read the files.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import msgpack
import xxhash

from . import fsutil
from .errors import RemoteError, UnknownFormatError
from .hashing import DIGEST_SIZE, Oid

PACKS = "packs"  # the directory (or key prefix) of a store's packs
MAGIC = "datavc.pack"
VERSION = 1
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".idx"
ENTRY = struct.Struct(">16sQ")  # id, size
MAX_ENTRIES = 1_000_000
MAX_PACK = 1 << 30  # a reader refuses a bigger pack (writers make TARGET-sized ones)
MAX_OBJECT = 16 << 20  # nor an index entry bigger than this: readers hold one in memory
MAX_INDEX = 64 + ENTRY.size * MAX_ENTRIES + DIGEST_SIZE
MAX_PACKED = 2_000_000  # packed objects a reader keeps in memory, over all packs (~400 MB)

# what datavc writes (a writer's choice, not part of the format)
SMALL = 1 << 20  # objects up to this size go into packs ...
MIN_OBJECTS = 64  # ... when a push has at least this many of them; fewer go one by one
TARGET = 8 << 20  # a pack is closed once it holds this many bytes (a single streamed PUT)
MOST_OBJECTS = 10_000  # or this many objects
GAP = 256 << 10  # a ranged read spans a gap of unwanted bytes up to this long ...
MOST_READ = 64 << 20  # ... and is at most this long


class Packed(NamedTuple):
    """Where one object is: its pack (32 hex), offset and size."""

    pack: str
    offset: int
    size: int


class PackError(Exception):
    """An index that cannot be used (damaged, or not the index of its pack)."""


def encode_index(pack_digest: bytes, entries: Iterable[tuple[bytes, int]]) -> bytes:
    """The index file of a pack holding ``entries`` (id digest, size) in this order."""
    blob = b"".join(ENTRY.pack(d, s) for d, s in entries)
    body = msgpack.packb([MAGIC, VERSION, pack_digest, blob], use_bin_type=True)
    return body + xxhash.xxh3_128_digest(body)


def index_name(index: bytes) -> str:
    """The pack name an index (one datavc wrote) gives its two files."""
    return own_index(index, 0.0)[1].name


def own_index(index: bytes, stored: float) -> tuple[bytes, PackInfo]:
    """``(pack digest, PackInfo)`` of an index this process wrote, for a pack stored at
    ``stored``: its name, size and entries from one decoding."""
    digest, entries = decode_index(index, None)
    size = sum(n for _, n in iter_entries(entries))
    return digest, PackInfo(xxhash.xxh3_128_hexdigest(entries), size, stored, entries)


def decode_index(data: bytes, name: str | None) -> tuple[bytes, bytes]:
    """``(pack digest, entries blob)`` of an index file, checked: the trailer matches the
    body, the body is the canonical encoding, ``name`` (32 hex, when given) is the hash of
    its entries, the entries are whole, unique, at most MAX_ENTRIES and MAX_OBJECT each, and sum
    to at most MAX_PACK. PackError when damaged; UnknownFormatError (exit 6) for an index of
    another format version (a newer datavc wrote it)."""
    if len(data) > MAX_INDEX or len(data) < DIGEST_SIZE:
        raise PackError(f"{len(data)} bytes")
    body, trailer = data[:-DIGEST_SIZE], data[-DIGEST_SIZE:]
    if xxhash.xxh3_128_digest(body) != trailer:
        raise PackError("its checksum does not match")
    try:
        obj = msgpack.unpackb(body, use_list=True, raw=False, strict_map_key=True,
                              max_bin_len=MAX_INDEX, max_str_len=64, max_array_len=4,
                              max_map_len=0, max_ext_len=0)
    except Exception as exc:
        raise PackError(f"not msgpack ({type(exc).__name__})") from None
    if not isinstance(obj, list) or len(obj) < 2 or obj[0] != MAGIC:
        raise PackError("not a pack index")
    if obj[1] != VERSION or type(obj[1]) is not int:
        raise UnknownFormatError(f"pack index {name or ''} has format version {obj[1]!r}; "
                                 f"this datavc reads version {VERSION}",
                                 hint="upgrade datavc to use this remote")
    if len(obj) != 4 or not isinstance(obj[2], bytes) or not isinstance(obj[3], bytes):
        raise PackError("malformed")
    digest, blob = obj[2], obj[3]
    if len(digest) != DIGEST_SIZE:
        raise PackError("malformed")
    if name is not None and xxhash.xxh3_128_hexdigest(blob) != name:
        raise PackError("it is the index of another pack")
    if msgpack.packb(obj, use_bin_type=True) != body:
        raise PackError("not in canonical form")
    n, rest = divmod(len(blob), ENTRY.size)
    if rest or not 0 < n <= MAX_ENTRIES:
        raise PackError("its entries are cut")
    ids, total = set(), 0
    for d, s in ENTRY.iter_unpack(blob):
        if s > MAX_OBJECT:
            raise PackError(f"an entry of {s} bytes")
        total += s
        ids.add(d)
    if len(ids) != n or total > MAX_PACK:
        raise PackError("duplicate entries or too big")
    return digest, blob


def iter_entries(blob: bytes) -> Iterable[tuple[bytes, int]]:
    return ENTRY.iter_unpack(blob)


def is_pack_name(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


NO_INDEX = "no index"
NO_PACK = "no pack"
DAMAGED = "damaged index"


@dataclass
class PackInfo:
    """One pack as a remote lists it, with its index's entries, or None and the
    ``problem`` that makes it unusable."""

    name: str
    size: int
    stored: float
    entries: bytes | None = None
    problem: str | None = None

    def objects(self) -> Iterable[tuple[bytes, int, int]]:
        """(digest, offset, size) of each object in it."""
        offset = 0
        for d, s in iter_entries(self.entries or b""):
            yield d, offset, s
            offset += s


_SIZE_BITS = 25  # an entry is at most MAX_OBJECT = 2**24 bytes
_OFFSET_BITS = 31  # a pack at most MAX_PACK = 2**30


@dataclass
class PackSet:
    """A store's usable packs and where each packed object is. Thread-safe to read while
    :meth:`add` runs (a dict update per object).

    ``where`` maps a digest to one int, its pack's number in ``names``, offset and size
    packed together: a 100k-object cache costs one small int per object, not a record
    (:meth:`get` and :meth:`locate` give :class:`Packed` records)."""

    packs: dict[str, PackInfo] = field(default_factory=dict)
    where: dict[bytes, int] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # index files that could not be used
    local: bool = False  # the packs of a cache, not of a remote (for messages)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, info: PackInfo) -> None:
        with self._lock:
            if len(self.where) + len(info.entries or b"") // ENTRY.size > MAX_PACKED:
                if self.local:
                    raise RemoteError(
                        f"the cache's packs list more than {MAX_PACKED:,} objects, more than "
                        f"this datavc reads (the memory is bounded)",
                        hint="`datavc gc` deletes the packs nothing uses; or keep the data "
                             "in several repositories")
                raise RemoteError(f"the remote's packs list more than {MAX_PACKED:,} objects, "
                                  f"more than this datavc reads (the memory is bounded)",
                                  hint="store objects loose on this remote (`pack = false`) "
                                       "or ask its maintainers")
            self.packs[info.name] = info
            base = len(self.names) << (_OFFSET_BITS + _SIZE_BITS)
            self.names.append(info.name)
            setdefault = self.where.setdefault
            for d, off, s in info.objects():
                setdefault(d, base | off << _SIZE_BITS | s)

    def __contains__(self, digest: object) -> bool:
        return digest in self.where

    def get(self, digest: bytes) -> Packed | None:
        code = self.where.get(digest)
        return None if code is None else decode_place(code, self.names)

    def locate(self, oids: Iterable[Oid]) -> dict[Oid, Packed]:
        where, names = self.where, self.names
        return {o: decode_place(where[o.digest], names) for o in oids if o.digest in where}


def decode_place(code: int, names: list[str]) -> Packed:
    """The :class:`Packed` record of a ``PackSet.where`` value (``names``: its ``names``)."""
    return Packed(names[code >> (_OFFSET_BITS + _SIZE_BITS)],
                  code >> _SIZE_BITS & ((1 << _OFFSET_BITS) - 1),
                  code & ((1 << _SIZE_BITS) - 1))


class Read(NamedTuple):
    """One ranged read of a pack: ``[start, start + length)`` and the objects in it, as
    (digest, offset from ``start``, size)."""

    pack: str
    start: int
    length: int
    objects: list[tuple[bytes, int, int]]


def plan_reads(located: dict[Oid, Packed], *, gap: int = GAP, most: int = MOST_READ
               ) -> list[Read]:
    """Ranged reads that cover ``located``: per pack, objects in offset order, merged into
    one read while the bytes between them are at most ``gap`` and the read at most
    ``most`` long (a whole pack wanted is one read when it fits)."""
    by_pack: dict[str, list[Packed]] = {}
    digest_of: dict[Packed, bytes] = {}
    for oid, p in located.items():
        by_pack.setdefault(p.pack, []).append(p)
        digest_of[p] = oid.digest
    reads: list[Read] = []
    for name in sorted(by_pack):
        run: list[Packed] = []
        for p in sorted(by_pack[name], key=lambda p: p.offset):
            if run and (p.offset - (run[-1].offset + run[-1].size) > gap
                        or p.offset + p.size - run[0].offset > most):
                reads.append(_read(name, run, digest_of))
                run = []
            run.append(p)
        if run:
            reads.append(_read(name, run, digest_of))
    return reads


def _read(name: str, run: list[Packed], digest_of: dict[Packed, bytes]) -> Read:
    start = run[0].offset
    end = max(p.offset + p.size for p in run)
    return Read(name, start, end - start, [(digest_of[p], p.offset - start, p.size)
                                           for p in run])


def groups(items: list[tuple[bytes, int]], *, target: int = TARGET,
           most: int = MOST_OBJECTS) -> list[list[tuple[bytes, int]]]:
    """Split (digest, size) items, in order, into packs of about ``target`` bytes and at
    most ``most`` objects."""
    out: list[list[tuple[bytes, int]]] = []
    cur: list[tuple[bytes, int]] = []
    nbytes = 0
    for item in items:
        if cur and (nbytes + item[1] > target or len(cur) >= most):
            out.append(cur)
            cur, nbytes = [], 0
        cur.append(item)
        nbytes += item[1]
    if cur:
        out.append(cur)
    return out


Runner = Callable[[Callable[[str], "bytes | None"], list[str]], Iterable["bytes | None"]]


class PackShelf:
    """What a remote knows of its packs, shared by both backends. ``files`` lists
    ``packs/`` as (file name, size, stored); ``read_index`` returns one ``.idx`` file's bytes
    (at most :data:`MAX_INDEX` + 1). The set is read on first use and kept for the
    instance (packs are immutable; ones pushed meanwhile by others are merely unknown, so
    their objects look missing and are pushed again, which is harmless)."""

    def __init__(self, files: Callable[[], Iterable[tuple[str, int, float]]],
                 read_index: Callable[[str], bytes], run: Runner = map, *,
                 local: bool = False) -> None:
        self._files, self._read_index, self._run = files, read_index, run
        self._local = local  # a cache's packs (for messages)
        self._lock = threading.Lock()
        self._set: PackSet | None = None

    def get(self) -> PackSet:
        with self._lock:
            if self._set is None:
                found = PackSet(local=self._local)
                for info in self.scan():
                    if info.entries is not None:
                        found.add(info)
                    else:
                        found.damaged.append(info.name)
                self._set = found
            return self._set

    def reset(self) -> None:
        """Read the packs afresh on next use (after some were deleted or rewritten)."""
        with self._lock:
            self._set = None

    def added(self, info: PackInfo) -> None:
        """Count a pack this instance just stored (when the set is read already: a later
        first read finds it where it is stored)."""
        with self._lock:
            found = self._set
        if found is not None:
            found.add(info)

    def scan(self, on_junk: Callable[[str], object] | None = None) -> list[PackInfo]:
        """Every pack, its index read and checked (see :meth:`Remote.iter_packs`)."""
        packs: dict[str, tuple[int, float]] = {}
        indexes: dict[str, float] = {}
        for name, size, stored in self._files():
            stem, dot, suffix = name.partition(".")
            if size < 0 or not is_pack_name(stem) or f"{dot}{suffix}" not in (
                    PACK_SUFFIX, INDEX_SUFFIX):
                if on_junk is not None:
                    on_junk(f"{PACKS}/{name}")
            elif f"{dot}{suffix}" == PACK_SUFFIX:
                packs[stem] = (size, stored)
            else:
                indexes[stem] = stored
        both = sorted(indexes.keys() & packs.keys())
        out = [PackInfo(n, *packs[n], problem=NO_INDEX)
               for n in sorted(packs.keys() - indexes.keys())]
        out += [PackInfo(n, 0, indexes[n], problem=NO_PACK)
                for n in sorted(indexes.keys() - packs.keys())]
        for name, entries in zip(both, self._run(self._entries, both), strict=True):
            size, stored = packs[name]
            total = sum(s for _, s in iter_entries(entries or b""))
            ok = entries is not None and total == size
            out.append(PackInfo(name, size, max(stored, indexes[name]),
                                     entries if ok else None,
                                     None if ok else DAMAGED))
        return out

    def _entries(self, name: str) -> bytes | None:
        try:
            return decode_index(self._read_index(name), name)[1]
        except PackError:
            return None


def dir_shelf(packs_dir: str, error: Callable[[OSError, str, str], Exception], *,
              local: bool = False) -> PackShelf:
    """The :class:`PackShelf` of a ``packs/`` directory (a cache's, or a directory
    remote's); ``error(exc, path, action)`` words an OSError for its owner."""

    def files() -> Iterator[tuple[str, int, float]]:
        try:
            yield from list_dir(packs_dir)
        except OSError as exc:
            raise error(exc, packs_dir, "list") from None

    def read_index(name: str) -> bytes:
        path = os.path.join(packs_dir, name + INDEX_SUFFIX)
        try:
            return read_index_file(path)
        except OSError as exc:
            raise error(exc, path, "read pack index") from None

    return PackShelf(files, read_index, local=local)


def list_dir(packs_dir: str) -> Iterator[tuple[str, int, float]]:
    """``(file name, size, stored)`` of each entry of a ``packs/`` directory, for
    :class:`PackShelf`: size -1 for what is not a regular file (junk); nothing when the
    directory does not exist. OSError for the caller to word."""
    try:
        names = sorted(os.listdir(packs_dir))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        try:
            st = os.stat(os.path.join(packs_dir, name), follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield name, st.st_size, max(st.st_mtime, st.st_ctime)
        else:
            yield name, -1, 0.0


def read_index_file(path: str) -> bytes:
    """An index file's bytes (at most MAX_INDEX + 1), or b"" when it is gone or not a
    regular file (a FIFO there must not block the reader). OSError for the caller to word."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
            return b""
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        with os.fdopen(fd, "rb", closefd=False) as f:
            return fsutil.read_limited(f, MAX_INDEX)
    finally:
        os.close(fd)
