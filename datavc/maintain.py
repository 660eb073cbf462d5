"""The trust commands of ``datavc.Repo``: ``check`` (the CI gate), ``level`` (the maturity
audit), ``install``/``uninstall`` (git hooks), ``gc`` and ``fsck``. They stand on the work
tree, history and remote parts; the cores are :mod:`datavc.gc`, :mod:`datavc.fsck`,
:mod:`datavc.audit` and :mod:`datavc.hooks`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import gc as gc_mod
from . import listing, manifest
from .errors import DatavcError, ObjectMissingError, UsageError
from .hashing import Oid
from .pack import DAMAGED, PackInfo
from .parallel import publish
from .sync import Sync

if TYPE_CHECKING:  # imported where used: a command that needs none of them loads none
    from . import audit, hooks
    from . import fsck as fsck_mod
    from .remote_base import Remote


@dataclass(frozen=True)
class CheckProblem:
    """One reason a dataset is not pinned: ``problem`` is ``uncommitted-manifest``,
    ``workspace-modified``, ``not-in-cache``, ``not-on-remote``, ``tracked-by-git`` or
    ``invalid``."""

    path: str
    problem: str
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "problem": self.problem, "detail": self.detail}


@dataclass(frozen=True)
class CheckResult:
    targets: list[str]
    remote: str | None
    problems: list[CheckProblem]

    @property
    def pinned(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {"pinned": self.pinned, "targets": self.targets, "remote": self.remote,
                "problems": [p.to_dict() for p in self.problems]}


@dataclass(frozen=True)
class LevelReport:
    """``datavc level``: the maturity level reached (0–3), what shows it, and what next."""

    level: int
    summary: str
    next_step: str
    targets: list[str]
    remote: str | None
    evidence: list[audit.Evidence]
    evidence_cut: bool  # the search for unversioned data stopped at its bound

    def to_dict(self) -> dict[str, object]:
        return {"level": self.level, "summary": self.summary, "next_step": self.next_step,
                "targets": self.targets, "remote": self.remote,
                "unversioned": [e.to_dict() for e in self.evidence],
                "unversioned_cut": self.evidence_cut}


@dataclass(frozen=True)
class GcResult:
    """``datavc gc``: what was (or, with ``dry_run``, would be) deleted where."""

    where: str  # "cache" or "remote NAME"
    dry_run: bool
    deleted: int
    nbytes: int | None
    kept: int
    recent: int
    runs: int = 0  # run-cache entries dropped: their outputs are not kept

    def to_dict(self) -> dict[str, object]:
        return {"where": self.where, "dry_run": self.dry_run, "deleted": self.deleted,
                "bytes": self.nbytes, "kept": self.kept, "recent": self.recent,
                "runs": self.runs}


@dataclass
class FsckResult:
    checked: int
    problems: list[fsck_mod.Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"checked": self.checked, "problems": [p.to_dict() for p in self.problems],
                "repaired": self.repaired}


_WORKTREE_BITS = 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x8000  # WT_*, CONFLICTED

LEVELS = {
    0: ("no dataset is versioned", "track your data: `datavc add DATA_DIR` and "
                                   "`datavc commit -m 'data v1'`"),
    1: ("datasets are pinned by manifests in git", "store the blobs on shared storage: "
        "`datavc remote add storage s3://BUCKET/PREFIX --default` and `datavc push`"),
    2: ("manifests in git, blobs on storage", "declare your pipeline (level 3): stages whose "
        "outputs are versioned with their inputs (`datavc.toml`, `datavc repro`)"),
    3: ("pipelines version their outputs with their inputs", "keep CI honest: "
        "`datavc check --remote` in every build"),
}


class Maintenance(Sync):
    """check, level, install/uninstall, gc and fsck."""

    # --------------------------------------------------------------- check

    def check(self, targets: list[str] | None = None, *, remote: str | None = "",
              staged: bool = False) -> CheckResult:
        """Whether every dataset is pinned (DESIGN.md §6): its manifest committed, the
        workspace matching it (or absent), every object it needs on the remote (``remote``:
        a name, "" for the default when one is set, None to skip; with no target named, the
        stage outputs' objects too), and its path not tracked by git itself. With ``staged``
        (a pre-commit hook), a manifest staged in the index counts as committed.
        Problems are returned, not raised."""
        rels = self._targets(targets)
        problems: list[CheckProblem] = []
        repo = self.git.repo
        # git status bits: index differs from HEAD (0x1f), work tree differs from index
        mask = _WORKTREE_BITS if staged else -1
        for rel in rels:
            pointer_rel = manifest.pointer_path(rel)
            try:
                flags = repo.status_file(pointer_rel)
            except KeyError:
                flags = _WORKTREE_BITS
            if flags & mask:
                what = "the index" if staged else "HEAD"
                problems.append(CheckProblem(rel, "uncommitted-manifest",
                                             f"{pointer_rel} differs from {what}: "
                                             + ("`git add` it" if staged else "commit it")))
            under = self.git.tracked_under(rel)
            if under:
                problems.append(CheckProblem(rel, "tracked-by-git",
                                             f"git also tracks {under[0]}"
                                             + (f" and {len(under) - 1} more" if len(under) > 1
                                                else "")))
        try:
            statuses = self.status(rels)
        except DatavcError as exc:
            return CheckResult(rels, None, problems + [CheckProblem("", "invalid", exc.message)])
        for st in statuses:
            if st.state == "modified":
                problems.append(CheckProblem(st.path, "workspace-modified",
                                             f"{len(st.changes)} change(s) not recorded: "
                                             f"`datavc status {st.path}`"))
        name = None
        if remote is not None and (remote or self.default_remote()):
            name, lacking = self._lacking_on_remote(rels if targets else self._data_paths(),
                                                    remote or None)
            for rel, n, unknown in lacking:
                if n:
                    problems.append(CheckProblem(rel, "not-on-remote",
                                                 f"{n} object(s) are not on remote {name}: "
                                                 "`datavc push`"))
                if unknown:
                    problems.append(CheckProblem(rel, "not-on-remote",
                                                 f"{unknown} listing(s) are neither cached nor "
                                                 f"on remote {name}"))
        return CheckResult(rels, name, sorted(problems, key=lambda p: (p.path, p.problem)))

    def _lacking_on_remote(self, rels: list[str], remote: str | None
                           ) -> tuple[str, list[tuple[str, int, int]]]:
        """Per target: objects the remote lacks, and listings found nowhere (so what is
        below them is unknown). Listings not cached are read from the remote, verified, and
        not stored (CI machines have no cache)."""
        from . import transfer

        name, rem = self._open_remote(remote, None)
        try:
            out = []
            for rel in rels:
                found = self._holder(rel, None)
                pointer = found[0] if found is not None else self.read_pointer(rel)
                ids, unknown = transfer.object_ids(
                    self.store, transfer.Root(pointer.kind, pointer.oid, pointer.nfiles),
                    read=lambda oid: self._listing_anywhere(rem, oid))
                out.append((rel, len(rem.missing(ids)), unknown))
            return name, out
        finally:
            rem.close()

    # --------------------------------------------------------------- level

    def level(self) -> LevelReport:
        """The maturity level (DESIGN.md §1) with its evidence and the next step."""
        from . import audit

        rels = self.tracked()
        evidence, cut = audit.unversioned(self.root, rels)
        remote = self.default_remote()
        committed = bool(rels) and all(
            self.git_or_none is not None
            and self.git.repo.status_file(manifest.pointer_path(r)) == 0 for r in rels)
        level = 0
        if committed:
            level = 1
            if remote is not None:
                level = 2
        summary, step = LEVELS[level]
        if level == 0 and rels:
            step = "commit the manifests: `datavc commit -m 'data v1'`"
        if evidence and level < 3:
            step = (f"{len(evidence)} unversioned data location(s) found: "
                    f"`datavc add {evidence[0].path}`; then: {step}")
        return LevelReport(level, summary, step, rels, remote, evidence, cut)

    # ------------------------------------------------------------- install

    def install(self) -> list[hooks.HookChange]:
        """Install datavc's git hooks, chained with the hooks already there."""
        from . import hooks

        return hooks.install(self.git.hooks_dir())

    def uninstall(self) -> list[hooks.HookChange]:
        """Remove datavc's git hooks and restore the hooks they chained."""
        from . import hooks

        return hooks.uninstall(self.git.hooks_dir())

    # ------------------------------------------------------------------ gc

    def gc(self, *, workspace: bool = False, revs: list[str] | None = None,
           all_branches: bool = False, all_tags: bool = False, all_commits: bool = False,
           remote: str | None = None, dry_run: bool = False,
           grace: float = gc_mod.DEFAULT_GRACE) -> list[GcResult]:
        """Delete the cache objects (and with ``remote``, the remote objects) that no kept
        revision names. A scope must be chosen; the work tree's manifests are always kept.
        Fails closed: when any kept tree cannot be read, nothing is deleted (exit 1)."""
        if not (workspace or revs or all_branches or all_tags or all_commits):
            raise UsageError("choose what to keep: --workspace, --rev REV, --all-branches, "
                             "--all-tags or --all-commits",
                             hint="e.g. `datavc gc --all-branches --all-tags --dry-run`")
        results = []
        with self._locked("gc"):
            kept = list(self._kept(revs, all_branches, all_tags, all_commits))
            live = gc_mod.mark(self.store, kept)
            entries, dropped = self._runs_kept(live)
            plan = gc_mod.plan(self.store, live | entries, grace=grace)
            deleted = plan.count if dry_run else (gc_mod.sweep(self.store, plan.doomed)
                                                  + gc_mod.sweep_packs(self.store, plan))
            results.append(GcResult("cache", dry_run, deleted, plan.nbytes, plan.kept,
                                    plan.recent, dropped))
            if remote is not None:
                results.append(self._gc_remote(remote or None, kept, dry_run, grace))
        return results

    def _kept(self, revs: list[str] | None, all_branches: bool, all_tags: bool,
              all_commits: bool) -> Iterator[gc_mod.Kept]:
        # the work tree is always kept, whatever else is
        for sha in dict.fromkeys([None, *self._shas(revs, all_branches, all_tags,
                                                    all_commits)]):
            where = f"commit {sha[:12]}" if sha else "the work tree"
            try:
                yield from self._kept_at(sha, where)
            except gc_mod.UnreadableError:
                raise
            except DatavcError as exc:
                raise gc_mod.UnreadableError(f"cannot read the manifests of {where}: "
                                         f"{exc.message}", hint="nothing was deleted") from None

    def _kept_at(self, sha: str | None, where: str) -> Iterator[gc_mod.Kept]:
        """The trees one kept revision (``sha``; None: the work tree) names: its pointer
        manifests here; the pipeline part adds its stage outputs."""
        for rel in self.tracked(sha):
            p = self.read_pointer(rel, sha)
            yield gc_mod.Kept(f"{rel} in {where}", p.kind, p.oid, p.nfiles, p.size, rel)

    def _runs_kept(self, live: set[bytes]) -> tuple[set[bytes], int]:
        """The run-cache entry objects to keep given the ``live`` objects, and how many
        entries are dropped; the pipeline part has the run-cache."""
        return set(), 0

    def _gc_remote_runs(self, rem: Remote, live: set[bytes], dry_run: bool) -> int:
        """Delete (or count, ``dry_run``) the run-cache entries on ``rem`` whose outputs are
        not all ``live``; the pipeline part has the run-cache."""
        return 0

    def _gc_remote(self, remote: str | None, kept: list[gc_mod.Kept], dry_run: bool,
                   grace: float) -> GcResult:
        """As in the cache: what no kept tree names goes, unless it was stored within
        ``grace`` seconds (a teammate's push whose commit has not reached us yet)."""
        name, rem = self._open_remote(remote, None)
        try:
            live = gc_mod.mark(self.store, kept,
                           read=lambda oid: self._listing_anywhere(rem, oid))
            now = time.time()
            doomed, nbytes, young = [], 0, set()
            for listed in rem.iter_listed():
                if listed.oid.digest in live:
                    continue
                if now - listed.stored < grace:
                    young.add(listed.oid.digest)
                    continue
                doomed.append(listed.oid)
                nbytes += listed.size
            packs, in_packs, packed_bytes = _doomed_packs(rem.iter_packs(), live, young,
                                                          now - grace)
            recent = len(young)
            # entries go before their outputs; one whose outputs the grace keeps stays too
            runs = self._gc_remote_runs(rem, live | young, dry_run)
            if not dry_run:
                for oid in doomed:
                    rem.delete(oid)
                for pack_name in packs:
                    rem.delete_pack(pack_name)
            return GcResult(f"remote {name}", dry_run, len(doomed) + in_packs,
                            nbytes + packed_bytes, len(live), recent, runs)
        finally:
            rem.close()

    def _listing_anywhere(self, rem: Remote, oid: Oid) -> bytes:
        from . import transfer

        try:
            return self.store.read_bytes(oid)
        except ObjectMissingError:
            return transfer.read_remote_listing(rem, oid)

    # ---------------------------------------------------------------- fsck

    def fsck(self, *, read_data: bool = False, remote: str | None = None,
             repair: bool = False, revs: list[str] | None = None,
             all_branches: bool = False, all_tags: bool = False,
             all_commits: bool = False) -> FsckResult:
        """Cross-check the manifests (of the work tree, and of the revisions named), their
        listings, the cache (re-hashing every object with ``read_data``) and, with
        ``remote``, the remote. ``repair`` replaces damaged or missing cache objects from
        the remote (verified) and checks again."""
        kept = [(k.path, k) for k in self._kept(revs, all_branches, all_tags, all_commits)]
        result = self._fsck_once(kept, read_data, remote)
        if repair and result.problems:
            result = self._repair(kept, result, read_data, remote)
        return result

    def _fsck_once(self, kept: list[tuple[str, gc_mod.Kept]], read_data: bool,
                   remote: str | None) -> FsckResult:
        from . import fsck as fsck_mod

        problems: list[fsck_mod.Problem] = []
        named = fsck_mod.walk(self.store, kept, problems)
        self.reporter.begin("Checking the cache", len(named.sizes))
        try:
            problems += fsck_mod.check_cache(self.store, named, read_data=read_data,
                                         progress=self.reporter.advance)
        finally:
            self.reporter.end()
        if remote is not None:
            name, rem = self._open_remote(remote or None, None)
            try:
                problems += fsck_mod.check_remote(rem, name, named, read_data=read_data)
            finally:
                rem.close()
        return FsckResult(len(named.sizes), problems)

    def _repair(self, kept: list[tuple[str, gc_mod.Kept]], found: FsckResult, read_data: bool,
                remote: str | None) -> FsckResult:
        from . import transfer

        bad = sorted({p.oid for p in found.problems
                      if p.where == "cache" and p.oid and p.kind in ("corrupt", "size",
                                                                    "missing")})
        if not bad:
            return found
        name, rem = self._open_remote(remote or None, None)
        try:
            # only what the remote can give back is replaced: a damaged object the remote
            # lacks stays, reported, for the user to re-add from the workspace
            bad = sorted(set(bad) - {str(o) for o in rem.missing(Oid.parse(t) for t in bad)})
            if not bad:
                return found
            with self._locked("fsck"):
                self.store.forget_packed(Oid.parse(t).digest for t in bad)
                for text in bad:
                    path = self.store.path(Oid.parse(text))
                    if os.path.lexists(path):
                        os.chmod(path, 0o644)
                        os.unlink(path)  # damaged: its bytes are worth nothing
                try:
                    done = transfer.fetch(self.store, rem, [transfer.Root(
                        listing.FILE, Oid.parse(t), 1) for t in bad], jobs=8,
                        reporter=self.reporter)
                finally:
                    publish(self.store, jobs=self.jobs)
        finally:
            rem.close()
        again = self._fsck_once(kept, read_data, remote)
        lost = {str(o) for o in done.missing + done.corrupt}
        again.repaired = [t for t in bad if t not in lost]
        return again


def _doomed_packs(packs: list[PackInfo], live: set[bytes], young: set[bytes],
                  before: float) -> tuple[list[str], int, int]:
    """The packs remote gc deletes, the objects in them and their bytes. A pack goes whole
    or not at all: when no object in it is live and it was stored before ``before`` (its
    objects otherwise join ``young``). Leftovers of an interrupted push or delete (a pack
    without its index, an index without its pack) go once as old; a pack whose index is
    damaged stays, as its objects cannot be told apart."""
    doomed, count, nbytes = [], 0, 0
    for info in packs:
        if info.entries is None:
            if info.problem != DAMAGED and info.stored < before:
                doomed.append(info.name)
                nbytes += info.size
            continue
        objects = [d for d, _, _ in info.objects()]
        if any(d in live for d in objects):
            continue
        if info.stored >= before:
            young.update(objects)
            continue
        doomed.append(info.name)
        count += len(objects)
        nbytes += info.size
    return doomed, count, nbytes
