"""``Worktree``: the commands that move data between the work tree, the cache and the pointer
manifests: ``add``, ``commit``, ``checkout`` and ``status``. Part of ``datavc.Repo``."""

from __future__ import annotations

import os

from . import fsutil, listing, manifest, scm, tree
from .errors import DatavcError, InvalidInputError, ObjectMissingError, UnsafePathError, UsageError
from .hashing import Oid
from .manifest import Pointer
from .objects import Stored
from .parallel import Prehash, publish
from .repo_core import RepoCore
from .results import AddResult, CheckoutResult, CommitResult, TargetStatus
from .state import (
    FINE_WINDOW_NS,
    GitIndexMemo,
    PresenceMemo,
    StatCache,
    now_ns,
    settled_fanout_stamp,
)
from .treediff import Budget, Ref, diff, lookup
from .workspace import Executor, Plan, make_plan, refuse_conflicts

# A tree of this many files is worth the wait for a trusted presence-memo stamp after an
# add that stored objects: counting 100,000 files' objects in the cache costs the next
# status about 0.2 s cold, the wait at most FINE_WINDOW_NS (usually less: the stat cache
# is saved meanwhile)
PRESENCE_WAIT_FILES = 20_000


class Worktree(RepoCore):
    """add, commit, checkout and status (see ``datavc.Repo``)."""

    # ------------------------------------------------------------------ add

    def add(self, paths: list[str | os.PathLike[str]]) -> list[AddResult]:
        """Hash ``paths`` into the cache, write their pointers, ignore them in git."""
        if not paths:
            raise UsageError("nothing to add", hint="name a file or directory: datavc add data/")
        rels = [self.target(p) for p in paths]
        # one walk of the work tree for all paths, but not into them: the walk of each
        # (in _stage) finds the pointers inside it
        others = self.tracked(skip=set(rels)) + rels
        git_memo = self._git_index_memo()
        for rel in rels:
            self._check_addable(rel, others, git_memo)
        with self._locked("add"):
            results = self._record_and_save(rels, adding=True)
            git_memo.save()
        return results

    def _record_and_save(self, rels: list[str], *, adding: bool = False) -> list[AddResult]:
        """:meth:`_record` with the stat cache and the presence memo loaded and saved."""
        memo = self._presence_memo(now_ns())  # stamped before anything is looked at
        state = self._state()
        results, recorded = self._record(rels, state, memo, adding=adding)
        state.save()
        if recorded is not None:  # objects came in: the memo starts afresh once they settle
            self._renew_memo(memo, recorded)
        memo.save()
        return results

    def _renew_memo(self, memo: PresenceMemo, roots: list[tree.Node]) -> None:
        """After objects were stored: the memo under a stamp of the cache as it is now,
        with each of ``roots`` complete in it. The stamp can be trusted only once the
        newest change to the cache is a racy window old (a tenth of a second): for trees
        big enough that counting their objects costs the next ``status`` more than that
        (PRESENCE_WAIT_FILES files), wait for it, holding the lock; for smaller ones, only
        when that time has passed already."""
        files = sum(tree.file_count(root) for root in roots)
        memo.renew(settled_fanout_stamp(
            self.store.objects_dir, FINE_WINDOW_NS if files >= PRESENCE_WAIT_FILES else 0))
        for root in roots:
            memo.put(_memo_key(root), 0)

    def _check_addable(self, rel: str, others: list[str], git_memo: GitIndexMemo) -> None:
        path = os.path.join(self.root, rel)
        if not os.path.lexists(path):
            raise DatavcError(f"'{rel}' does not exist", hint="check the path")
        if os.path.islink(path):
            raise UnsafePathError(f"'{rel}' is a symlink; datavc tracks files and directories",
                                  hint="add the path it points to, inside the work tree")
        self._pointer_or_none(rel)  # refuse early rather than overwrite an unreadable one
        if self.in_git and not git_memo.untracked(rel):
            tracked = self.git.tracked_under(rel)
            if not tracked:
                git_memo.put(rel)
            else:
                raise DatavcError(
                    f"'{rel}' is already tracked by git ({len(tracked)} file(s), e.g. "
                    f"'{tracked[0]}')",
                    hint=f"stop tracking it in git first: git rm -r --cached '{rel}'")
        for other in others:
            if other != rel and (rel.startswith(other + "/") or other.startswith(rel + "/")):
                raise DatavcError(f"'{rel}' overlaps '{other}', which is tracked separately",
                                  hint="track a directory or the paths inside it, not both")

    def _record(self, rels: list[str], state: StatCache, memo: PresenceMemo, *,
                adding: bool = False) -> tuple[list[AddResult], list[tree.Node] | None]:
        """Store the workspace content of ``rels`` and point their manifests at it.

        Every target is staged first, then one publish makes all their objects durable
        and named (one pair of sync barriers per operation), then the pointers are written.
        Also returns the recorded trees when objects were stored (None when none were:
        their entries of 0 are in ``memo`` already), as the cache now holds every object
        of each."""
        staged = [self._stage(rel, state, memo, adding=adding) for rel in rels]
        stored_any = bool(self.store.pending or self.store.pending_packs)
        publish(self.store, jobs=self.jobs)
        results = []
        for rel, root, _, hashed, scan in staged:
            if not scan.shallow:
                state.retain_under(rel, scan.seen)
            results.append(self._write_pointer(rel, root, hashed, scan.skipped))
            if not stored_any:  # the cache is as the memo's stamp saw it, and holds it all
                memo.put(_memo_key(root), 0)
        for rel, root, stored, _, _ in staged:  # only once every manifest is written
            self._relink(rel, root, stored, state)
        return results, [root for _, root, _, _, _ in staged] if stored_any else None

    def _stage(self, rel: str, state: StatCache, memo: PresenceMemo | None = None, *,
               adding: bool = False
               ) -> tuple[str, tree.Node, list[tuple[str, Stored]], int, tree.Scan]:
        """Hash ``rel`` and stage every object it needs (files and listings).

        When the stat cache knew every file, the tree's id comes first: if the presence
        memo says the cache holds all of that tree, there is nothing to check or store (a
        re-add of unchanged data does not list the cache)."""
        self.store.pack_small = self._packs_small
        prehash = self._prehash(rel, state) if adding else None
        try:
            walked = self._walk(rel, state, feed=prehash.feed if prehash else None)
            if adding:
                nested = walked.paths_ending(manifest.SUFFIX)
                if nested:
                    raise DatavcError(
                        f"'{rel}' overlaps '{manifest.target_of(nested[0])}', which is "
                        "tracked separately",
                        hint="track a directory or the paths inside it, not both")
            known = self._known_tree(rel, walked, state) if memo is not None else None
            if (known is not None and memo is not None
                    and self._missing(rel, known, memo, shallow=True) == 0):
                if prehash is not None:
                    prehash.abandon()
                return rel, known, [], 0, tree.Scan(known, shallow=True)
            scan = self._scan(rel, state, locked=True, walked=walked)
            root = tree.require(scan.root, rel)
            hashed = len(scan.todo)
            for path, reason in scan.skipped:
                self.reporter.warn(f"not tracked: '{path}' ({reason})")
            self.reporter.begin(f"Adding {rel}", hashed)
            try:
                early = (prehash.finish(self.reporter.advance) if prehash is not None
                         else None)
                stored = tree.resolve(scan, store=self.store, state=state,
                                      started_ns=walked.started_ns,
                                      jobs=self.jobs, progress=self.reporter.advance,
                                      track_exec=self._tracks_exec, early=early)
            finally:
                self.reporter.end()
        except BaseException:
            if prehash is not None:
                prehash.abandon()  # after finish(), nothing: the store has what it staged
            raise
        if not hashed and memo is not None:
            self._finish(rel, scan, state)
            if memo.get(_memo_key(root)) == 0:
                return rel, root, stored, hashed, scan
        restored = self._ensure_objects(rel, root, just_stored=self.store.pending_digests())
        if restored:  # read again after the walk: not known to be at the walk's stat
            scan.memo_ok = False
        stored += restored
        self._finish(rel, scan, state, self.store)
        return rel, root, stored, hashed, scan

    def _prehash(self, rel: str, state: StatCache) -> Prehash | None:
        """Hashing to start during the walk, for a first add of a directory that may be
        big: nothing is known of ``rel`` (no pointer, no tree memo), worker processes are
        allowed, and the walk would otherwise run alone first."""
        if (self.jobs < 2 or state.last_files(rel) is not None
                or os.path.lexists(os.path.join(self.root, manifest.pointer_path(rel)))
                or not os.path.isdir(os.path.join(self.root, rel))):
            return None
        return Prehash(self.store, self.jobs)

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
        nfiles = tree.file_count(root)
        old = self._pointer_or_none(rel)
        pointer = Pointer(kind, Oid(root.digest), root.size, nfiles,  # type: ignore[arg-type]
                          old.meta if old else {})
        pointer_rel = manifest.pointer_path(rel)
        changed = old != pointer
        if changed:
            fsutil.atomic_write(os.path.join(self.root, pointer_rel), pointer.dumps(),
                                tmp_dir=self._tmp_dir,
                                hook="manifest")
        if self.in_git:
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
                       rev: str | None = None, want: tree.Node | None = None) -> Plan:
        """The plan to make ``rel`` the stored tree ``want`` (by default, what its manifest
        or lock entry names at ``rev``)."""
        if want is None:
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
        memo = self._presence_memo(now_ns())  # stamped before anything is looked at
        state = self._state()
        out = [self._status_one(rel, state, memo) for rel in rels]
        self._save_state_if_free(state, memo)
        if remote is not None:
            out = self._remote_status(out, remote or None)
        return out

    def _status_one(self, rel: str, state: StatCache, memo: PresenceMemo) -> TargetStatus:
        pointer = self.read_pointer(rel)
        pointer_rel = manifest.pointer_path(rel)
        walked = self._walk(rel, state)
        known = self._known_tree(rel, walked, state)
        if known is not None and _names(known, pointer):
            missing = self._missing(rel, known, memo, shallow=True)
            if missing is not None:
                return TargetStatus(rel, pointer_rel, "clean", not_in_cache=missing)
        scan = self._scan_hashed(rel, state, locked=False, walked=walked)
        if scan.root is None:
            return TargetStatus(rel, pointer_rel, "deleted")
        self._finish(rel, scan, state)
        if _names(scan.root, pointer):
            return TargetStatus(rel, pointer_rel, "clean",
                                not_in_cache=self._missing(rel, scan.root, memo))
        old = Ref(pointer.kind, pointer.oid.digest, pointer.size)
        try:
            changes = list(diff(self.store, rel, old, scan.root,
                                check_mode=self._tracks_exec,
                                budget=Budget.for_pointer(pointer.nfiles)))
        except ObjectMissingError:
            return TargetStatus(rel, pointer_rel, "not-in-cache")
        return TargetStatus(rel, pointer_rel, "modified" if changes else "clean", changes)

    def _missing(self, rel: str, root: tree.Node, memo: PresenceMemo, *,
                 shallow: bool = False) -> int | None:
        """How many objects of the tree ``root`` (files and listings) the cache lacks: from
        the presence memo, else counted and remembered there. The ids below a ``shallow``
        root (the tree memo's, without children) are read from its stored listings; None
        when one of those cannot be read (the caller then builds the tree)."""
        key = _memo_key(root)
        missing = memo.get(key)
        if missing is not None:  # no object came or went since it was counted
            return missing
        if shallow and isinstance(root, tree.DirNode):
            try:
                files, listings = tree.stored_ids(self.store, root.digest, size=root.size,
                                                  nfiles=root.nfiles)
            except DatavcError:
                return None
        else:
            files = tree.file_digests(root)
            listings = [n.digest for _, n in tree.walk_dirs(root, rel)]
        present = self.store.present_digests(set(files) | set(listings))
        missing = sum(1 for d in files + listings if d not in present)
        memo.put(key, missing)
        return missing

    # -------------------------------------------------------------- commit

    def commit(self, targets: list[str] | None = None, *,
               message: str | None = None) -> CommitResult:
        """Record changed workspace data into its manifests; with ``message``, git-commit."""
        rels = self._targets(targets)
        if not rels:
            raise DatavcError("nothing is tracked yet", hint="run `datavc add PATH` first")
        with self._locked("commit"):
            for rel in rels:  # every target is checked before any is recorded
                if not os.path.lexists(os.path.join(self.root, rel)):
                    raise DatavcError(f"'{rel}' is missing from the workspace",
                                      hint=f"run `datavc checkout {rel}` to restore it, or "
                                           f"delete {rel}{manifest.SUFFIX} to stop tracking it")
                self.read_pointer(rel)
            recorded = self._record_and_save(rels)
            sha = self._git_commit(rels, message) if message is not None else None
        return CommitResult(recorded, sha)

    def _git_commit(self, rels: list[str], message: str) -> str | None:
        paths = [manifest.pointer_path(r) for r in rels]
        paths += sorted({os.path.join(os.path.dirname(r), ".gitignore") for r in rels})
        return self.git.commit(message, paths)


def _names(root: tree.Node, pointer: Pointer) -> bool:
    """Whether ``pointer`` names the tree ``root``: its id and kind."""
    return root.digest == pointer.oid.digest and tree.root_kind(root) == pointer.kind


def _memo_key(root: tree.Node) -> bytes:
    """A tree's key in the presence memo: its root id and kind (docs/format.md)."""
    return root.digest + tree.root_kind(root).encode()
