"""Three-way merges of stored trees and pointer manifests: what ``datavc merge-driver`` runs
when git merges two branches that both changed one ``X.datavc`` (docs/format.md, git
integration).

Per path, comparing ids: a side equal to the base gives way to the other side; two sides
that made the same change agree; two directories that both changed are merged entry by
entry. Anything else is a :class:`Conflict`, reported with its path, never guessed. A file's
executable bit is part of its identity. Listings are read lazily, as in treediff: a path
whose ids are equal on two sides is decided without reading anything below it, so the cost
follows the size of the changes, and every read spends from one :class:`~datavc.tree.Budget`.

Nothing is stored here: a clean merge returns the new listing objects as bytes, and the
caller stores them (under the lock) before it writes the pointer that names them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import xxhash

from . import fsutil, listing, manifest
from .errors import InvalidInputError, ObjectMissingError, from_oserror
from .hashing import Oid
from .listing import DIR, FILE, Entry
from .manifest import Pointer
from .objects import ObjectStore
from .paths import find_collisions
from .tree import MAX_DEPTH, Budget
from .treediff import Ref, children


@dataclass(frozen=True, slots=True)
class Conflict:
    """A path the merge cannot decide (or a side it cannot read), and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class TreeMerge:
    """The merged node (None: absent) and the new listings it needs, by digest; only
    meaningful when ``conflicts`` is empty."""

    root: Ref | None
    conflicts: list[Conflict]
    listings: dict[bytes, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class PointerMerge:
    """The merge of one pointer manifest: the merged pointer (None: the target is absent)
    when ``conflicts`` is empty."""

    target: str
    pointer: Pointer | None
    conflicts: list[Conflict]
    listings: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.conflicts

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target,
                "pointer": self.pointer.to_dict() if self.pointer else None,
                "conflicts": [c.to_dict() for c in self.conflicts]}


def merge_trees(store: ObjectStore, base: Ref | None, ours: Ref | None, theirs: Ref | None,
                *, rel: str, budget: Budget | None = None) -> TreeMerge:
    """Merge the changes ``base`` → ``ours`` and ``base`` → ``theirs`` of the node at
    ``rel``. A listing missing from the cache is a conflict at its directory; a corrupt or
    invalid one, or a walk over ``budget``, raises (exit 3 or 6)."""
    merger = _Merger(store, budget or Budget(1 << 62))
    root = merger.merge(rel, base, ours, theirs, 0)
    return TreeMerge(root, merger.conflicts, merger.listings if not merger.conflicts else {})


def merge_pointers(store: ObjectStore, base: Pointer | None, ours: Pointer | None,
                   theirs: Pointer | None, *, target: str) -> PointerMerge:
    """Merge two changes of the pointer of ``target``: its tree, then its ``meta`` key by
    key. A side is None where the pointer is absent (``base`` when both sides added it)."""
    sides = (base, ours, theirs)
    budget = Budget.for_pointer(sum(p.nfiles for p in sides if p is not None))
    refs = [None if p is None else Ref(p.kind, p.oid.digest, p.size, False, p.nfiles)
            for p in sides]
    tree = merge_trees(store, *refs, rel=target, budget=budget)
    meta, meta_conflicts = _merge_meta(*(p.meta if p else {} for p in sides), target=target)
    conflicts = tree.conflicts + meta_conflicts
    if conflicts or tree.root is None:
        return PointerMerge(target, None, conflicts)
    root = tree.root
    pointer = Pointer(root.kind, Oid(root.digest), root.size,  # type: ignore[arg-type]
                      root.nfiles if root.kind == DIR else 1, meta)
    return PointerMerge(target, pointer, [], tree.listings)


def read_side(path: str | os.PathLike[str], *, where: str) -> Pointer | None:
    """The pointer in file ``path`` (one side of a merge); None when the file is empty or
    absent, as git gives the base of an add/add. Invalid content raises (exit 6)."""
    try:
        with open(path, "rb") as f:
            data = fsutil.read_limited(f, manifest.MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise from_oserror(exc, path, "read") from exc
    return manifest.loads(data, where=where) if data else None


class _Merger:
    def __init__(self, store: ObjectStore, budget: Budget) -> None:
        self.store = store
        self.budget = budget
        self.conflicts: list[Conflict] = []
        self.listings: dict[bytes, bytes] = {}

    def merge(self, rel: str, base: Ref | None, ours: Ref | None, theirs: Ref | None,
              depth: int) -> Ref | None:
        if _same(ours, theirs) or _same(theirs, base):
            return ours
        if _same(ours, base):
            return theirs
        if _is_dir(ours) and _is_dir(theirs):
            return self._merge_dirs(rel, base if _is_dir(base) else None,
                                    ours, theirs, depth)  # type: ignore[arg-type]
        self.conflicts.append(Conflict(rel, _reason(base, ours, theirs)))
        return None

    def _merge_dirs(self, rel: str, base: Ref | None, ours: Ref, theirs: Ref,
                    depth: int) -> Ref | None:
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"listing {Oid(ours.digest)} at '{rel}' is nested deeper "
                                    f"than {MAX_DEPTH} levels")
        try:
            old, mine, other = (self._children(r) for r in (base, ours, theirs))
        except ObjectMissingError as exc:
            self.conflicts.append(Conflict(
                rel, f"a listing is missing: {exc.message}; fetch the data of both branches "
                     "into this cache (or copy the objects from another clone's "
                     ".datavc/cache), then merge again"))
            return None
        entries = []
        for name in sorted(mine.keys() | other.keys(), key=os.fsencode):
            ref = self.merge(f"{rel}/{name}", old.get(name), mine.get(name), other.get(name),
                             depth + 1)
            if ref is not None:
                entries.append(_entry(name, ref))
        clashes = find_collisions([e.name for e in entries])
        for a, b in clashes:
            self.conflicts.append(Conflict(f"{rel}/{b}", f"collides with '{rel}/{a}' on "
                                           "case-insensitive file systems"))
        return self._listing(entries)

    def _children(self, ref: Ref | None) -> dict[str, Ref]:
        return {} if ref is None else children(self.store, ref, self.budget)

    def _listing(self, entries: list[Entry]) -> Ref:
        data = listing.encode_entries(entries)
        digest = xxhash.xxh3_128_digest(data)
        self.listings[digest] = data
        return Ref(DIR, digest, sum(e.size for e in entries), False,
                   sum(e.nfiles for e in entries))


def _is_dir(ref: Ref | None) -> bool:
    return ref is not None and ref.kind == DIR


def _same(a: Ref | None, b: Ref | None) -> bool:
    """Same node: both absent, or same kind and id (and, for files, executable bit)."""
    if a is None or b is None:
        return a is b
    return (a.kind, a.digest) == (b.kind, b.digest) and (
        a.kind == DIR or a.executable == b.executable)


def _entry(name: str, ref: Ref) -> Entry:
    if ref.kind == DIR:
        return Entry(name, DIR, Oid(ref.digest), ref.size, 0o755, ref.nfiles)
    return Entry(name, FILE, Oid(ref.digest), ref.size, 0o755 if ref.executable else 0o644)


def _reason(base: Ref | None, ours: Ref | None, theirs: Ref | None) -> str:
    if ours is None or theirs is None:
        return "deleted on one side, changed on the other"
    if ours.kind != theirs.kind:
        return "a file on one side, a directory on the other"
    if base is None:
        return "added on both sides with different content"
    return "changed on both sides"


def _merge_meta(base: dict[str, str], ours: dict[str, str], theirs: dict[str, str], *,
                target: str) -> tuple[dict[str, str], list[Conflict]]:
    merged: dict[str, str] = {}
    conflicts = []
    for key in sorted(ours.keys() | theirs.keys() | base.keys()):
        b, o, t = base.get(key), ours.get(key), theirs.get(key)
        if o == t or t == b:
            value = o
        elif o == b:
            value = t
        else:
            conflicts.append(Conflict(target, f"meta '{key}' changed on both sides"))
            continue
        if value is not None:
            merged[key] = value
    return merged, conflicts
