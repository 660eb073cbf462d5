"""File-level differences between two trees, each either stored (read lazily from listings)
or scanned from the workspace.

Subtrees whose ids are equal are skipped without reading them, so the cost follows the size
of the change, not the size of the dataset: two revisions of a 100k-file dataset that differ
in ten files read only the listings on the paths to those ten files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from . import listing
from .errors import InvalidInputError
from .hashing import Oid
from .objects import ObjectStore
from .tree import MAX_DEPTH, Budget, DirNode, FileNode, Node

ChangeKind = Literal["added", "modified", "deleted", "renamed"]


@dataclass(frozen=True, slots=True)
class Ref:
    """A stored node: what a listing entry or pointer says about one path. ``nfiles`` is
    the file count the entry declares (1 for a file)."""

    kind: str
    digest: bytes
    size: int = 0
    executable: bool = False
    nfiles: int = 1


Side = Ref | Node  # a stored node, or a node of a scanned workspace tree


@dataclass(frozen=True, slots=True)
class Change:
    """One changed path. ``kind`` is ``file``, or ``dir`` for an empty directory that came
    or went (a directory with files shows as the changes of its files). A ``renamed`` file
    has the same id at ``path`` as it had at ``old_path``."""

    path: str
    change: ChangeKind
    old: Oid | None
    new: Oid | None
    old_size: int | None = None
    new_size: int | None = None
    kind: str = listing.FILE
    old_path: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "change": self.change, "kind": self.kind,
                "old": str(self.old) if self.old else None,
                "new": str(self.new) if self.new else None,
                "old_size": self.old_size, "new_size": self.new_size,
                "old_path": self.old_path}


def children(store: ObjectStore, ref: Ref, budget: Budget | None = None) -> dict[str, Ref]:
    oid = Oid(ref.digest)
    if budget is not None:
        budget.spend(oid)
    return {e.name: Ref(e.kind, e.oid.digest, e.size, e.mode == 0o755, e.nfiles)
            for e in listing.decode(store.read_bytes(oid), where=str(oid))}


def lookup(store: ObjectStore, ref: Ref, parts: Iterable[str],
           budget: Budget | None = None) -> Ref | None:
    """The stored node at the relative path ``parts`` below ``ref``, reading only the
    listings on that path; None when nothing is there."""
    node: Ref | None = ref
    for name in parts:
        if node is None or node.kind != listing.DIR:
            return None
        node = children(store, node, budget).get(name)
    return node


def diff(store: ObjectStore, rel: str, old: Side | None, new: Side | None, *,
         check_mode: bool = True, budget: Budget | None = None) -> Iterator[Change]:
    """Changes that turn ``old`` into ``new`` at path ``rel``, in path order. Either side
    may be stored (:class:`Ref`) or scanned (a tree node with finished listing ids).

    Without ``check_mode`` an executable-bit difference alone is not a change.
    """
    walk = _Walk(store, budget or Budget(1 << 62), check_mode)
    return walk.diff(rel, old, new, 0)


class _Walk:
    def __init__(self, store: ObjectStore, budget: Budget, check_mode: bool) -> None:
        self.store, self.budget, self.check_mode = store, budget, check_mode

    def kids(self, node: Side, depth: int) -> dict[str, Side]:
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"the tree is nested deeper than {MAX_DEPTH} levels",
                                    hint="the manifest or a listing was altered")
        if isinstance(node, Ref):
            return dict(children(self.store, node, self.budget))
        assert isinstance(node, DirNode)
        return dict(node.children)

    def diff(self, rel: str, old: Side | None, new: Side | None,
             depth: int) -> Iterator[Change]:
        if old is None:
            if new is not None:
                yield from self.all(rel, new, "added", depth)
            return
        if new is None:
            yield from self.all(rel, old, "deleted", depth)
            return
        okind, nkind = _kind(old), _kind(new)
        if okind == nkind == listing.FILE:
            if old.digest != new.digest or (
                    self.check_mode and _executable(old) != _executable(new)):
                yield Change(rel, "modified", Oid(old.digest), Oid(new.digest),
                             old.size, new.size)
        elif okind == nkind == listing.DIR:
            if old.digest != new.digest:
                olds, news = self.kids(old, depth), self.kids(new, depth)
                for name in sorted(olds.keys() | news.keys()):
                    yield from self.diff(f"{rel}/{name}", olds.get(name), news.get(name),
                                         depth + 1)
        else:
            yield from self.all(rel, old, "deleted", depth)
            yield from self.all(rel, new, "added", depth)

    def all(self, rel: str, node: Side, change: ChangeKind, depth: int) -> Iterator[Change]:
        if _kind(node) == listing.FILE:
            oid, size = Oid(node.digest), node.size
            yield (Change(rel, change, None, oid, None, size) if change == "added"
                   else Change(rel, change, oid, None, size, None))
            return
        kids = self.kids(node, depth)
        if not kids:
            yield Change(rel, change, None, None, None, None, listing.DIR)
        for name in sorted(kids):
            yield from self.all(f"{rel}/{name}", kids[name], change, depth + 1)


def _kind(node: Side) -> str:
    if isinstance(node, Ref):
        return node.kind
    return listing.DIR if isinstance(node, DirNode) else listing.FILE


def _executable(node: Side) -> bool:
    return node.executable if isinstance(node, (Ref, FileNode)) else False


def with_renames(changes: Iterable[Change]) -> list[Change]:
    """``changes`` with each deleted file whose id reappears as an added file (same content,
    new path) reported once as ``renamed`` at its new path. Pairs are made in path order;
    empty files, which all share one id, are never paired. The order is kept."""
    changes = list(changes)
    deleted: dict[bytes, list[int]] = defaultdict(list)
    for i, c in enumerate(changes):
        if c.change == "deleted" and c.kind == listing.FILE and c.old and c.old_size:
            deleted[c.old.digest].append(i)
    if not deleted:
        return changes
    gone: set[int] = set()
    out: list[Change] = []
    for c in changes:
        if c.change == "added" and c.kind == listing.FILE and c.new and deleted.get(c.new.digest):
            j = deleted[c.new.digest].pop(0)
            gone.add(j)
            out.append(replace(c, change="renamed", old=c.new, old_size=c.new_size,
                               old_path=changes[j].path))
        else:
            out.append(c)
    return [c for i, c in enumerate(out) if i not in gone]
