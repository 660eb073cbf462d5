"""File-level differences between a stored tree (read lazily from listings) and another tree.

Subtrees whose ids are equal are skipped without reading them, so the cost follows the size
of the change, not the size of the dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from . import listing
from .hashing import Oid
from .objects import ObjectStore
from .tree import Budget, DirNode, FileNode, Node

ChangeKind = Literal["added", "modified", "deleted"]


@dataclass(frozen=True, slots=True)
class Ref:
    """A stored node: what a listing entry or pointer says about one path. ``nfiles`` is
    the file count the entry declares (1 for a file)."""

    kind: str
    digest: bytes
    size: int = 0
    executable: bool = False
    nfiles: int = 1


@dataclass(frozen=True, slots=True)
class Change:
    """One changed path. ``kind`` is ``file``, or ``dir`` for an empty directory that came
    or went (a directory with files shows as the changes of its files)."""

    path: str
    change: ChangeKind
    old: Oid | None
    new: Oid | None
    old_size: int | None = None
    new_size: int | None = None
    kind: str = listing.FILE

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "change": self.change, "kind": self.kind,
                "old": str(self.old) if self.old else None,
                "new": str(self.new) if self.new else None,
                "old_size": self.old_size, "new_size": self.new_size}


def children(store: ObjectStore, ref: Ref, budget: Budget | None = None) -> dict[str, Ref]:
    oid = Oid(ref.digest)
    if budget is not None:
        budget.spend(oid)
    return {e.name: Ref(e.kind, e.oid.digest, e.size, e.mode == 0o755, e.nfiles)
            for e in listing.decode(store.read_bytes(oid), where=str(oid))}


def diff(store: ObjectStore, rel: str, old: Ref | None, new: Node | None, *,
         check_mode: bool = True, budget: Budget | None = None) -> Iterator[Change]:
    """Changes that turn stored ``old`` into workspace ``new`` at path ``rel``.

    Without ``check_mode`` an executable-bit difference alone is not a change.
    """
    budget = budget or Budget(1 << 62)
    if old is None and new is None:
        return
    if old is None:
        yield from _all(rel, new, "added")
    elif new is None:
        yield from _all_stored(store, rel, old, "deleted", budget)
    elif old.kind == listing.FILE and isinstance(new, FileNode):
        if old.digest != new.digest or (check_mode and old.executable != new.executable):
            yield Change(rel, "modified", Oid(old.digest), Oid(new.digest), old.size, new.size)
    elif old.kind == listing.DIR and isinstance(new, DirNode):
        if old.digest != new.digest:
            olds = children(store, old, budget)
            for name in sorted(olds.keys() | new.children.keys()):
                yield from diff(store, f"{rel}/{name}", olds.get(name), new.children.get(name),
                                check_mode=check_mode, budget=budget)
    else:
        yield from _all_stored(store, rel, old, "deleted", budget)
        yield from _all(rel, new, "added")


def _all(rel: str, node: Node | None, change: ChangeKind) -> Iterator[Change]:
    if isinstance(node, FileNode):
        yield Change(rel, change, None, Oid(node.digest), None, node.size)
    elif isinstance(node, DirNode):
        if not node.children:
            yield Change(rel, change, None, None, None, None, listing.DIR)
        for name in sorted(node.children):
            yield from _all(f"{rel}/{name}", node.children[name], change)


def _all_stored(store: ObjectStore, rel: str, ref: Ref, change: ChangeKind,
                budget: Budget) -> Iterator[Change]:
    if ref.kind == listing.FILE:
        yield Change(rel, change, Oid(ref.digest), None, ref.size, None)
        return
    kids = children(store, ref, budget)
    if not kids:
        yield Change(rel, change, None, None, None, None, listing.DIR)
    for name, child in sorted(kids.items()):
        yield from _all_stored(store, f"{rel}/{name}", child, change, budget)
