"""The result records of ``datavc.Repo``'s commands: frozen values with ``to_dict()`` for
``--json`` (shapes in docs/json.md, fields in docs/api.md). ``datavc.repo`` re-exports them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import listing
from .hashing import Oid
from .treediff import Change

if TYPE_CHECKING:  # imported where used: a command that needs none of them loads none
    from . import transfer


@dataclass(frozen=True)
class AddResult:
    path: str
    pointer: str
    oid: Oid
    kind: str
    size: int
    nfiles: int
    hashed: int
    changed: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "pointer": self.pointer, "oid": str(self.oid),
                "kind": self.kind, "size": self.size, "nfiles": self.nfiles,
                "hashed": self.hashed, "changed": self.changed,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


@dataclass(frozen=True)
class TargetStatus:
    """``state`` is clean, modified, deleted (workspace absent) or not-in-cache."""

    path: str
    pointer: str
    state: str
    changes: list[Change] = field(default_factory=list)
    not_in_cache: int | None = None  # objects (files, listings) of a clean target not cached
    remote: str | None = None  # with status --remote: the remote asked
    not_on_remote: int | None = None  # objects the manifest names that the remote lacks

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "pointer": self.pointer, "state": self.state,
                "changes": [c.to_dict() for c in self.changes],
                "not_in_cache": self.not_in_cache, "remote": self.remote,
                "not_on_remote": self.not_on_remote}


@dataclass(frozen=True)
class CheckoutResult:
    path: str
    written: int
    deleted: int
    missing: list[str]
    forced: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "written": self.written, "deleted": self.deleted,
                "missing": self.missing, "forced": self.forced}


@dataclass(frozen=True)
class LsEntry:
    """One tracked file, as ``datavc ls`` lists it (docs/json.md)."""

    path: str
    kind: str
    oid: Oid
    size: int
    executable: bool

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "oid": str(self.oid),
                "size": self.size, "executable": self.executable}


@dataclass(frozen=True)
class DiffStat:
    """Totals of a diff: files added, modified, deleted and renamed, and the size change."""

    added: int
    modified: int
    deleted: int
    renamed: int
    size_delta: int

    @classmethod
    def of(cls, changes: list[Change]) -> DiffStat:
        files = [c for c in changes if c.kind == listing.FILE]
        count = {k: sum(1 for c in files if c.change == k)
                 for k in ("added", "modified", "deleted", "renamed")}
        delta = sum((c.new_size or 0) - (c.old_size or 0) for c in files)
        return cls(size_delta=delta, **count)

    def to_dict(self) -> dict[str, object]:
        return {"added": self.added, "modified": self.modified, "deleted": self.deleted,
                "renamed": self.renamed, "size_delta": self.size_delta}


@dataclass(frozen=True)
class LogEntry:
    """One commit where a target's id changed (``change``: added, modified or deleted)."""

    commit: str
    author: str
    email: str
    date: str
    message: str
    change: str
    oid: Oid | None
    size: int | None
    nfiles: int | None
    error: str | None = None  # the manifest at this commit is invalid; nothing else is read

    def to_dict(self) -> dict[str, object]:
        return {"commit": self.commit, "author": self.author, "email": self.email,
                "date": self.date, "message": self.message, "change": self.change,
                "oid": str(self.oid) if self.oid else None, "size": self.size,
                "nfiles": self.nfiles, "error": self.error}


@dataclass(frozen=True)
class TransferResult:
    """What a push or fetch moved to or from remote ``remote``."""

    remote: str
    direction: str  # "push" or "fetch"
    transfer: transfer.Transfer
    runs: int = 0  # run-cache entries moved

    def to_dict(self) -> dict[str, object]:
        return {"remote": self.remote, "direction": self.direction, **self.transfer.to_dict(),
                "runs": self.runs}


@dataclass(frozen=True)
class CommitResult:
    recorded: list[AddResult]
    git_commit: str | None

    def to_dict(self) -> dict[str, object]:
        return {"recorded": [r.to_dict() for r in self.recorded], "git_commit": self.git_commit}
