"""``datavc.Repo``: the library behind every command. One method per command, typed results,
no printing. Layers below it: hashing → objects → listing/manifest → tree/state → workspace
→ scm. The CLI is a thin shell over this class.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from . import config as config_mod
from . import fsutil, listing, manifest, merge, reader, scm, transfer, tree
from .errors import (
    DatavcError,
    IntegrityError,
    InvalidInputError,
    NotARepoError,
    ObjectMissingError,
    UnsafePathError,
    UsageError,
    from_oserror,
)
from .hashing import Oid, hash_file
from .links import reflink_probe
from .lock import repo_lock
from .manifest import Pointer
from .objects import ObjectStore, Stored
from .parallel import default_jobs, publish
from .paths import split_relpath
from .report import Reporter
from .state import StatCache, now_ns
from .treediff import Budget, Change, Ref, Side, diff, lookup, with_renames
from .workspace import Executor, Plan, make_plan, refuse_conflicts

DATAVC_DIR = ".datavc"
GITIGNORE = "/cache/\n/tmp/\n/state/\n/config.local.toml\n"


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
class _At:
    """One side of a diff: a commit (``sha`` None for the empty history before the first
    commit), or the workspace."""

    sha: str | None = None
    workspace: bool = False


@dataclass(frozen=True)
class TransferResult:
    """What a push or fetch moved to or from remote ``remote``."""

    remote: str
    direction: str  # "push" or "fetch"
    transfer: transfer.Transfer

    def to_dict(self) -> dict[str, object]:
        return {"remote": self.remote, "direction": self.direction, **self.transfer.to_dict()}


@dataclass(frozen=True)
class CommitResult:
    recorded: list[AddResult]
    git_commit: str | None

    def to_dict(self) -> dict[str, object]:
        return {"recorded": [r.to_dict() for r in self.recorded], "git_commit": self.git_commit}


class Repo:
    """A datavc repository: a work tree with a ``.datavc`` directory at its root."""

    def __init__(self, path: str | os.PathLike[str] = ".", *,
                 reporter: Reporter | None = None) -> None:
        root = find_root(os.path.abspath(path))
        if root is None:
            raise NotARepoError(f"not inside a datavc repository: '{os.path.abspath(path)}'",
                                hint="run `datavc init` at the root of your git work tree")
        self.root = root
        self.dir = os.path.join(root, DATAVC_DIR)
        self.reporter = reporter or Reporter()
        self.config = config_mod.load(self.dir)
        self.store = ObjectStore(os.path.join(self.dir, "cache"))
        self.jobs = self.config.jobs or default_jobs()
        self._git: scm.Git | None = None
        self._git_checked = False
        self._link_type: str | None = None

    # ----------------------------------------------------------------- init

    reinitialized = False  # set by init() on a repository that already existed

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".", *, no_scm: bool = False,
             reporter: Reporter | None = None) -> Repo:
        """Make ``path`` (a git work tree's root unless ``no_scm``) a datavc repository, and
        set up git's merge driver for pointer manifests (``.gitattributes``, staged, and this
        clone's ``.git/config``). On an existing repository (e.g. a fresh clone), only the
        git set-up is done, idempotently, and ``reinitialized`` is True."""
        path = os.path.abspath(path)
        root = path if no_scm else scm.discover_worktree(path)
        if root is None:
            raise DatavcError(f"'{path}' is not inside a git work tree",
                              hint="run `git init` first, or `datavc init --no-scm`")
        ddir = os.path.join(root, DATAVC_DIR)
        existed = os.path.isdir(ddir)
        if not existed:
            try:
                os.makedirs(ddir)
                config_mod.write(os.path.join(ddir, "config.toml"),
                                 {"core": {"format": config_mod.FORMAT}})
                fsutil.atomic_write(os.path.join(ddir, ".gitignore"), GITIGNORE.encode())
            except OSError as exc:
                raise from_oserror(exc, ddir, "create") from exc
        repo = cls(root, reporter=reporter)
        repo.reinitialized = existed
        repo.store.ensure_layout()
        if not no_scm:
            staged = [] if existed else [f"{DATAVC_DIR}/config.toml", f"{DATAVC_DIR}/.gitignore"]
            if scm.ensure_merge_attribute(root):
                staged.append(".gitattributes")
            repo.git.stage(staged)
            repo.git.configure(scm.merge_driver_config())
        return repo

    # ------------------------------------------------------------ internals

    @property
    def git(self) -> scm.Git:
        git = self.git_or_none
        if git is None:
            raise DatavcError("this datavc repository is not in a git work tree (--no-scm)",
                              hint="run `git init` to version the manifests")
        return git

    @property
    def git_or_none(self) -> scm.Git | None:
        if not self._git_checked:
            self._git_checked = True
            if os.path.exists(os.path.join(self.root, ".git")):
                self._git = scm.Git(self.root)
        return self._git

    @contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        with repo_lock(os.path.join(self._tmp_dir, "lock"), what=what):
            self.store.ensure_layout()  # cheap, and a deleted cache directory comes back
            self.store.clear_tmp()
            for name in os.listdir(self._tmp_dir):  # temps of an interrupted manifest write
                if name.startswith(fsutil.TMP_MARK):
                    with suppress(OSError):
                        os.unlink(os.path.join(self._tmp_dir, name))
            try:
                yield
            except BaseException:
                self.store.pending.clear()
                self.store.clear_tmp()  # staged objects of this failed operation
                raise

    @property
    def _tmp_dir(self) -> str:
        return os.path.join(self.dir, "tmp")

    def _scan(self, rel: str, state: StatCache, *, locked: bool) -> tree.Scan:
        scan = tree.scan(self.root, rel, state, self.store.objects_dir)
        if scan.root is not None and not self._tracks_exec:
            tree.clear_exec(scan.root)
        if locked:
            for path in scan.litter:
                with suppress(OSError):
                    os.unlink(path)
        return scan

    def _scan_hashed(self, rel: str, state: StatCache, *, locked: bool) -> tree.Scan:
        """Scan ``rel`` and hash what the stat cache does not know (nothing stored)."""
        started = now_ns()
        scan = self._scan(rel, state, locked=locked)
        tree.resolve(scan, store=None, state=state, started_ns=started, jobs=self.jobs,
                     track_exec=self._tracks_exec)
        return scan

    def _state(self) -> StatCache:
        return StatCache.load(os.path.join(self.dir, "state", "stat"))

    def target(self, arg: str | os.PathLike[str], *, cwd: str | None = None) -> str:
        """A user-given path as a validated repo-relative target (``x.datavc`` → ``x``)."""
        text = os.fspath(arg)
        full = os.path.normpath(os.path.join(cwd or os.getcwd(), text))
        rel = os.path.relpath(full, self.root)
        if rel == ".":
            raise UsageError(f"'{text}' is the repository root itself",
                             hint="track directories or files inside it, e.g. `datavc add data`")
        if rel.startswith(".." + os.sep) or rel == "..":
            raise UsageError(f"'{text}' is not inside the repository {self.root}")
        rel = rel.replace(os.sep, "/")
        if rel.split("/")[0].casefold() in (DATAVC_DIR, ".git"):
            raise UnsafePathError(f"'{text}' is inside {rel.split('/')[0]}, which datavc "
                                  "never tracks or writes")
        if rel.endswith(manifest.SUFFIX):
            rel = manifest.target_of(rel)
        parts = split_relpath(rel, where="the command line")
        self._check_no_symlink_parents(parts, text)
        return rel

    def _check_no_symlink_parents(self, parts: tuple[str, ...], text: str) -> None:
        path = self.root
        for part in parts[:-1]:
            path = os.path.join(path, part)
            if os.path.islink(path):
                raise UnsafePathError(f"'{text}' goes through the symlink '{path}'",
                                      hint="name the real path inside the work tree")

    def read_pointer(self, rel: str, rev: str | None = None) -> Pointer:
        """The pointer of target ``rel`` in the work tree, or at git revision ``rev`` (read
        from git objects, nothing checked out). Invalid manifests are refused (exit 6)."""
        pointer_rel = manifest.pointer_path(rel)
        if rev is not None:
            data = self.git.read_file(rev, pointer_rel, max_bytes=manifest.MAX_BYTES)
            if data is None:
                raise DatavcError(f"'{rel}' is not tracked by datavc at revision '{rev}' "
                                  f"(no {pointer_rel} there)",
                                  hint=f"see `git log --oneline -- {pointer_rel}`")
            return manifest.loads(data, where=f"{pointer_rel} at revision '{rev}'")
        path = os.path.join(self.root, pointer_rel)
        try:
            with open(path, "rb") as f:
                data = f.read(manifest.MAX_BYTES + 1)
        except FileNotFoundError:
            raise DatavcError(f"'{rel}' is not tracked by datavc (no {rel}{manifest.SUFFIX})",
                              hint=f"run `datavc add {rel}`") from None
        except OSError as exc:
            raise from_oserror(exc, path, "read") from exc
        return manifest.loads(data, where=pointer_rel)

    def resolve(self, rev: str) -> str:
        """The commit id a git revision names (exit 1 naming it when git knows none)."""
        return self.git.resolve(rev)

    def tracked(self, rev: str | None = None) -> list[str]:
        """Every tracked target (each ``X`` that has an ``X.datavc``) in the work tree, or
        in the git tree of revision ``rev``."""
        if rev is not None:
            found = []
            for path in self.git.files(rev, suffix=manifest.SUFFIX):
                target = manifest.target_of(path)
                split_relpath(target, where=f"manifest name '{path}' at revision '{rev}'")
                found.append(target)
            return sorted(found)
        found = []
        self._find_pointers(self.root, "", found)
        return sorted(found)

    def _find_pointers(self, path: str, rel: str, found: list[str]) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        names = {e.name for e in entries}
        for e in entries:
            if e.name.endswith(manifest.SUFFIX) and e.is_file(follow_symlinks=False):
                target = rel + e.name[: -len(manifest.SUFFIX)]
                split_relpath(target, where=f"manifest name '{rel}{e.name}'")
                found.append(target)
        for e in entries:
            if e.name in (".git", DATAVC_DIR) or e.name + manifest.SUFFIX in names:
                continue
            if e.is_dir(follow_symlinks=False):
                self._find_pointers(e.path, f"{rel}{e.name}/", found)

    def _targets(self, targets: list[str] | None, rev: str | None = None) -> list[str]:
        if not targets:
            return self.tracked(rev)
        return [self.target(t) for t in targets]

    # ------------------------------------------------------------------ add

    def add(self, paths: list[str | os.PathLike[str]]) -> list[AddResult]:
        """Hash ``paths`` into the cache, write their pointers, ignore them in git."""
        if not paths:
            raise UsageError("nothing to add", hint="name a file or directory: datavc add data/")
        rels = [self.target(p) for p in paths]
        others = self.tracked() + rels  # one walk of the work tree for all paths
        for rel in rels:
            self._check_addable(rel, others)
        with self._locked("add"):
            state = self._state()
            results = self._record(rels, state)
            state.save()
        return results

    def _check_addable(self, rel: str, others: list[str]) -> None:
        path = os.path.join(self.root, rel)
        if not os.path.lexists(path):
            raise DatavcError(f"'{rel}' does not exist", hint="check the path")
        if os.path.islink(path):
            raise UnsafePathError(f"'{rel}' is a symlink; datavc tracks files and directories",
                                  hint="add the path it points to, inside the work tree")
        self._pointer_or_none(rel)  # refuse early rather than overwrite an unreadable one
        git = self.git_or_none
        if git is not None:
            tracked = git.tracked_under(rel)
            if tracked:
                raise DatavcError(
                    f"'{rel}' is already tracked by git ({len(tracked)} file(s), e.g. "
                    f"'{tracked[0]}')",
                    hint=f"stop tracking it in git first: git rm -r --cached '{rel}'")
        for other in others:
            if other != rel and (rel.startswith(other + "/") or other.startswith(rel + "/")):
                raise DatavcError(f"'{rel}' overlaps '{other}', which is tracked separately",
                                  hint="track a directory or the paths inside it, not both")

    def _record(self, rels: list[str], state: StatCache) -> list[AddResult]:
        """Store the workspace content of ``rels`` and point their manifests at it.

        Every target is staged first, then one publish makes all their objects durable
        and named (one pair of sync barriers per operation), then the pointers are written.
        """
        staged = [self._stage(rel, state) for rel in rels]
        publish(self.store, jobs=self.jobs)
        results = []
        for rel, root, _, hashed, scan in staged:
            state.retain_under(rel, scan.seen)
            results.append(self._write_pointer(rel, root, hashed, scan.skipped))
        for rel, root, stored, _, _ in staged:  # only once every manifest is written
            self._relink(rel, root, stored, state)
        return results

    def _stage(self, rel: str, state: StatCache
               ) -> tuple[str, tree.Node, list[tuple[str, Stored]], int, tree.Scan]:
        """Hash ``rel`` and stage every object it needs (files and listings)."""
        started = now_ns()
        scan = self._scan(rel, state, locked=True)
        root = tree.require(scan.root, rel)
        hashed = len(scan.todo)
        for path, reason in scan.skipped:
            self.reporter.warn(f"not tracked: '{path}' ({reason})")
        self.reporter.begin(f"Adding {rel}", hashed)
        try:
            stored = tree.resolve(scan, store=self.store, state=state, started_ns=started,
                                  jobs=self.jobs, progress=self.reporter.advance,
                                  track_exec=self._tracks_exec)
        finally:
            self.reporter.end()
        stored += self._ensure_objects(rel, root, just_stored=self.store.pending_digests())
        tree.finish(root, store=self.store, where=rel)
        return rel, root, stored, hashed, scan

    @property
    def _tracks_exec(self) -> bool:
        """Hardlinked or symlinked files are the read-only cache objects: no exec bit."""
        return self.link_type not in ("hardlink", "symlink")

    @property
    def link_type(self) -> str:
        """The first configured link type that works here (reflink is probed once)."""
        if self._link_type is None:
            self._link_type = "copy"
            for kind in self.config.link_types:
                if kind != "reflink" or self._reflink_probe():
                    self._link_type = kind
                    break
        return self._link_type

    def _reflink_probe(self) -> bool:
        return reflink_probe(self.store.root if os.path.isdir(self.store.root) else self.dir,
                             self.root)

    def _ensure_objects(self, rel: str, root: tree.Node, *,
                        just_stored: set[bytes]) -> list[tuple[str, Stored]]:
        """Files known from the stat cache must still have their object: store them if not
        (e.g. hashed by an earlier status). ``just_stored``: digests staged, not published."""
        digests = set(tree.file_digests(root)) - just_stored
        present = self.store.present_digests(digests)
        if present == digests:
            return []
        restored = []
        for path, node in tree.walk_files(root, rel):
            if node.digest in digests and node.digest not in present:
                res = self.store.add_file(os.path.join(self.root, path))
                node.digest, node.size = res.digest, res.size
                restored.append((path, res))
        return restored

    def _write_pointer(self, rel: str, root: tree.Node, hashed: int,
                       skipped: list[tuple[str, str]]) -> AddResult:
        kind = tree.root_kind(root)
        nfiles = root.nfiles if isinstance(root, tree.DirNode) else 1
        old = self._pointer_or_none(rel)
        pointer = Pointer(kind, Oid(root.digest), root.size, nfiles,  # type: ignore[arg-type]
                          old.meta if old else {})
        pointer_rel = manifest.pointer_path(rel)
        changed = old != pointer
        if changed:
            fsutil.atomic_write(os.path.join(self.root, pointer_rel), pointer.dumps(),
                                tmp_dir=self._tmp_dir,
                                hook="manifest")
        if self.git_or_none is not None:
            scm.ensure_ignored(self.root, rel, tmp_dir=self._tmp_dir)
        return AddResult(rel, pointer_rel, pointer.oid, kind, pointer.size, nfiles, hashed,
                         changed, skipped)

    def _pointer_or_none(self, rel: str) -> Pointer | None:
        """The current pointer of ``rel``; an unreadable one is refused, never overwritten."""
        if not os.path.exists(os.path.join(self.root, manifest.pointer_path(rel))):
            return None
        try:
            return self.read_pointer(rel)
        except InvalidInputError as exc:
            raise type(exc)(exc.message, hint=f"{exc.hint + '; or ' if exc.hint else ''}"
                            f"delete {manifest.pointer_path(rel)} to record {rel} afresh"
                            ) from None

    def _relink(self, rel: str, root: tree.Node, stored: list[tuple[str, Stored]],
                state: StatCache) -> None:
        """With link-type caches, replace the files just stored by links to the cache.

        Only files hashed in this run, and only while each still has the stat it had when
        it was hashed: an edit made meanwhile is left alone (status shows it), never lost.
        """
        if not stored or self.link_type == "copy":
            return
        plan = Plan()
        for path, res in stored:
            executable = res.executable and self._tracks_exec
            plan.writes.append((path, tree.FileNode(res.digest, res.size, executable)))
            plan.expect[path] = res.stat
        self._execute(plan, state)

    # ----------------------------------------------------------- checkout

    def checkout(self, targets: list[str] | None = None, *, rev: str | None = None,
                 force: bool = False) -> list[CheckoutResult]:
        """Make the workspace match the manifests; refuse to lose uncached data.

        With ``rev``, the manifests are those of that git revision (read from git objects:
        HEAD, the index and the work-tree pointer files are left as they are), and the
        default targets are those tracked at ``rev``.
        """
        sha = self.resolve(rev) if rev is not None else None
        rels = self._targets(targets, sha)
        with self._locked("checkout"):
            state = self._state()
            try:
                plans = [(rel, self._plan_checkout(rel, state, force, sha)) for rel in rels]
                results = [self._run_checkout(rel, plan, state) for rel, plan in plans]
            finally:
                state.save()
        return results

    def _plan_checkout(self, rel: str, state: StatCache, force: bool,
                       rev: str | None = None) -> Plan:
        want = self._wanted(rel, rev)
        scan = self._scan_hashed(rel, state, locked=True)
        digests = set(tree.file_digests(want))
        if scan.root is not None:
            digests.update(tree.file_digests(scan.root))
        present = self.store.present_digests(digests)
        plan = make_plan(rel, want, scan.root, present=present,
                         skipped={p for p, _ in scan.skipped},
                         check_mode=self._tracks_exec)
        if not force:
            refuse_conflicts(plan)
        plan.verify = set(plan.conflicts)
        return plan

    def _wanted(self, rel: str, sha: str | None, action: str = "check out") -> tree.Node:
        """The stored tree at work-tree path ``rel``: a tracked target's, or the subtree of
        a path inside one (reading only the listings on the way down to it)."""
        ref, target, pointer = self._subtree(rel, sha)
        if rel == target:
            return self._load_tree(rel, pointer, action)
        if ref is None:
            raise DatavcError(f"'{rel}' is not in the data of '{target}'"
                              + (f" at revision '{sha[:12]}'" if sha else ""),
                              hint=f"see `datavc ls {target}`")
        if ref.kind == listing.FILE:
            return tree.FileNode(ref.digest, ref.size, ref.executable)
        try:
            return tree.load(self.store, ref.digest, kind=ref.kind, size=ref.size,
                             nfiles=ref.nfiles)
        except ObjectMissingError as exc:
            raise ObjectMissingError(f"cannot {action} '{rel}': {exc.message}",
                                     hint=f"fetch it first: `datavc fetch {rel}`") from None

    def _subtree(self, rel: str, sha: str | None) -> tuple[Ref | None, str, Pointer]:
        """The stored node at ``rel`` (None when the target has nothing there), the target
        holding it and its pointer; reads only the listings on the path. A path no target
        holds raises the error of reading its own pointer."""
        found = self._holder(rel, sha)
        if found is None:
            return None, rel, self.read_pointer(rel, sha)  # raises: not tracked
        pointer, below = found
        target = rel[: len(rel) - len("/".join(below)) - 1] if below else rel
        top = Ref(pointer.kind, pointer.oid.digest, pointer.size, False, pointer.nfiles)
        try:
            ref = lookup(self.store, top, below, Budget.for_pointer(pointer.nfiles))
        except ObjectMissingError as exc:
            raise ObjectMissingError(f"cannot find '{rel}' in '{target}': {exc.message}",
                                     hint=f"fetch the data first: `datavc fetch {rel}`"
                                     ) from None
        return ref, target, pointer

    def _load_tree(self, rel: str, pointer: Pointer, action: str = "check out") -> tree.Node:
        try:
            return tree.load(self.store, pointer.oid.digest, kind=pointer.kind,
                             size=pointer.size, nfiles=pointer.nfiles)
        except ObjectMissingError as exc:
            raise ObjectMissingError(f"cannot {action} '{rel}': {exc.message}",
                                     hint="the cache lacks this data: re-add it where it "
                                          "still exists, or copy the objects from another "
                                          "clone's .datavc/cache"
                                     ) from None

    def _run_checkout(self, rel: str, plan: Plan, state: StatCache) -> CheckoutResult:
        self.reporter.begin(f"Checking out {rel}", len(plan.writes))
        try:
            self._execute(plan, state)
        finally:
            self.reporter.end()
        for path in plan.missing:
            self.reporter.warn(f"not in the cache, left as it is: '{path}'")
        return CheckoutResult(rel, len(plan.writes), len(plan.deletes), plan.missing,
                              sorted(set(plan.conflicts)))

    def _execute(self, plan: Plan, state: StatCache) -> None:
        root_fd = os.open(self.root, fsutil.O_DIR)
        try:
            types = self.config.link_types
            Executor(self.root, root_fd, self.store, types[types.index(self.link_type):]
                     if self.link_type in types else ("copy",),
                     state, self.jobs, self.reporter.advance).run(plan)
        finally:
            os.close(root_fd)

    # -------------------------------------------------------------- status

    def status(self, targets: list[str] | None = None, *,
               remote: str | None = None) -> list[TargetStatus]:
        """What differs between the workspace and the manifests, per tracked target. With
        ``remote`` (a name, or "" for the default remote), also how many objects the
        manifests name that the remote lacks, as the remote answers now."""
        rels = self._targets(targets)
        state = self._state()
        out = [self._status_one(rel, state) for rel in rels]
        self._save_state_if_free(state)
        if remote is not None:
            out = self._remote_status(out, remote or None)
        return out

    def _remote_status(self, found: list[TargetStatus],
                       remote: str | None) -> list[TargetStatus]:
        name, rem = self._open_remote(remote, None)
        try:
            out = []
            for st in found:
                pointer = self.read_pointer(st.path)
                ids = transfer.object_ids(self.store, transfer.Root(
                    pointer.kind, pointer.oid, pointer.nfiles))
                lacking = len(rem.missing(ids))
                out.append(replace(st, remote=name, not_on_remote=lacking))
            return out
        finally:
            rem.close()

    def _status_one(self, rel: str, state: StatCache) -> TargetStatus:
        pointer = self.read_pointer(rel)
        pointer_rel = manifest.pointer_path(rel)
        scan = self._scan_hashed(rel, state, locked=False)
        if scan.root is None:
            return TargetStatus(rel, pointer_rel, "deleted")
        tree.finish(scan.root, store=None, where=rel)
        if scan.root.digest == pointer.oid.digest and tree.root_kind(scan.root) == pointer.kind:
            files = tree.file_digests(scan.root)
            listings = [n.digest for _, n in tree.walk_dirs(scan.root, rel)]
            present = self.store.present_digests(set(files) | set(listings))
            missing = sum(1 for d in files + listings if d not in present)
            return TargetStatus(rel, pointer_rel, "clean", not_in_cache=missing)
        old = Ref(pointer.kind, pointer.oid.digest, pointer.size)
        try:
            changes = list(diff(self.store, rel, old, scan.root,
                                check_mode=self._tracks_exec,
                                budget=Budget.for_pointer(pointer.nfiles)))
        except ObjectMissingError:
            return TargetStatus(rel, pointer_rel, "not-in-cache")
        return TargetStatus(rel, pointer_rel, "modified" if changes else "clean", changes)

    def _save_state_if_free(self, state: StatCache) -> None:
        try:
            with self._locked("status"):
                state.save()
        except DatavcError:
            pass  # another writer is busy: the stat cache is only a cache

    # -------------------------------------------------------------- commit

    def commit(self, targets: list[str] | None = None, *,
               message: str | None = None) -> CommitResult:
        """Record changed workspace data into its manifests; with ``message``, git-commit."""
        rels = self._targets(targets)
        if not rels:
            raise DatavcError("nothing is tracked yet", hint="run `datavc add PATH` first")
        with self._locked("commit"):
            state = self._state()
            for rel in rels:  # every target is checked before any is recorded
                if not os.path.lexists(os.path.join(self.root, rel)):
                    raise DatavcError(f"'{rel}' is missing from the workspace",
                                      hint=f"run `datavc checkout {rel}` to restore it, or "
                                           f"delete {rel}{manifest.SUFFIX} to stop tracking it")
                self.read_pointer(rel)
            recorded = self._record(rels, state)
            state.save()
            sha = self._git_commit(rels, message) if message is not None else None
        return CommitResult(recorded, sha)

    def _git_commit(self, rels: list[str], message: str) -> str | None:
        paths = [manifest.pointer_path(r) for r in rels]
        paths += sorted({os.path.join(os.path.dirname(r), ".gitignore") for r in rels})
        return self.git.commit(message, paths)

    # ---------------------------------------------------------------- diff

    def diff(self, a: str | None = None, b: str | None = None,
             targets: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None
             ) -> list[Change]:
        """File-level changes from revision ``a`` (default HEAD) to revision ``b`` (default:
        the workspace data), for ``targets`` (tracked targets, paths inside them, or
        directories holding them; default: every target tracked on either side).

        Only the subtrees whose ids differ are read. A deleted file whose content reappears
        at another path is one ``renamed`` change.
        """
        old = self._diff_side(a or "HEAD")
        new = self._diff_side(b) if b is not None else _At(workspace=True)
        if isinstance(targets, (str, os.PathLike)):
            targets = [targets]
        state = self._state() if new.workspace else None
        out: list[Change] = []
        for rel in self._diff_paths(targets, old, new):
            before, n_before = self._stored_at(rel, old)
            if state is not None:
                after: Side | None = self._workspace_at(rel, state)
                n_after = 0
            else:
                after, n_after = self._stored_at(rel, new)
            budget = Budget.for_pointer(n_before + n_after)
            check_mode = self._tracks_exec if new.workspace else True
            try:
                out.extend(diff(self.store, rel, before, after, check_mode=check_mode,
                                budget=budget))
            except ObjectMissingError as exc:
                raise ObjectMissingError(
                    f"cannot diff '{rel}': {exc.message}",
                    hint="the listings of that revision are not in this cache: add or check "
                         "out its data where it exists, or copy the objects from another "
                         "clone's .datavc/cache") from None
        if state is not None:
            self._save_state_if_free(state)
        return with_renames(out)

    def _diff_side(self, rev: str) -> _At:
        if rev == "HEAD" and self.git.is_unborn():
            return _At(None)
        return _At(self.resolve(rev))

    def _tracked_at(self, at: _At) -> list[str]:
        if at.workspace:
            return self.tracked()
        return self.tracked(at.sha) if at.sha is not None else []

    def _diff_paths(self, targets: list[str | os.PathLike[str]] | None,
                    old: _At, new: _At) -> list[str]:
        known = sorted(set(self._tracked_at(old)) | set(self._tracked_at(new)))
        if not targets:
            return known
        out: list[str] = []
        for arg in targets:
            rel = self.target(arg)
            below = [t for t in known if t == rel or t.startswith(rel + "/")]
            inside = [t for t in known if rel.startswith(t + "/")]
            if not below and not inside:
                raise DatavcError(f"'{rel}' is not tracked by datavc on either side of the diff",
                                  hint="name a tracked target or a path inside one; "
                                       "see `datavc ls`")
            out.extend(below or [rel])
        return sorted(set(out))

    def _stored_at(self, rel: str, at: _At) -> tuple[Ref | None, int]:
        """The stored node at work-tree path ``rel`` as of ``at``'s manifests (a target, or a
        path inside one: only the listings on the way are read), with its target's nfiles."""
        if at.sha is None and not at.workspace:
            return None, 0
        sha = None if at.workspace else at.sha
        for target in self._tracked_at(at):
            if rel == target or rel.startswith(target + "/"):
                pointer = self.read_pointer(target, sha)
                ref = Ref(pointer.kind, pointer.oid.digest, pointer.size)
                parts = rel[len(target) + 1:].split("/") if rel != target else []
                budget = Budget.for_pointer(pointer.nfiles)
                try:
                    return lookup(self.store, ref, parts, budget), pointer.nfiles
                except ObjectMissingError as exc:
                    raise ObjectMissingError(f"cannot diff '{rel}': {exc.message}",
                                             hint="the listings of that revision are not in "
                                                  "this cache") from None
        return None, 0

    def _workspace_at(self, rel: str, state: StatCache) -> tree.Node | None:
        scan = self._scan_hashed(rel, state, locked=False)
        if scan.root is not None:
            tree.finish(scan.root, store=None, where=rel)
        return scan.root

    # ----------------------------------------------------------------- log

    def log(self, target: str | os.PathLike[str], *, rev: str = "HEAD") -> list[LogEntry]:
        """The commits reachable from ``rev``, newest first, where ``target``'s id changed,
        with its size and file count at each. A manifest that fails validation at some
        commit is reported in that entry's ``error``, never read further."""
        rel = self.target(target)
        if rev == "HEAD" and self.git.is_unborn():
            return []
        pointer_rel = manifest.pointer_path(rel)
        parsed: dict[str, Pointer | str] = {}

        def pointer(blob: str | None) -> Pointer | str | None:
            if blob is None:
                return None
            if blob not in parsed:
                try:
                    parsed[blob] = manifest.loads(self.git.read_blob(blob),
                                                  where=f"{pointer_rel} (git blob {blob})")
                except DatavcError as exc:
                    parsed[blob] = exc.message
                    self.reporter.warn(f"{pointer_rel} in git blob {blob} is invalid and was "
                                       f"not read: {exc.message}")
            return parsed[blob]

        out: list[LogEntry] = []
        for info, here, parents in self.git.path_history(pointer_rel, rev):
            now = pointer(here)
            before = [pointer(p) for p in parents]
            if isinstance(now, Pointer) and any(
                    isinstance(p, Pointer) and p.oid == now.oid and p.kind == now.kind
                    for p in before):
                continue  # only the manifest's metadata changed, not the data
            if now is None:
                change = "deleted"
            elif any(p is not None for p in before):
                change = "modified"
            else:
                change = "added"
            ok = now if isinstance(now, Pointer) else None
            out.append(LogEntry(info.id, info.author, info.email, info.date, info.message,
                                change, ok.oid if ok else None, ok.size if ok else None,
                                ok.nfiles if ok else None,
                                now if isinstance(now, str) else None))
        if not out:
            raise DatavcError(f"'{rel}' has no history as a datavc target (no commit reachable "
                              f"from '{rev}' has {pointer_rel})",
                              hint="name a tracked target: see `datavc ls` or "
                                   "`git log --stat -- '*.datavc'`")
        return out

    # --------------------------------------------------------------- merge

    def merge_pointers(self, base: str | os.PathLike[str], ours: str | os.PathLike[str],
                       theirs: str | os.PathLike[str], path: str) -> merge.PointerMerge:
        """Three-way merge of the pointer manifest ``path`` from the files ``base``, ``ours``
        and ``theirs`` (git's merge driver: ``%O %A %B %P``; an empty or absent file is a
        side without the manifest).

        Clean: the new listings are stored (under the lock, taken only when some are not in
        the cache yet), then the merged pointer is written into ``ours``, atomically.
        Otherwise ``ours`` is left as it is, and the conflicts say why; an invalid side, a
        missing listing or a corrupt one is a conflict too, naming it.
        """
        target = path.removesuffix(manifest.SUFFIX) or path
        try:
            sides = [merge.read_side(f, where=f"{path} ({side})")
                     for f, side in ((base, "base"), (ours, "ours"), (theirs, "theirs"))]
            result = merge.merge_pointers(self.store, *sides, target=target)
        except DatavcError as exc:
            return merge.PointerMerge(target, None, [merge.Conflict(target, exc.message)])
        if result.pointer is None:
            return result if result.conflicts else merge.PointerMerge(
                target, None, [merge.Conflict(target, "the merge removes it")])
        missing = result.listings.keys() - self.store.present_digests(set(result.listings))
        if missing:
            with self._locked("merge-driver"):
                for digest in missing:
                    self.store.add_bytes(result.listings[digest])
                publish(self.store, jobs=1)
        fsutil.atomic_write(os.path.abspath(ours), result.pointer.dumps())
        return result

    # ------------------------------------------------------------------ ls

    def ls(self, target: str | os.PathLike[str] | None = None, *,
           rev: str | None = None) -> list[LsEntry]:
        """Every tracked file of ``target`` (default: of every target), recursively, as the
        manifests of the work tree or of git revision ``rev`` name them, sorted by path."""
        sha = self.resolve(rev) if rev is not None else None
        rels = [self.target(target)] if target is not None else self.tracked(sha)
        out: list[LsEntry] = []
        for rel in rels:
            pointer = self.read_pointer(rel, sha)
            root = self._load_tree(rel, pointer, action="list")
            out.extend(sorted((LsEntry(path, listing.FILE, Oid(node.digest), node.size,
                                       node.executable)
                               for path, node in tree.walk_files(root, rel)),
                              key=lambda e: e.path))
        return out

    # ----------------------------------------------------------------- read

    def open(self, path: str | os.PathLike[str], rev: str | None = None, *,
             mode: str = "rb") -> io.BufferedReader:
        """One tracked file as a read-only binary file, as of git revision ``rev`` (its
        manifests read from git objects, nothing checked out) or, without ``rev``, as the
        work-tree manifests record it. The bytes come from the cache, verified against
        their id (docs/api.md); a missing object goes through :meth:`_fetch_object`.

        ``path`` is relative to the repository root (or absolute inside it), whatever the
        current directory: a file target, or a file inside a directory target. Only the
        listings on its path are read.
        """
        reader.check_mode(mode)
        parts = reader.data_path(self.root, path)
        sha = self.resolve(rev) if rev is not None else None
        try:
            found = self._find_file(parts, sha, rev)
            try:
                return reader.open_object(self.store.path(found.oid), found)
            except ObjectMissingError:
                self._fetch_object(found.oid)
            return reader.open_object(self.store.path(found.oid), found)
        except ObjectMissingError as exc:
            at = f" at revision '{rev}'" if rev is not None else ""
            raise ObjectMissingError(f"cannot read '{'/'.join(parts)}'{at}: {exc.message}",
                                     hint=exc.hint) from None

    def read_bytes(self, path: str | os.PathLike[str], rev: str | None = None) -> bytes:
        """The whole verified content of one tracked file (see :meth:`open`)."""
        with self.open(path, rev) as f:
            return f.read()

    def _find_file(self, parts: tuple[str, ...], sha: str | None,
                   rev: str | None) -> reader.Found:
        """The target that is a prefix of ``parts`` (the outermost, as discovery finds
        targets), then the file below it."""
        for n in range(1, len(parts) + 1):
            pointer = self._pointer_at(parts, n, sha, rev)
            if pointer is not None:
                mode = 0o755 if pointer.kind == listing.DIR else 0o644
                top = listing.Entry(parts[n - 1], pointer.kind, pointer.oid, pointer.size,
                                    mode, pointer.nfiles)
                return reader.lookup(self._listings, top, "/".join(parts[:n]), parts[n:],
                                     path="/".join(parts), rev=rev)
        at = f" at revision '{rev}'" if rev is not None else ""
        raise DatavcError(f"'{'/'.join(parts)}' is not tracked by datavc{at}: no pointer "
                          "manifest names it or a directory above it",
                          hint=f"`datavc ls{'' if rev is None else ' --rev ' + rev}` lists "
                               "the tracked files")

    def _pointer_at(self, parts: tuple[str, ...], n: int, sha: str | None,
                    rev: str | None) -> Pointer | None:
        """The pointer of target ``parts[:n]`` at ``sha`` or in the work tree, or None."""
        target = "/".join(parts[:n])
        pointer_rel = manifest.pointer_path(target)
        if sha is not None:
            data = self.git.read_file(sha, pointer_rel, max_bytes=manifest.MAX_BYTES)
            if data is None:
                return None
            return manifest.loads(data, where=f"{pointer_rel} at revision '{rev}'")
        if n > 1 and os.path.islink(os.path.join(self.root, *parts[:n - 1])):
            raise UnsafePathError(f"'{'/'.join(parts)}' goes through the symlink "
                                  f"'{os.path.join(self.root, *parts[:n - 1])}'",
                                  hint="name the real path inside the work tree")
        try:
            st = os.lstat(os.path.join(self.root, pointer_rel))
        except OSError:
            return None
        return self.read_pointer(target) if stat.S_ISREG(st.st_mode) else None

    @cached_property
    def _listings(self) -> reader.Listings:
        return reader.Listings(self._listing_bytes)

    def _listing_bytes(self, oid: Oid) -> bytes:
        try:
            return self.store.read_bytes(oid)
        except ObjectMissingError:
            self._fetch_object(oid)
        return self.store.read_bytes(oid)

    def _fetch_object(self, oid: Oid) -> None:
        """Bring object ``oid``, missing from the cache, into it from the default remote
        (verified before it enters the cache, under the lock): the one place where reading
        falls back to a remote. ObjectMissingError (exit 1) when no remote is configured or
        the remote lacks it; IntegrityError (exit 3) when it arrives corrupt twice."""
        if self.default_remote() is None:
            raise ObjectMissingError(
                f"object {oid} is not in the cache ({self.store.path(oid)}) and no default "
                "remote is configured",
                hint="`datavc remote add NAME URL --default`, or re-add the data where it "
                     "still exists")
        name, rem = self._open_remote(None, None)
        try:
            with self._locked("fetch"):
                try:
                    done = transfer.fetch(self.store, rem,
                                          [transfer.Root(listing.FILE, oid, 1)],
                                          jobs=1, reporter=self.reporter)
                finally:
                    publish(self.store, jobs=1)
        finally:
            rem.close()
        if done.corrupt:
            raise IntegrityError(f"object {oid} arrived corrupt from remote '{name}' twice; "
                                 "it was not stored")
        if done.missing:
            raise ObjectMissingError(f"object {oid} is neither in the cache nor on remote "
                                     f"'{name}'", hint="push it from a clone that has it")

    # ----------------------------------------------------------- plumbing

    def hash_object(self, path: str | os.PathLike[str], *, write: bool = False) -> Oid:
        """The id of one file's content; with ``write``, also store it in the cache."""
        try:
            if write:
                with self._locked("hash-object"):
                    oid = Oid(self.store.add_file(os.fspath(path)).digest)
                    publish(self.store, jobs=1)
                return oid
            return hash_file(path)[0]
        except OSError as exc:
            raise from_oserror(exc, path, "hash") from exc

    def cat_object(self, oid: str | Oid) -> Iterator[bytes]:
        """The verified bytes of one object, in chunks; IntegrityError if they do not match."""
        from .objects import read_verified

        oid = oid if isinstance(oid, Oid) else Oid.parse(oid)
        return read_verified(self.store, oid)

    def ls_manifest(self, pointer: str | os.PathLike[str], *,
                    recursive: bool = True) -> list[tuple[str, listing.Entry]]:
        """The entries named by a pointer manifest (recursively), as (path, entry)."""
        rel = self.target(pointer)
        ptr = self.read_pointer(rel)
        if ptr.kind == listing.FILE:
            return [(rel, listing.Entry(os.path.basename(rel), listing.FILE, ptr.oid, ptr.size))]
        out: list[tuple[str, listing.Entry]] = []
        self._walk_listing(ptr.oid, rel, recursive, out, Budget.for_pointer(ptr.nfiles))
        return out

    def _walk_listing(self, oid: Oid, prefix: str, recursive: bool,
                      out: list[tuple[str, listing.Entry]], budget: Budget) -> None:
        budget.spend(oid)
        for e in listing.decode(self.store.read_bytes(oid), where=str(oid)):
            path = f"{prefix}/{e.name}"
            out.append((path, e))
            if recursive and e.kind == listing.DIR:
                self._walk_listing(e.oid, path, recursive, out, budget)

    # ------------------------------------------------------------- remotes

    def remotes(self) -> list[config_mod.RemoteInfo]:
        """The configured remotes (both config files merged), credentials masked."""
        return config_mod.remotes(self.dir)

    def remote_add(self, name: str, url: str, *, default: bool = False, local: bool = False,
                   force: bool = False) -> None:
        """Add remote ``name`` at ``url`` (``s3://BUCKET/PREFIX``, ``file:///PATH`` or a
        directory; a relative directory is taken from the current directory and stored
        relative to the repository root)."""
        if "://" not in url and not os.path.isabs(url):
            url = os.path.relpath(os.path.abspath(url), self.root)
        config_mod.check_url(url, where="remote URL")
        self._edit_config(config_mod.remote_add, name, url, local=local, default=default,
                          force=force)

    def remote_modify(self, name: str, key: str, value: str | None, *,
                      local: bool = False) -> None:
        """Set one setting of a remote; ``value`` None unsets it."""
        self._edit_config(config_mod.remote_modify, name, key, value, local=local)

    def remote_remove(self, name: str, *, local: bool = False) -> None:
        self._edit_config(config_mod.remote_remove, name, local=local)

    def remote_default(self, name: str | None, *, local: bool = False) -> None:
        """Make ``name`` the default remote; None unsets the default."""
        self._edit_config(config_mod.remote_default, name, local=local)

    def default_remote(self) -> str | None:
        return (self.config.raw or {}).get("core", {}).get("remote")

    def _edit_config(self, edit: Any, *args: Any, **kwargs: Any) -> None:
        with self._locked("remote"):
            try:
                edit(self.dir, *args, **kwargs)
            except OSError as exc:
                raise from_oserror(exc, self.dir, "write the config in") from exc
            self.config = config_mod.load(self.dir)

    # ---------------------------------------------------------- transfers

    def push(self, targets: list[str] | None = None, *, remote: str | None = None,
             jobs: int | None = None, revs: list[str] | None = None,
             all_branches: bool = False, all_tags: bool = False,
             all_commits: bool = False) -> TransferResult:
        """Upload the objects of ``targets`` (default: every tracked target) that the remote
        lacks, as the work-tree manifests name them, or those of ``revs`` / the scopes.
        Objects missing from the cache are reported in ``missing`` and the listings above
        them are not pushed."""
        name, rem = self._open_remote(remote, jobs)
        try:
            roots = self._roots(targets, revs, all_branches, all_tags, all_commits)
            done = transfer.push(self.store, rem, roots, jobs=self._transfer_jobs(jobs),
                                 reporter=self.reporter)
        finally:
            rem.close()
        return TransferResult(name, "push", done)

    def fetch(self, targets: list[str] | None = None, *, remote: str | None = None,
              jobs: int | None = None, revs: list[str] | None = None,
              all_branches: bool = False, all_tags: bool = False,
              all_commits: bool = False) -> TransferResult:
        """Download into the cache the objects of ``targets`` that it lacks (verified; a
        mismatch is retried once, then reported in ``corrupt`` and never stored)."""
        name, rem = self._open_remote(remote, jobs)
        try:
            roots = self._roots(targets, revs, all_branches, all_tags, all_commits)
            with self._locked("fetch"):
                try:
                    done = transfer.fetch(self.store, rem, roots,
                                          jobs=self._transfer_jobs(jobs),
                                          reporter=self.reporter)
                finally:
                    publish(self.store, jobs=self.jobs)  # keep what arrived: reruns resume
        finally:
            rem.close()
        return TransferResult(name, "fetch", done)

    def pull(self, targets: list[str] | None = None, *, remote: str | None = None,
             jobs: int | None = None, rev: str | None = None,
             force: bool = False) -> tuple[TransferResult, list[CheckoutResult]]:
        """``fetch`` then ``checkout`` (with all of checkout's safety rules)."""
        fetched = self.fetch(targets, remote=remote, jobs=jobs,
                             revs=[rev] if rev is not None else None)
        return fetched, self.checkout(targets, rev=rev, force=force)

    def _transfer_jobs(self, jobs: int | None) -> int:
        if jobs is not None and not 1 <= jobs <= 256:
            raise UsageError(f"-j must be from 1 to 256, not {jobs}")
        return jobs or 16

    def _open_remote(self, name: str | None, jobs: int | None) -> tuple[str, Any]:
        from .remote import open_remote

        name = name or self.default_remote()
        if name is None:
            raise DatavcError("no remote given and no default remote set",
                              hint="name one with -r NAME, or `datavc remote add NAME URL "
                                   "--default`")
        table = (self.config.raw or {}).get("remote", {}).get(name)
        if table is None:
            raise DatavcError(f"no remote named {name!r}", hint="see `datavc remote list`")
        return name, open_remote(name, table, base_dir=self.root,
                                 jobs=self._transfer_jobs(jobs))

    def _roots(self, targets: list[str] | None, revs: list[str] | None, all_branches: bool,
               all_tags: bool, all_commits: bool) -> list[transfer.Root]:
        """The trees to transfer: the work-tree manifests (no revision named), or those of
        each revision named and of each commit in the scopes."""
        shas: list[str | None] = []
        if revs or all_branches or all_tags or all_commits:
            shas = [self.resolve(r) for r in revs or []]
            shas += self.git.revisions(branches=all_branches, tags=all_tags,
                                       commits=all_commits)
        else:
            shas = [None]
        roots: dict[tuple[str, bytes, tuple[str, ...]], transfer.Root] = {}
        for sha in dict.fromkeys(shas):
            rels = ([self.target(t) for t in targets] if targets
                    else self.tracked(sha))
            for rel in rels:
                found = self._holder(rel, sha)
                if found is None:
                    if sha is None:
                        self.read_pointer(rel)  # raises: not tracked
                    continue  # not tracked at that commit
                pointer, below = found
                roots[(pointer.kind, pointer.oid.digest, below)] = transfer.Root(
                    pointer.kind, pointer.oid, pointer.nfiles, below)
        return list(roots.values())

    def _holder(self, rel: str, sha: str | None) -> tuple[Pointer, tuple[str, ...]] | None:
        """The pointer of the target that is ``rel`` or holds it, and the rest of the path
        below that target; None when no target holds ``rel``."""
        parts = tuple(rel.split("/"))
        for n in range(1, len(parts) + 1):
            pointer = self._pointer_at(parts, n, sha, sha)
            if pointer is not None:
                return pointer, parts[n:]
        return None


LS_SCHEMA = (("path", "string"), ("kind", "string"), ("oid", "string"), ("size", "int64"),
             ("executable", "bool"))


def write_ls_parquet(entries: list[LsEntry], path: str | os.PathLike[str]) -> None:
    """Write ``entries`` as a Parquet file with the columns of LS_SCHEMA (docs/json.md),
    through a temp file renamed into place. pyarrow is imported only here."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatavcError(f"cannot write Parquet: {exc}", hint="pip install pyarrow") from None
    schema = pa.schema([(name, getattr(pa, "bool_" if t == "bool" else t)())
                        for name, t in LS_SCHEMA])
    columns = {
        # a name that is not valid UTF-8 keeps its undecodable bytes as \udcXX text
        "path": [e.path.encode("utf-8", "backslashreplace").decode() for e in entries],
        "kind": [e.kind for e in entries],
        "oid": [str(e.oid) for e in entries],
        "size": [e.size for e in entries],
        "executable": [e.executable for e in entries],
    }
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns, schema=schema), sink)
    target = os.path.abspath(os.fspath(path))
    try:
        fsutil.atomic_write(target, sink.getvalue().to_pybytes())
    except OSError as exc:
        raise from_oserror(exc, target, "write") from exc


def find_root(start: str) -> str | None:
    path = start
    while True:
        if os.path.isdir(os.path.join(path, DATAVC_DIR)):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
