"""Checkout: make a workspace path match a stored tree without ever losing data.

First a plan compares the wanted tree with the scanned workspace: what to write, delete and
create, which files are not safely in the cache (conflicts) and which wanted objects are
absent. Nothing is touched while there are conflicts, unless forced. Then the plan runs with
directory fds opened without following symlinks, replacing files by rename, never deleting a
file before its replacement is ready.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from . import fsutil
from .errors import CheckoutConflictError, from_oserror
from .hashing import Oid
from .links import Linker
from .objects import ObjectStore, StatKey, object_path, stat_key, verify_object
from .pack import Packed, decode_place
from .parallel import processes_or_threads, publish, run_chunks, split
from .state import StatCache
from .tree import DirNode, FileNode, Node, walk_dirs, walk_files


@dataclass
class Plan:
    writes: list[tuple[str, FileNode]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    rmdirs: list[str] = field(default_factory=list)
    mkdirs: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    expect: dict[str, StatKey] = field(default_factory=dict)  # replace only if still so
    verify: set[str] = field(default_factory=set)  # re-hash the object before linking it
    # writes where something the scan could not read stands (a forced checkout): a directory
    # there is removed first; every other write's path was seen empty or holding a file
    unknown: set[str] = field(default_factory=set)


def make_plan(rel: str, want: Node, have: Node | None, *, present: set[bytes],
              skipped: set[str], check_mode: bool) -> Plan:
    plan = _Planner(present, skipped, check_mode)
    plan.compare(rel, want, have)
    return plan.out


class _Planner:
    def __init__(self, present: set[bytes], skipped: set[str], check_mode: bool) -> None:
        self.present, self.skipped, self.check_mode = present, skipped, check_mode
        self.out = Plan()

    def compare(self, rel: str, want: Node, have: Node | None) -> None:
        if isinstance(want, FileNode):
            self._want_file(rel, want, have)
        else:
            self._want_dir(rel, want, have)

    def _want_file(self, rel: str, want: FileNode, have: Node | None) -> None:
        if want.digest not in self.present:
            if not _same(want, have, self.check_mode):
                self.out.missing.append(rel)
            return
        if isinstance(have, FileNode):
            if _same(want, have, self.check_mode):
                return
            if have.digest not in self.present:
                self.out.conflicts.append(rel)
        elif isinstance(have, DirNode):
            self._remove(rel, have)
        elif rel in self.skipped:
            self.out.conflicts.append(rel)
            self.out.unknown.add(rel)
        self.out.writes.append((rel, want))

    def _want_dir(self, rel: str, want: DirNode, have: Node | None) -> None:
        if isinstance(have, FileNode) or (have is None and rel in self.skipped):
            self._remove(rel, have)
            have = None
        if have is None:
            self.out.mkdirs.append(rel)
        assert have is None or isinstance(have, DirNode)
        have_children = have.children if have is not None else {}
        for name, child in want.children.items():
            self.compare(f"{rel}/{name}", child, have_children.get(name))
        for name, child in have_children.items():
            if name not in want.children:
                self._remove(f"{rel}/{name}", child)
        for path in self.skipped:
            if os.path.dirname(path) == rel and os.path.basename(path) not in want.children:
                self.out.conflicts.append(path)

    def _remove(self, rel: str, have: Node | None) -> None:
        if have is None:
            self.out.conflicts.append(rel)  # something datavc cannot read stands there
            return
        for path, node in walk_files(have, rel):
            if node.digest not in self.present:
                self.out.conflicts.append(path)
            self.out.deletes.append(path)
        dirs = [path for path, _ in walk_dirs(have, rel)]
        self.out.rmdirs.extend(reversed(dirs))
        prefix = rel + "/"
        self.out.conflicts.extend(p for p in self.skipped if p.startswith(prefix))


def _same(want: FileNode, have: Node | None, check_mode: bool) -> bool:
    if not isinstance(have, FileNode) or have.digest != want.digest:
        return False
    return not check_mode or have.executable == want.executable


def refuse_conflicts(plan: Plan) -> None:
    if not plan.conflicts:
        return
    paths = sorted(set(plan.conflicts))
    shown = "\n".join(f"  {p}" for p in paths[:20])
    more = f"\n  ... and {len(paths) - 20} more" if len(paths) > 20 else ""
    raise CheckoutConflictError(
        f"checkout would overwrite or delete {len(paths)} file(s) whose content is not in the "
        f"cache:\n{shown}{more}",
        paths=paths,
        hint="`datavc add`/`datavc commit` them first to keep them, or use --force to discard")


Written = tuple[str, StatKey, bytes, int]


@dataclass
class Executor:
    """Runs a plan: deletions first, then directories, then writes (in worker processes
    when there are many), recording every written file in the stat cache."""

    root: str
    root_fd: int
    store: ObjectStore
    link_types: tuple[str, ...]
    state: StatCache
    jobs: int = 1
    progress: Callable[[int, int], None] | None = None

    def run(self, plan: Plan) -> None:
        for rel in plan.deletes:
            self._unlink(rel)
        for rel in plan.rmdirs:
            self._rmdir(rel)
        for rel in plan.mkdirs:
            with fsutil.open_dir(self.root_fd, _parts(rel), create=True):
                pass
        by_dir: dict[str, list[tuple[str, FileNode, StatKey | None]]] = {}
        for rel, node in plan.writes:
            by_dir.setdefault(os.path.dirname(rel), []).append((rel, node,
                                                                plan.expect.get(rel)))
        packed = self.store.locate_codes({node.digest for _, node in plan.writes})
        if packed and self.link_types[0] != "copy":  # a link needs an object file of its own
            self.store.unpack(packed)
            publish(self.store, jobs=self.jobs)
            packed = {}
        packs = (self.store.packs_dir, self.store.packed().names) if packed else ("", [])
        chunks = [(self.root, self.store.objects_dir, self.link_types, parent, list(part),
                   {rel for rel, _, _ in part if rel in plan.verify},
                   {rel for rel, _, _ in part if rel in plan.unknown},
                   {n.digest: packed[n.digest] for _, n, _ in part if n.digest in packed},
                   packs)
                  for parent, items in by_dir.items()
                  for part in split(items, self.jobs, most=512)]
        if packed:  # the chunks say where their objects are: the pack set's memory goes
            del packed
            self.store.reload_packs()
        pool, threads = processes_or_threads(len(plan.writes),
                                             sum(node.size for _, node in plan.writes))
        written = run_chunks(write_group, chunks, jobs=self.jobs, pool=pool, threads=threads,
                             measure=lambda part: (len(part), sum(w[3] for w in part)),
                             progress=self.progress)
        for rel, key, digest, _ in written:
            self.state.put_written(rel, key, digest)

    def _unlink(self, rel: str) -> None:
        parent, name = os.path.split(rel)
        with contextlib.suppress(FileNotFoundError), \
                fsutil.open_dir(self.root_fd, _parts(parent), create=False) as dfd:
            os.unlink(name, dir_fd=dfd)
        self.state.forget(rel)

    def _rmdir(self, rel: str) -> None:
        parent, name = os.path.split(rel)
        with contextlib.suppress(FileNotFoundError), \
                fsutil.open_dir(self.root_fd, _parts(parent), create=False) as dfd:
            _rmtree(dfd, name)


def write_group(root: str, objects_dir: str, link_types: tuple[str, ...], parent: str,
                items: list[tuple[str, FileNode, StatKey | None]],
                verify: set[str], unknown: set[str],
                packed: dict[bytes, int] | None = None,
                packs: tuple[str, list[str]] = ("", [])) -> list[Written]:
    """Place ``items`` (all in directory ``parent``); may run in a worker process.
    ``packed``: where the objects found only in packs are (``PackSet.where`` values; the
    packs directory and the pack names in ``packs``); they are copied from there, verified
    (only a copy checkout reads packs).

    An item with an expected stat is replaced only while the file still has that stat.
    A directory standing at a path of ``unknown`` (one the scan could not read) is removed
    first; the plan removed every directory it saw, and looks at no other path again.
    ``copy`` verifies every object as it copies it. ``hardlink``/``symlink`` re-hash each
    object before linking it: an in-place edit of a linked file (after a chmod) corrupts
    the shared object, and such an object must never be linked as if it were sound. The
    others re-hash only the objects of ``verify`` (files replaced by --force).
    """
    linker = Linker(objects_dir, link_types, packs[0])
    places = {d: decode_place(code, packs[1]) for d, code in (packed or {}).items()}
    out: list[Written] = []
    root_fd = os.open(root, fsutil.O_DIR)
    try:
        with fsutil.open_dir(root_fd, _parts(parent), create=True) as dfd:
            for i, (rel, node, expected) in enumerate(items):
                if i % PREFETCH == 0 and linker.current in ("copy", "reflink"):
                    _prefetch(linker, [n.digest for _, n, _ in items[i:i + PREFETCH]],
                              places)
                name = os.path.basename(rel)
                if expected is not None and _stat_key_at(dfd, name) != expected:
                    continue
                if rel in unknown and _is_dir(dfd, name):
                    _rmtree(dfd, name)
                if linker.current in ("hardlink", "symlink") or (
                        expected is None and rel in verify and linker.current != "copy"):
                    verify_object(object_path(objects_dir, node.digest), Oid(node.digest))
                st = linker.place(node.digest, dfd, name, executable=node.executable,
                                  at=places.get(node.digest))
                out.append((rel, stat_key(st), node.digest, node.size))
    except OSError as exc:
        raise from_oserror(exc, parent or ".", "write into") from exc
    finally:
        os.close(root_fd)
        linker.close()
    return out


PREFETCH = 64


def _prefetch(linker: Linker, digests: list[bytes], packed: dict[bytes, Packed]) -> None:
    """Ask the kernel to read the next objects ahead, so cold reads overlap: one request
    per run of neighbouring objects of a pack (they lie in the order they were added, and
    are mostly wanted in that order), one per loose object file."""
    spans = sorted((at.pack, at.offset, at.offset + at.size)
                   for at in (packed.get(d) for d in digests) if at is not None)
    for pack, start, end in _runs(spans):
        with contextlib.suppress(OSError):
            os.posix_fadvise(linker.pack_fd(pack), start, end - start, os.POSIX_FADV_WILLNEED)
    for digest in digests:
        if digest in packed:
            continue
        try:
            fd = os.open(object_path(linker.objects_dir, digest), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # the copy itself reports a missing object
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


RUN_GAP = 64 << 10  # objects this close in one pack are read ahead as one span


def _runs(spans: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Sorted ``(pack, start, end)`` spans merged where they overlap or lie at most RUN_GAP
    apart in the same pack."""
    out: list[tuple[str, int, int]] = []
    for pack, start, end in spans:
        if out and out[-1][0] == pack and start - out[-1][2] <= RUN_GAP:
            out[-1] = (pack, out[-1][1], max(end, out[-1][2]))
        else:
            out.append((pack, start, end))
    return out


def _stat_key_at(dfd: int, name: str) -> StatKey | None:
    try:
        return stat_key(os.stat(name, dir_fd=dfd, follow_symlinks=False))
    except FileNotFoundError:
        return None


def _parts(rel: str) -> list[str]:
    return [p for p in rel.split("/") if p]


def _is_dir(dfd: int, name: str) -> bool:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (st.st_mode & 0o170000) == 0o040000


def _rmtree(parent_fd: int, name: str) -> None:
    """Remove directory ``name`` below ``parent_fd`` without following symlinks.

    Only reached for trees whose every file the plan found safe (or --force allowed).
    """
    fd = os.open(name, fsutil.O_DIR, dir_fd=parent_fd)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                _rmtree(fd, entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)
