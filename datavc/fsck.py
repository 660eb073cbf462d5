"""fsck: cross-check manifests, listings, the cache and a remote; trust nothing.

- Trees: every kept tree's listings are read, verified against their ids and validated; each
  object they name must be in the cache with the size the listing declares.
- Cache: every object file's name must be an id; with ``read_data`` its bytes are re-hashed
  (mode bits and indexes prove nothing), else its size is compared with what a listing says.
  Packed objects likewise, from their packs; a pack whose index is damaged is ``corrupt``,
  half a pack (one file of the two) ``junk``. A good loose copy of an object shadows its
  packed copy (that is how ``--repair`` mends an object of a pack).
- Remote: every named object must be there; with ``read_data`` each is downloaded and
  re-hashed (in memory of one chunk at a time).

Problems name the object and the work-tree paths that use it, so a user knows what is hurt.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import xxhash

from . import listing, pack
from .errors import DatavcError, ObjectMissingError
from .gc import Kept
from .hashing import CHUNK, Oid
from .objects import FANOUT, ObjectStore
from .tree import MAX_DEPTH, Budget

MAX_PATHS = 3  # paths named per problem


@dataclass(frozen=True)
class Problem:
    """One thing wrong. ``kind``: ``corrupt`` (bytes do not hash to the id: flipped,
    truncated, emptied or misnamed), ``size`` (the size differs from the listing's),
    ``missing`` (named but absent), ``invalid`` (a listing or manifest that fails
    validation), ``junk`` (a file in the object directories that is not an object)."""

    kind: str
    where: str  # "cache", "remote NAME" or "manifest"
    oid: str | None
    paths: list[str] = field(default_factory=list)
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "where": self.where, "oid": self.oid,
                "paths": self.paths, "detail": self.detail}


@dataclass
class Named:
    """What the kept trees name: each id with its size (None for a listing, whose size no
    one declares) and a few paths that use it."""

    sizes: dict[bytes, int | None] = field(default_factory=dict)
    paths: dict[bytes, list[str]] = field(default_factory=lambda: defaultdict(list))
    listings: set[bytes] = field(default_factory=set)

    def use(self, digest: bytes, size: int | None, path: str) -> None:
        self.sizes.setdefault(digest, size)
        if len(self.paths[digest]) < MAX_PATHS:
            self.paths[digest].append(path)


def walk(store: ObjectStore, kept: Iterable[tuple[str, Kept]],
         problems: list[Problem]) -> Named:
    """Read every kept tree (target path, tree) from the cache, recording what it names and
    every listing that is missing or fails verification/validation."""
    named = Named()
    for rel, k in kept:
        named.use(k.oid.digest, k.size if k.kind == listing.FILE else None, rel)
        if k.kind != listing.DIR:
            continue
        budget = Budget.for_pointer(k.nfiles)
        level = [(k.oid, rel)]
        for _depth in range(MAX_DEPTH + 2):
            level = [(o, p) for o, p in level if o.digest not in named.listings]
            if not level:
                break
            nxt: list[tuple[Oid, str]] = []
            for oid, path in level:
                named.listings.add(oid.digest)
                try:
                    budget.spend(oid)
                    entries = listing.decode(store.read_bytes(oid), where=str(oid))
                except ObjectMissingError:
                    continue  # reported with the cache check: it is named and absent
                except DatavcError as exc:
                    problems.append(Problem(
                        "corrupt" if "does not match" in exc.message else "invalid",
                        "cache", str(oid), [path], exc.message))
                    continue
                for e in entries:
                    child = f"{path}/{e.name}"
                    if e.kind == listing.DIR:
                        named.use(e.oid.digest, None, child)
                        nxt.append((e.oid, child))
                    else:
                        named.use(e.oid.digest, e.size, child)
            level = nxt
        else:
            problems.append(Problem("invalid", "cache", str(k.oid), [rel],
                                    f"nested deeper than {MAX_DEPTH} levels"))
    return named


def check_cache(store: ObjectStore, named: Named, *, read_data: bool,
                progress: Callable[[int, int], object] | None = None) -> list[Problem]:
    """Every object file of the cache (and every named id) checked; see the module doc."""
    problems: list[Problem] = []
    seen: set[bytes] = set()
    try:
        prefixes = sorted(os.listdir(store.objects_dir))
    except FileNotFoundError:
        prefixes = []
    for prefix in prefixes:
        sub = os.path.join(store.objects_dir, prefix)
        if not os.path.isdir(sub) or os.path.islink(sub):
            problems.append(Problem("junk", "cache", None, [], f"objects/{prefix}"))
            continue
        if len(prefix) != FANOUT:
            problems.append(Problem("junk", "cache", None, [], f"objects/{prefix}"))
            continue
        for entry in sorted(os.scandir(sub), key=lambda e: e.name):
            digest = _digest(prefix, entry.name)
            if digest is None or not entry.is_file(follow_symlinks=False):
                problems.append(Problem("junk", "cache", None, [],
                                        f"objects/{prefix}/{entry.name}"))
                continue
            seen.add(digest)
            oid = Oid(digest)
            paths = list(named.paths.get(digest, []))
            size = entry.stat(follow_symlinks=False).st_size
            if read_data:
                got = _hash_file(entry.path)
                if got != digest:
                    problems.append(Problem("corrupt", "cache", str(oid), paths,
                                            f"{size} bytes hashing to {Oid(got)}"))
                    continue
            want = named.sizes.get(digest)
            if want is not None and size != want:
                problems.append(Problem("size", "cache", str(oid), paths,
                                        f"{size} bytes, the listing says {want}"))
            if progress is not None:
                progress(1, size)
    problems += _check_packs(store, named, seen, read_data, progress)
    for digest in sorted(set(named.sizes) - seen):
        problems.append(Problem("missing", "cache", str(Oid(digest)),
                                list(named.paths.get(digest, [])), "not in the cache"))
    return problems


def _check_packs(store: ObjectStore, named: Named, seen: set[bytes], read_data: bool,
                 progress: Callable[[int, int], object] | None) -> list[Problem]:
    """The cache's packs: each object not already seen loose is checked as a loose one is
    (and added to ``seen``)."""
    problems: list[Problem] = []

    def junk(key: str) -> None:
        problems.append(Problem("junk", "cache", None, [], key))

    for info in store.scan_packs(on_junk=junk):
        where = f"{pack.PACKS}/{info.name}"
        if info.entries is None:
            if info.problem == pack.DAMAGED:
                problems.append(Problem("corrupt", "cache", None, [],
                                        f"{where}.idx: damaged or not the index of its pack"))
            else:  # half a pack: what an interrupted add or gc leaves, which gc removes
                half = pack.PACK_SUFFIX if info.problem == pack.NO_INDEX else pack.INDEX_SUFFIX
                junk(where + half)
            continue
        fd = None
        try:
            if read_data:
                fd = os.open(store.pack_path(info.name), os.O_RDONLY | os.O_CLOEXEC)
            for digest, offset, size in info.objects():
                if digest in seen:
                    continue
                seen.add(digest)
                paths = list(named.paths.get(digest, []))
                if fd is not None:
                    got = xxhash.xxh3_128_digest(os.pread(fd, size, offset))
                    if got != digest:
                        problems.append(Problem("corrupt", "cache", str(Oid(digest)), paths,
                                                f"{size} bytes in {where}.pack hashing to "
                                                f"{Oid(got)}"))
                        continue
                want = named.sizes.get(digest)
                if want is not None and size != want:
                    problems.append(Problem("size", "cache", str(Oid(digest)), paths,
                                            f"{size} bytes in {where}.pack, the listing "
                                            f"says {want}"))
                if progress is not None:
                    progress(1, size)
        except OSError as exc:
            problems.append(Problem("corrupt", "cache", None, [],
                                    f"{where}.pack cannot be read: {exc.strerror}"))
        finally:
            if fd is not None:
                os.close(fd)
    return problems


def check_remote(remote: Any, name: str, named: Named, *, read_data: bool) -> list[Problem]:
    """Every named id on the remote; with ``read_data``, each downloaded and re-hashed."""
    where = f"remote {name}"
    problems = [Problem("missing", where, str(oid), list(named.paths.get(oid.digest, [])),
                        "not on the remote")
                for oid in sorted(remote.missing(Oid(d) for d in named.sizes), key=str)]
    if read_data:
        absent = {p.oid for p in problems}
        for digest in sorted(named.sizes):
            oid = Oid(digest)
            if str(oid) in absent:
                continue
            sink = _Hasher()
            try:
                remote.get(oid, sink)
            except ObjectMissingError:
                problems.append(Problem("missing", where, str(oid),
                                        list(named.paths.get(digest, [])), "not on the remote"))
                continue
            if sink.h.digest() != digest:
                problems.append(Problem("corrupt", where, str(oid),
                                        list(named.paths.get(digest, [])),
                                        f"{sink.size} bytes hashing to {Oid(sink.h.digest())}"))
    return problems


class _Hasher:
    def __init__(self) -> None:
        self.h, self.size = xxhash.xxh3_128(), 0

    def write(self, data: bytes, /) -> int:
        self.h.update(data)
        self.size += len(data)
        return len(data)


def _digest(prefix: str, name: str) -> bytes | None:
    text = prefix + name
    if len(text) != 32:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _hash_file(path: str) -> bytes:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.digest()
