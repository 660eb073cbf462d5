"""In-memory Merkle trees of tracked data: scanning the workspace into one, hashing what the
stat cache does not know, computing listing ids bottom-up, loading one back from the store.

A tree is made of :class:`DirNode` and :class:`FileNode`; ids are raw 16-byte digests here,
the hot path of a 100k-file status, and :class:`~datavc.hashing.Oid` at the API boundary.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import xxhash

from . import listing
from .errors import DatavcError, InvalidInputError
from .hashing import Oid
from .objects import ObjectStore, StatKey, Stored
from .parallel import hash_files
from .paths import find_collisions
from .state import COARSE_WINDOW_NS, FINE_WINDOW_NS, StatCache
from .walk import Row, Walk, WalkDir, walk


@dataclass(slots=True)
class FileNode:
    digest: bytes
    size: int
    executable: bool = False

    @property
    def mode(self) -> int:
        return 0o755 if self.executable else 0o644


@dataclass(slots=True)
class DirNode:
    children: dict[str, FileNode | DirNode] = field(default_factory=dict)
    digest: bytes = b""
    size: int = 0
    nfiles: int = 0


Node = FileNode | DirNode


@dataclass(slots=True)
class Scan:
    """A scanned workspace path: its tree, the files still to hash, what was skipped.

    ``todo`` holds (path, absolute path, node, stat key seen by the walk). ``memo_ok`` stays
    true while the tree's id, once computed, may be remembered against the walk's
    fingerprint (:meth:`datavc.state.StatCache.remember_tree`): every entry a regular file
    whose stat is not racily new and whose content was hashed at the stat the walk saw.
    A ``shallow`` scan is the tree memo's answer: a root with its id, size and file count
    and no children, nothing to hash and ``seen`` left empty.
    """

    root: Node | None
    todo: list[tuple[str, str, FileNode, StatKey]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    litter: list[str] = field(default_factory=list)  # temp files of interrupted writers
    walked: Walk | None = None
    memo_ok: bool = True
    shallow: bool = False


def scan(root: str, rel: str, state: StatCache, cache_objects: str, *,
         started_ns: int = 0) -> Scan:
    """Scan work-tree path ``rel`` (file or directory) below ``root``, using the stat cache."""
    return build(walk(root, rel), state, cache_objects, started_ns=started_ns)


def build(walked: Walk, state: StatCache, cache_objects: str, *, started_ns: int = 0) -> Scan:
    """The tree of a walk: each file's id from the stat cache, or a place in ``todo``.

    ``started_ns``: when the operation began (0: never remember the tree); a file modified
    less than a timestamp tick before it makes ``memo_ok`` false (git's racy-clean rule)."""
    out = Scan(None, skipped=list(walked.skipped), litter=list(walked.litter),
               walked=walked, memo_ok=walked.plain and bool(started_ns))
    newest = [0, False]  # the newest mtime, and whether any looked coarse
    if walked.top is not None:
        out.root = _build_dir(walked.top, out, state, cache_objects, newest)
    elif walked.file is not None:
        out.root = _build_file(walked.rel, walked.path, walked.file, out, state, cache_objects,
                               newest)
    if newest[0] >= started_ns - (COARSE_WINDOW_NS if newest[1] else FINE_WINDOW_NS):
        out.memo_ok = False
    return out


def _build_dir(d: WalkDir, out: Scan, state: StatCache, objs: str, newest: list) -> DirNode:
    node = DirNode()
    children = node.children
    for row in d.rows:
        child = _build_file(f"{d.rel}/{row[0]}", f"{d.path}/{row[0]}", row, out, state, objs,
                            newest)
        if child is not None:
            children[row[0]] = child
    for sub in d.dirs:
        children[sub.name] = _build_dir(sub, out, state, objs, newest)
    return node


def _build_file(rel: str, path: str, row: Row, out: Scan, state: StatCache, objs: str,
                newest: list) -> FileNode | None:
    mode, size, mtime = row[1], row[4], row[5]
    if not stat.S_ISREG(mode):
        out.memo_ok = False
        if stat.S_ISLNK(mode):
            return _cache_link(path, rel, out, objs)
        out.skipped.append((rel, "not a regular file"))
        return None
    if mtime > newest[0]:
        newest[0] = mtime
    if mtime % 1_000_000 == 0:
        newest[1] = True
    node = FileNode(b"", size, bool(mode & 0o100))
    out.seen.add(rel)
    key: StatKey = row[2:]  # (dev, ino, size, mtime_ns, ctime_ns)
    digest = state.get(rel, key)
    if digest is None:
        out.todo.append((rel, path, node, key))
    else:
        node.digest = digest
    return node


def _cache_link(path: str, rel: str, out: Scan, objs: str) -> FileNode | None:
    """A symlink made by the ``symlink`` cache type stands for the object it points to."""
    target = os.readlink(path)
    parent, name = os.path.split(target)
    if os.path.dirname(parent) == objs and len(name) == 30:
        try:
            digest = bytes.fromhex(os.path.basename(parent) + name)
            return FileNode(digest, os.stat(target).st_size)
        except (ValueError, OSError):
            pass
    out.skipped.append((rel, "symlink"))
    return None


def resolve(scan_: Scan, *, store: ObjectStore | None, state: StatCache, started_ns: int,
            jobs: int, progress: Callable[[int, int], None] | None = None,
            track_exec: bool = True,
            early: dict[str, Stored] | None = None) -> list[tuple[str, Stored]]:
    """Hash the files the stat cache did not know; with ``store``, also stage them there
    (pending until :func:`datavc.parallel.publish`). Returns what was hashed.

    ``early``: files hashed (and staged, and counted in ``progress``) while the walk ran
    (:class:`datavc.parallel.Prehash`), by absolute path; one is taken as it is when it was
    read at the stat the walk saw, else hashed again.

    Without ``track_exec`` (hardlink/symlink caches, whose files are the read-only cache
    objects) every file is recorded as not executable.
    """
    if not scan_.todo:
        return []
    results: list[Stored | None] = [None] * len(scan_.todo)
    if early:
        for i, (_, abs_path, _, key) in enumerate(scan_.todo):
            res = early.get(abs_path)
            if res is not None and res.stat == key:
                results[i] = res
    rest = [i for i, r in enumerate(results) if r is None]
    if rest:
        again = hash_files([scan_.todo[i][1] for i in rest], store=store, jobs=jobs,
                           progress=progress)
        for i, res in zip(rest, again, strict=True):
            results[i] = res
    hashed = []
    for (rel, _, node, key), res in zip(scan_.todo, results, strict=True):
        assert res is not None
        if res.stat != key:  # changed since the walk: its id is not the walk's file's
            scan_.memo_ok = False
        node.digest, node.size = res.digest, res.size
        node.executable = res.executable and track_exec
        state.put(rel, res.stat, res.digest, started_ns)
        hashed.append((rel, res))
    scan_.todo.clear()
    return hashed


def finish(node: Node, *, store: ObjectStore | None, where: str) -> None:
    """Compute listing ids bottom-up (writing listings to ``store`` if given)."""
    if isinstance(node, FileNode):
        return
    rows = []
    size = nfiles = 0
    names = list(node.children)
    clashes = [] if all(map(_fold_stable, names)) else find_collisions(names)
    if clashes:
        a, b = clashes[0]
        raise InvalidInputError(
            f"'{where}/{a}' and '{where}/{b}' differ only in case or Unicode normalisation",
            hint="rename one of them: they would overwrite each other on macOS and Windows")
    for name, child in node.children.items():
        if isinstance(child, DirNode):
            finish(child, store=store, where=f"{where}/{name}")
            rows.append([name.encode("utf-8", "surrogateescape"), listing.DIR, child.digest,
                         child.size, 0o755, child.nfiles])
            nfiles += child.nfiles
        else:
            rows.append([name.encode("utf-8", "surrogateescape"), listing.FILE, child.digest,
                         child.size, child.mode, 1])
            nfiles += 1
        size += child.size
    rows.sort()
    data = listing.encode(rows)
    node.digest = store.add_bytes(data).digest if store else xxhash.xxh3_128_digest(data)
    node.size, node.nfiles = size, nfiles


def clear_exec(node: Node) -> None:
    """Mark every file below ``node`` not executable."""
    if isinstance(node, FileNode):
        node.executable = False
        return
    for child in node.children.values():
        clear_exec(child)


def _fold_stable(name: str) -> bool:
    """True for ASCII names without upper-case letters: each is its own folded key, so a
    directory of only such names has no collisions and needs no folding. One other name
    (``A.png`` beside ``a.png``) and the whole directory is checked."""
    return name.isascii() and (name.islower() or not any(c.isupper() for c in name))


def file_digests(node: Node) -> list[bytes]:
    """The digest of every file below ``node`` (iteratively: fast and no recursion limit)."""
    if isinstance(node, FileNode):
        return [node.digest]
    out: list[bytes] = []
    stack = [node]
    while stack:
        for child in stack.pop().children.values():
            if isinstance(child, DirNode):
                stack.append(child)
            else:
                out.append(child.digest)
    return out


MAX_DEPTH = 512


class Budget:
    """A bound on how many listings one walk of a stored tree may read.

    A hostile tree can name one subtree many times, so a walk that follows every entry
    could read listings without end. The pointer's file count bounds a sound tree; empty
    directories get a fixed allowance on top.
    """

    EMPTY_DIR_ALLOWANCE = 1_000_000

    def __init__(self, listings: int) -> None:
        self.left = listings

    @classmethod
    def for_pointer(cls, nfiles: int) -> Budget:
        return cls(nfiles + cls.EMPTY_DIR_ALLOWANCE)

    def spend(self, oid: Oid) -> None:
        self.left -= 1
        if self.left < 0:
            raise InvalidInputError(
                f"the tree holding listing {oid} names more directories than its manifest "
                "allows", hint="the manifest or a listing was altered; restore it from git")


def load(store: ObjectStore, digest: bytes, *, kind: str, size: int | None = None,
         nfiles: int | None = None) -> Node:
    """Read a whole stored tree back from its listings (each one verified and validated).

    Hostile trees are bounded: every directory's real size and file count must equal what
    its parent (ultimately the pointer) declares, so the work is bounded by the pointer's
    ``nfiles``; nesting deeper than MAX_DEPTH is refused.
    """
    if kind == listing.FILE:
        return FileNode(digest, size or 0)
    budget = Budget.for_pointer(nfiles if nfiles is not None else 1 << 40)
    return _load_dir(store, digest, size, nfiles, 0, budget)


def _load_dir(store: ObjectStore, digest: bytes, size: int | None, nfiles: int | None,
              depth: int, budget: Budget) -> DirNode:
    oid = Oid(digest)
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"listing {oid} is nested deeper than {MAX_DEPTH} levels")
    budget.spend(oid)
    node = DirNode(digest=digest)
    for e in listing.decode(store.read_bytes(oid), where=str(oid)):
        node.nfiles += e.nfiles
        if nfiles is not None and node.nfiles > nfiles:
            break
        if e.kind == listing.DIR:
            node.children[e.name] = _load_dir(store, e.oid.digest, e.size, e.nfiles, depth + 1,
                                              budget)
        else:
            node.children[e.name] = FileNode(e.oid.digest, e.size, e.mode == 0o755)
        node.size += e.size
    if nfiles is not None and (node.size, node.nfiles) != (size, nfiles):
        raise InvalidInputError(
            f"listing {oid} does not add up: it holds {node.nfiles} files / {node.size} bytes "
            f"where its parent declares {nfiles} / {size}",
            hint="the manifest or listing was altered; restore it from git")
    return node


def stored_ids(store: ObjectStore, digest: bytes, *, size: int, nfiles: int
               ) -> tuple[list[bytes], list[bytes]]:
    """The file ids and listing ids of a stored directory tree, read from its listings
    without building it (:func:`listing.decode_refs`). Bounded as :func:`load` is: every
    listing's sums must equal what its parent declares, nesting at most MAX_DEPTH."""
    files: list[bytes] = []
    listings: list[bytes] = []
    budget = Budget.for_pointer(nfiles)
    stack = [(digest, size, nfiles, 0)]
    while stack:
        digest, size, nfiles, depth = stack.pop()
        oid = Oid(digest)
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"listing {oid} is nested deeper than {MAX_DEPTH} levels")
        budget.spend(oid)
        listings.append(digest)
        got_size = got_files = 0
        for kind, child, child_size, child_files in listing.decode_refs(
                store.read_bytes(oid), where=str(oid)):
            got_size += child_size
            got_files += child_files
            if got_files > nfiles:
                break
            if kind == listing.DIR:
                stack.append((child, child_size, child_files, depth + 1))
            else:
                files.append(child)
        if (got_size, got_files) != (size, nfiles):
            raise InvalidInputError(
                f"listing {oid} does not add up: it holds {got_files} files / {got_size} "
                f"bytes where its parent declares {nfiles} / {size}",
                hint="the manifest or listing was altered; restore it from git")
    return files, listings


def walk_files(node: Node, prefix: str) -> Iterator[tuple[str, FileNode]]:
    """Every file below ``node`` as (path, node), the path starting with ``prefix``."""
    if isinstance(node, FileNode):
        yield prefix, node
        return
    for name, child in node.children.items():
        yield from walk_files(child, f"{prefix}/{name}")


def walk_dirs(node: Node, prefix: str) -> Iterator[tuple[str, DirNode]]:
    if isinstance(node, DirNode):
        yield prefix, node
        for name, child in node.children.items():
            yield from walk_dirs(child, f"{prefix}/{name}")


def file_count(node: Node) -> int:
    """How many files a tree holds (a file is one)."""
    return node.nfiles if isinstance(node, DirNode) else 1


def root_kind(node: Node) -> str:
    return listing.DIR if isinstance(node, DirNode) else listing.FILE


def require(node: Node | None, rel: str) -> Node:
    if node is None:
        raise DatavcError(f"'{rel}' does not exist", hint="check the path")
    return node
