"""The pipeline commands of ``datavc.Repo``: ``repro``, ``dag``, ``stage_add``, ``trust``
(and their records). The cores are :mod:`datavc.pipeline` (the stages and their graph),
:mod:`datavc.stagelock` (``datavc.lock``) and :mod:`datavc.trust`.

A stage's dependencies and outputs are hashed exactly as ``add`` hashes a target, through
the stat cache (an unchanged file is never hashed again); its outputs are stored in the cache
as ``add`` stores them, recorded in the lock as a pointer manifest would record them, ignored
in git, and restored by ``checkout``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import fsutil, manifest, runcache, scm, stagelock, tree
from . import pipeline as pipeline_mod
from . import trust as trust_mod
from .config import read_toml
from .errors import (
    DatavcError,
    InvalidInputError,
    StageFailedError,
    UntrustedPipelineError,
    UsageError,
    from_oserror,
)
from .gc import Kept
from .hashing import Oid, hash_fd
from .maintain import LEVELS, CheckProblem, CheckResult, LevelReport, Maintenance
from .manifest import Pointer
from .parallel import publish
from .pipeline import Pipeline, Stage
from .results import CheckoutResult, TransferResult
from .stagelock import OutLock, StageLock
from .state import StatCache

if TYPE_CHECKING:  # imported where used: a command that needs none of them loads none
    from concurrent.futures import Future, ThreadPoolExecutor

    from .audit import Evidence
    from .remote_base import Remote

FILENAME = pipeline_mod.FILENAME
LOCKFILE = stagelock.FILENAME


@dataclass(frozen=True)
class Reason:
    """Why a stage is stale: ``kind`` is ``new``, ``forced``, ``cmd``, ``dep``, ``param``,
    ``probe``, ``out`` or ``upstream``; ``path`` the dependency, param, probe or output (or
    upstream stage)."""

    kind: str
    path: str | None
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.kind} '{self.path}' {self.detail}" if self.path else self.detail


@dataclass(frozen=True)
class StageRun:
    """One stage in a repro: ``status`` is ``ran``, ``restored`` (its outputs came from
    the run-cache; nothing was executed), ``up-to-date``, ``would-run`` or ``would-restore``
    (dry run), ``failed`` or ``skipped`` (an upstream stage failed)."""

    name: str
    status: str
    reasons: list[Reason] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "status": self.status,
                "reasons": [r.to_dict() for r in self.reasons], "error": self.error}


@dataclass(frozen=True)
class ReproResult:
    dry_run: bool
    stages: list[StageRun]

    @property
    def failed(self) -> list[str]:
        return [s.name for s in self.stages if s.status == "failed"]

    def to_dict(self) -> dict[str, object]:
        return {"dry_run": self.dry_run, "stages": [s.to_dict() for s in self.stages],
                "failed": self.failed}


@dataclass(frozen=True)
class DagResult:
    """The pipeline graph: each stage with the stages it depends on, in topological order,
    and ``text``, the graph rendered in ``format``."""

    format: str
    text: str
    stages: dict[str, list[str]]

    def to_dict(self) -> dict[str, object]:
        return {"format": self.format, "text": self.text,
                "stages": [{"name": n, "upstream": u} for n, u in self.stages.items()]}


@dataclass(frozen=True)
class StageAddResult:
    name: str
    path: str
    trusted: bool

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "path": self.path, "trusted": self.trusted}


@dataclass(frozen=True)
class TrustResult:
    root: str
    digest: str  # SHA-256 of datavc.toml, hex
    trust_file: str

    def to_dict(self) -> dict[str, object]:
        return {"root": self.root, "digest": self.digest, "trust_file": self.trust_file}


@dataclass
class _Now:
    """A stage's inputs and outputs as they are now: ids (None: missing), param values."""

    deps: dict[str, Oid | None]
    params: dict[str, Any]
    outs: dict[str, Oid | None]
    probes: dict[str, Oid | str] = field(default_factory=dict)  # str: why it has no id

    @property
    def failed_probes(self) -> dict[str, str]:
        return {n: why for n, why in self.probes.items() if isinstance(why, str)}


class Pipelines(Maintenance):
    """repro, dag, stage add and trust, plus stage outputs in ``checkout``."""

    # ------------------------------------------------------------ reading

    def _pipeline_bytes(self) -> bytes | None:
        return self._root_file(FILENAME, pipeline_mod.MAX_BYTES)

    def _root_file(self, name: str, limit: int) -> bytes | None:
        """At most ``limit`` + 1 bytes of file ``name`` at the root (the reader then refuses
        what is too long); None when there is none."""
        try:
            with open(os.path.join(self.root, name), "rb") as f:
                return fsutil.read_limited(f, limit)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise from_oserror(exc, name, "read") from exc

    def pipeline(self) -> Pipeline:
        """The validated pipeline of ``datavc.toml`` (exit 6 when invalid)."""
        data = self._pipeline_bytes()
        if data is None:
            raise DatavcError(f"no {FILENAME} in {self.root}",
                              hint="add a stage: datavc stage add -n NAME -d DEP -o OUT -- CMD")
        return pipeline_mod.loads(data)

    # ------------------------------------------------- check and level, with stages

    def check(self, targets: list[str] | None = None, *, remote: str | None = "",
              staged: bool = False) -> CheckResult:
        """:meth:`Maintenance.check`, plus (when no target is named and a pipeline exists)
        one ``stage-stale`` problem per stage that is not up to date with the lock, and an
        ``invalid`` one when the pipeline itself is refused."""
        result = super().check(targets, remote=remote, staged=staged)
        if targets or self._pipeline_bytes() is None:
            return result
        extra: list[CheckProblem] = []
        try:
            dry = self.repro(dry_run=True)
        except DatavcError as exc:
            extra.append(CheckProblem(FILENAME, "invalid", exc.message))
        else:
            extra += [CheckProblem(f"stage {s.name}", "stage-stale",
                                   "; ".join(str(r) for r in s.reasons) + ": `datavc repro`")
                      for s in dry.stages if s.status in ("would-run", "would-restore")]
        return replace(result, problems=sorted(result.problems + extra,
                                               key=lambda p: (p.path, p.problem)))

    def level(self) -> LevelReport:
        """:meth:`Maintenance.level`; level 3 when, on top of level 2, a pipeline declares
        stages and every stage is up to date with its lock."""
        report = super().level()
        if self._pipeline_bytes() is None:
            return report
        try:
            pipe = self.pipeline()
        except DatavcError:
            return report
        report = replace(report, evidence=sorted(
            report.evidence + self._outside_pipeline(pipe), key=lambda e: e.path))
        if report.level < 2:
            return report
        try:
            dry = self.repro(dry_run=True)
        except DatavcError:
            return report
        if not dry.stages or any(s.status != "up-to-date" for s in dry.stages):
            return replace(report, next_step="bring the pipeline up to date: `datavc repro`")
        summary, step = LEVELS[3]
        return replace(report, level=3, summary=summary, next_step=step)

    def _outside_pipeline(self, pipe: Pipeline) -> list[Evidence]:
        """Tracked targets that no stage reads or writes: data added by hand next to a
        pipeline, which is how outputs made outside it look (``kind`` ``outside-pipeline``)."""
        from .audit import Evidence

        used = [p for st in pipe.stages.values() for p in (*st.deps, *st.outs)]
        out = []
        for rel in self.tracked():
            if any(u == rel or u.startswith(rel + "/") or rel.startswith(u + "/")
                   for u in used):
                continue
            try:
                pointer = self.read_pointer(rel)
            except DatavcError:
                continue
            out.append(Evidence("outside-pipeline", rel, pointer.size, pointer.nfiles))
        return out

    def _lock(self, sha: str | None = None) -> dict[str, StageLock]:
        if sha is not None:
            data = self.git.read_file(sha, LOCKFILE, max_bytes=stagelock.MAX_BYTES)
            where = f"{LOCKFILE} at revision '{sha[:12]}'"
        else:
            where = LOCKFILE
            data = self._root_file(LOCKFILE, stagelock.MAX_BYTES)
        return {} if data is None else stagelock.loads(data, where=where)

    def _write_lock(self, lock: dict[str, StageLock]) -> None:
        fsutil.atomic_write(os.path.join(self.root, LOCKFILE), stagelock.dumps(lock),
                     tmp_dir=self._tmp_dir)

    def _check_outs(self, pipe: Pipeline) -> None:
        """Outputs are neither tracked by git nor by a pointer manifest of their own.
        Checked before the first stage runs or is restored (an up-to-date pipeline writes
        nothing, and does not pay for reading git's index)."""
        for rel in self.tracked():
            for out, name in pipe.outputs_overlapping(rel):
                raise DatavcError(f"output '{out}' of stage '{name}' overlaps '{rel}', "
                                  f"tracked by {manifest.pointer_path(rel)}",
                                  hint="a path is either a stage output or added data, "
                                       "not both")
        git = self.git_or_none
        for path in git.index_paths() if git is not None else []:
            for out, name in pipe.outputs_overlapping(path):
                raise DatavcError(f"output '{out}' of stage '{name}' is tracked by git "
                                  f"(e.g. '{path}')",
                                  hint=f"stop tracking it: git rm -r --cached '{out}'")

    # ------------------------------------------------------------ staleness

    def _now(self, stage: Stage, state: StatCache, *, probes: bool = True) -> _Now:
        """``stage``'s inputs and outputs as they are now; its probes are run only with
        ``probes`` (they are commands: an untrusted pipeline's are not)."""
        now = self._now_files(stage, state)
        for probe in stage.probes:
            now.probes[probe.name] = (self._run_probe(stage, probe) if probes else
                                      "not run: the pipeline is not trusted (`datavc trust`)")
        return now

    def _run_probe(self, stage: Stage, probe: pipeline_mod.Probe) -> Oid | str:
        """The id of what ``probe`` prints on its standard output (streamed), or why it
        has none. Its standard error goes to datavc's."""
        import subprocess

        try:
            proc = subprocess.Popen(pipeline_mod.argv(probe.cmd, stage.shell), cwd=self.root,
                                    shell=stage.shell, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=sys.stderr.fileno())
        except OSError as exc:
            return f"cannot run {probe.cmd_json!r}: {exc.strerror or exc}"
        with proc:
            assert proc.stdout is not None
            try:
                oid, _ = hash_fd(proc.stdout.fileno())
            except OSError as exc:
                proc.kill()
                return f"cannot read its output: {exc.strerror or exc}"
            code = proc.wait()
        return oid if code == 0 else f"failed: exited with status {code}"

    def _now_files(self, stage: Stage, state: StatCache) -> _Now:
        params: dict[str, Any] = {}
        docs: dict[str, dict[str, Any]] = {}
        for p in stage.params:
            if p.file not in docs:
                self.target(os.path.join(self.root, p.file))  # no symlinked parents
                docs[p.file] = read_toml(os.path.join(self.root, p.file))
            params[p.spec] = p.value(docs[p.file], where=f"stage '{stage.name}'")
        return _Now({d: self._content_id(d, state) for d in stage.deps}, params,
                    {o: self._content_id(o, state) for o in stage.outs})

    def _content_id(self, rel: str, state: StatCache) -> Oid | None:
        self.target(os.path.join(self.root, rel))  # refuses symlinked parents
        walked = self._walk(rel, state)
        known = self._known_tree(rel, walked, state)
        if known is not None:  # nothing under it changed since its id was computed
            return Oid(known.digest)
        scan = self._scan_hashed(rel, state, locked=True, walked=walked)
        if scan.root is None:
            return None
        return Oid(self._finish(rel, scan, state).digest)

    @staticmethod
    def _reasons(stage: Stage, old: StageLock | None, now: _Now) -> list[Reason]:
        if old is None:
            return [Reason("new", None, "never ran")]
        out: list[Reason] = []
        if old.cmd != stage.cmd_json:
            out.append(Reason("cmd", None, "the command changed"))
        for dep, oid in now.deps.items():
            if oid is None:
                out.append(Reason("dep", dep, "is missing"))
            elif dep not in old.deps:
                out.append(Reason("dep", dep, "is new"))
            elif old.deps[dep] != oid:
                out.append(Reason("dep", dep, "changed"))
        out += [Reason("dep", d, "was removed") for d in sorted(set(old.deps) - set(now.deps))]
        for spec, value in now.params.items():
            if spec not in old.params:
                out.append(Reason("param", spec, "is new"))
            elif old.params[spec] != value:
                out.append(Reason("param", spec, "changed: " + _change(old.params[spec], value)))
        out += [Reason("param", p, "was removed")
                for p in sorted(set(old.params) - set(now.params))]
        for name, probe in now.probes.items():
            if isinstance(probe, str):
                out.append(Reason("probe", name, probe))
            elif name not in old.probes:
                out.append(Reason("probe", name, "is new"))
            elif old.probes[name] != probe:
                out.append(Reason("probe", name, "changed"))
        out += [Reason("probe", p, "was removed")
                for p in sorted(set(old.probes) - set(now.probes))]
        for path, oid in now.outs.items():
            if oid is None:
                out.append(Reason("out", path, "is missing"))
            elif path not in old.outs:
                out.append(Reason("out", path, "is not recorded"))
            elif old.outs[path].oid != oid:
                out.append(Reason("out", path, "was modified"))
        return out

    # ------------------------------------------------------------ repro

    def repro(self, stages: list[str] | None = None, *, jobs: int | None = None,
              dry_run: bool = False, force: bool = False,
              run_cache: bool = True) -> ReproResult:
        """Run the stale stages (of ``stages`` and what they depend on; all by default) in
        dependency order, independent ones ``jobs`` at a time. With ``dry_run``, run nothing
        and say what would run and why. Needs trust (``trust``) unless ``dry_run``.
        A stale stage whose inputs (command, dependency ids, params) match a run recorded
        in the run-cache, with every output object in the cache, has its outputs restored
        instead of run (status ``restored``); ``force`` or ``run_cache=False`` runs it.
        A failed stage raises :class:`StageFailedError` (its ``result`` is the
        :class:`ReproResult`) after the other stages that could run have run."""
        pipe = self.pipeline()
        names = pipe.closure(stages) if stages else list(pipe.order)
        if not dry_run:
            self._require_trust()
        if jobs is not None and jobs < 1:
            raise UsageError("-j/--jobs must be at least 1")
        with self._locked("repro"):
            state = self._state()
            try:
                runs = _Scheduler(self, pipe, names, state, self._lock(), dry_run=dry_run,
                                  force=force, jobs=jobs or 1, run_cache=run_cache).run()
            finally:
                state.save()
        result = ReproResult(dry_run, [runs[n] for n in names])
        if result.failed:
            raise StageFailedError(
                f"stage '{result.failed[0]}' failed: {runs[result.failed[0]].error}",
                result=result, hint=f"fix it and run `datavc repro` again; {LOCKFILE} "
                                    "keeps the last good run of the failed stages")
        return result

    def _trusted(self) -> bool:
        data = self._pipeline_bytes() or b""
        return trust_mod.is_trusted(self.root, trust_mod.digest(data))

    def _require_trust(self) -> None:
        if not self._trusted():
            raise UntrustedPipelineError(
                f"the commands of {os.path.join(self.root, FILENAME)} are not trusted in "
                "this clone (new, or changed since you trusted it)",
                hint="read datavc.toml, then run `datavc trust` to allow its commands to run")

    def _run_cmd(self, stage: Stage) -> str | None:
        """Run ``stage``'s command at the repository root; None or why it failed. Its
        output goes to datavc's stderr, keeping stdout for datavc's own report."""
        import subprocess

        try:
            proc = subprocess.run(stage.argv(), cwd=self.root, shell=stage.shell,
                                  stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(),
                                  check=False)
        except OSError as exc:
            return f"cannot run {stage.cmd_json!r}: {exc.strerror or exc}"
        if proc.returncode != 0:
            return f"command exited with status {proc.returncode}"
        return None

    def _store_outs(self, stage: Stage, state: StatCache) -> dict[str, OutLock] | str:
        """Store ``stage``'s outputs as ``add`` would; their lock entries, or an error."""
        missing = [o for o in stage.outs if not os.path.lexists(os.path.join(self.root, o))]
        if missing:
            return f"the command did not create output '{missing[0]}'"
        staged = [self._stage(out, state) for out in stage.outs]
        publish(self.store, jobs=self.jobs)
        outs = {}
        for rel, root, _, _, scan in staged:
            state.retain_under(rel, scan.seen)
            outs[rel] = OutLock(tree.root_kind(root), Oid(root.digest), root.size,
                                tree.file_count(root))
            if self.git_or_none is not None:
                scm.ensure_ignored(self.root, rel, tmp_dir=self._tmp_dir)
        for rel, root, stored, _, _ in staged:
            self._relink(rel, root, stored, state)
        return outs

    # ------------------------------------------------------------ the run-cache

    @staticmethod
    def _run_key(stage: Stage, now: _Now) -> Oid | None:
        lock = _lock_of(stage, now, {})
        return runcache.key(lock.cmd, lock.deps, lock.params, stage.outs, lock.probes)

    def _run_cache_find(self, stage: Stage, run_key: Oid) -> dict[str, OutLock] | None:
        """The outputs recorded for ``run_key`` when they can be restored: a valid entry
        naming exactly ``stage``'s outputs, every object of which is in the cache. A
        damaged entry is reported and ignored."""
        try:
            found = runcache.lookup(self.store, run_key)
            if found is None:
                return None
            entry_id, outs = found
        except DatavcError as exc:
            self.reporter.warn(f"ignoring the run-cache entry of stage '{stage.name}': "
                               f"{exc.message}")
            return None
        if sorted(outs) != sorted(stage.outs):
            self.reporter.warn(f"ignoring run-cache entry {entry_id} of stage '{stage.name}':"
                               " it names other outputs")
            return None
        try:
            if not runcache.complete(self.store, outs):
                return None
        except DatavcError as exc:
            self.reporter.warn(f"ignoring run-cache entry {entry_id} of stage '{stage.name}':"
                               f" {exc.message}")
            return None
        return outs

    def _run_cache_record(self, run_key: Oid | None, outs: dict[str, OutLock]) -> None:
        """Record a run: the entry object (published) first, then the index."""
        if run_key is not None:
            runcache.record(self.store, run_key, runcache.entry_bytes(run_key, outs),
                            jobs=self.jobs)

    # ------------------------------------------------- the run-cache on remotes

    def push(self, targets: list[str] | None = None, *, remote: str | None = None,
             jobs: int | None = None, revs: list[str] | None = None,
             all_branches: bool = False, all_tags: bool = False,
             all_commits: bool = False, run_cache: bool = False) -> TransferResult:
        """``Sync.push``; then, when no target is named, the run-cache entries of the runs
        the lock records (of each revision pushed), so that teammates and CI restore those
        outputs instead of running; with ``run_cache``, every entry in the cache, with its
        outputs. An entry goes up only when every object of its outputs is on the remote."""
        from . import transfer

        result = super().push(targets, remote=remote, jobs=jobs, revs=revs,
                              all_branches=all_branches, all_tags=all_tags,
                              all_commits=all_commits)
        if targets and not run_cache:
            return result
        shas = self._shas(revs, all_branches, all_tags, all_commits)
        runs = self._local_runs(shas, every=run_cache)
        if not runs:
            return result
        done = result.transfer
        name, rem = self._open_remote(remote, jobs)
        try:
            if run_cache:
                done.merge(transfer.push(self.store, rem,
                                         [r for _, _, outs in runs
                                          for r in runcache.roots(outs)],
                                         jobs=self._transfer_jobs(jobs),
                                         reporter=self.reporter))
            if done.missing or done.corrupt:
                self.reporter.warn("run-cache entries not pushed: some objects could not be")
                return replace(result, transfer=done)
            for run_key, entry, _ in runs:
                rem.put_run(run_key, entry)
        finally:
            rem.close()
        return replace(result, transfer=done, runs=len(runs))

    def _local_runs(self, shas: list[str | None], *, every: bool
                    ) -> list[tuple[Oid, bytes, dict[str, OutLock]]]:
        """The run-cache entries to push: those of the runs recorded in the locks of
        ``shas`` (``every``: all in the cache) that the cache holds with all of their
        outputs, as (key, entry bytes, outputs)."""
        if every:
            keys = list(runcache.keys(self.store))
        else:
            found = (runcache.lock_key(entry) for sha in shas
                     for entry in self._lock(sha).values())
            keys = [k for k in dict.fromkeys(found) if k is not None]
        out = []
        for run_key in keys:
            try:
                hit = runcache.lookup(self.store, run_key)
                if hit is None or not runcache.complete(self.store, hit[1]):
                    continue
                entry = self.store.read_bytes(hit[0], limit=runcache.MAX_ENTRY)
            except DatavcError as exc:
                self.reporter.warn(f"run-cache entry of key {run_key} not pushed: "
                                   f"{exc.message}")
                continue
            out.append((run_key, entry, hit[1]))
        return out

    def fetch(self, targets: list[str] | None = None, *, remote: str | None = None,
              jobs: int | None = None, revs: list[str] | None = None,
              all_branches: bool = False, all_tags: bool = False,
              all_commits: bool = False, run_cache: bool = False) -> TransferResult:
        """``Sync.fetch``; with ``run_cache``, also every run-cache entry of the remote that
        this cache lacks, with its outputs (for working offline: ``repro`` otherwise asks
        the default remote for a missing run itself). An entry is recorded once all of its
        outputs are in the cache."""
        from . import transfer

        result = super().fetch(targets, remote=remote, jobs=jobs, revs=revs,
                               all_branches=all_branches, all_tags=all_tags,
                               all_commits=all_commits)
        if not run_cache:
            return result
        done = result.transfer
        name, rem = self._open_remote(remote, jobs)
        try:
            runs = self._remote_runs(rem)
            with self._locked("fetch"):
                try:
                    done.merge(transfer.fetch(self.store, rem,
                                              [r for _, _, outs in runs
                                               for r in runcache.roots(outs)],
                                              jobs=self._transfer_jobs(jobs),
                                              reporter=self.reporter))
                finally:
                    publish(self.store, jobs=self.jobs)
                kept = [(k, e) for k, e, outs in runs if runcache.complete(self.store, outs)]
                for run_key, entry in kept:
                    runcache.record(self.store, run_key, entry, jobs=self.jobs)
        finally:
            rem.close()
        return replace(result, transfer=done, runs=len(kept))

    def _remote_runs(self, rem: Remote) -> list[tuple[Oid, bytes, dict[str, OutLock]]]:
        """The valid run-cache entries of ``rem`` that the cache cannot already restore;
        an invalid one is reported and skipped."""
        out = []
        for run_key in rem.iter_runs():
            try:
                hit = runcache.lookup(self.store, run_key)
            except DatavcError:
                hit = None
            if hit is not None and runcache.complete(self.store, hit[1]):
                continue
            try:
                found = runcache.remote_entry(rem, run_key)
            except InvalidInputError as exc:  # a remote failure is raised
                self.reporter.warn(f"skipped: {exc.message}")
                continue
            if found is not None:
                out.append((run_key, *found))
        return out

    def _runs_kept(self, live: set[bytes]) -> tuple[set[bytes], int]:
        """gc keeps a run-cache entry exactly when every output it names is kept, so that
        each entry left can be restored; the index of a dropped one is ignored once its
        entry object is gone (``runcache.lookup``)."""
        keep: set[bytes] = set()
        dropped = 0
        for run_key in runcache.keys(self.store):
            try:
                hit = runcache.lookup(self.store, run_key)
            except DatavcError:
                hit = None  # damaged: unusable, so not kept
            if hit is not None and all(r.oid.digest in live
                                       for r in runcache.roots(hit[1])):
                keep.add(hit[0].digest)
            elif hit is not None:
                dropped += 1
        return keep, dropped

    def _gc_remote_runs(self, rem: Remote, live: set[bytes], dry_run: bool) -> int:
        """Remote gc drops the run-cache entries whose outputs it deletes (an entry must
        never outlive its outputs: a restore from it would fail). Invalid entries go too."""
        doomed = []
        for run_key in rem.iter_runs():
            try:
                found = runcache.remote_entry(rem, run_key)
            except InvalidInputError:  # a remote failure is raised, never a deletion
                doomed.append(run_key)
                continue
            if found is not None and not all(r.oid.digest in live
                                             for r in runcache.roots(found[1])):
                doomed.append(run_key)
        if not dry_run:
            for run_key in doomed:
                rem.delete_run(run_key)
        return len(doomed)

    def _run_cache_remote(self, stage: Stage, run_key: Oid,
                          rem: Remote) -> dict[str, OutLock] | None:
        """The outputs of ``stage`` recorded for ``run_key`` on remote ``rem``, fetched
        (verified) into the cache with the entry; None when the remote has no such run or
        it cannot be used (reported)."""
        from . import transfer

        try:
            found = runcache.remote_entry(rem, run_key)
            if found is None:
                return None
            data, outs = found
            if sorted(outs) != sorted(stage.outs):
                raise DatavcError("it names other outputs")
            self.reporter.info(f"Fetching the outputs of stage '{stage.name}' from the "
                               f"run-cache of remote {rem.describe()}")
            try:
                transfer.fetch(self.store, rem, runcache.roots(outs), jobs=16,
                               reporter=self.reporter)
            finally:
                publish(self.store, jobs=self.jobs)
            if not runcache.complete(self.store, outs):
                raise DatavcError("some of its outputs' objects are missing or damaged")
            runcache.record(self.store, run_key, data, jobs=self.jobs)
        except DatavcError as exc:
            self.reporter.warn(f"stage '{stage.name}': not restored from the remote "
                               f"run-cache: {exc.message}")
            return None
        return outs

    def _restore_outs(self, stage: Stage, outs: dict[str, OutLock],
                      state: StatCache) -> str | None:
        """Make ``stage``'s outputs the stored trees ``outs``, replacing what is there as
        running the command would; None, or why it could not."""
        try:
            for rel, out in outs.items():
                pointer = Pointer(out.kind, out.oid, out.size,  # type: ignore[arg-type]
                                  out.nfiles, {})
                want = self._load_tree(rel, pointer, "restore")
                plan = self._plan_checkout(rel, state, True, want=want)
                self._execute(plan, state)
                if self.git_or_none is not None:
                    scm.ensure_ignored(self.root, rel, tmp_dir=self._tmp_dir)
        except DatavcError as exc:
            return f"cannot restore its outputs from the run-cache: {exc.message}"
        return None

    # ------------------------------------------------------------ checkout of outputs

    def _kept_at(self, sha: str | None, where: str) -> Iterator[Kept]:
        """gc and fsck keep what a revision's pointers name and its stage outputs."""
        yield from super()._kept_at(sha, where)
        for path, p in sorted(self._lock_pointers(sha).items()):
            yield Kept(f"{path} (stage output) in {where}", p.kind, p.oid, p.nfiles, p.size,
                       path)

    def _lock_pointers(self, sha: str | None) -> dict[str, Pointer]:
        found = {}
        for entry in self._lock(sha).values():
            for path, out in entry.outs.items():
                found[path] = Pointer(out.kind, out.oid, out.size,  # type: ignore[arg-type]
                                      out.nfiles, {})
        return found

    def _holder(self, rel: str, sha: str | None) -> tuple[Pointer, tuple[str, ...]] | None:
        found = super()._holder(rel, sha)
        if found is not None:
            return found
        for out, pointer in self._lock_pointers(sha).items():
            if rel == out:
                return pointer, ()
            if rel.startswith(out + "/"):
                return pointer, tuple(rel[len(out) + 1:].split("/"))
        return None

    def checkout(self, targets: list[str] | None = None, *, rev: str | None = None,
                 force: bool = False) -> list[CheckoutResult]:
        """``Worktree.checkout``; by default also the stage outputs that ``datavc.lock``
        records (of revision ``rev`` with ``rev``)."""
        if not targets:
            sha = self.resolve(rev) if rev is not None else None
            if self._lock_pointers(sha):
                targets = [os.path.join(self.root, t) for t in self._data_paths(sha)]
        return super().checkout(targets, rev=rev, force=force)

    def _data_paths(self, sha: str | None = None) -> list[str]:
        """The tracked targets and the stage outputs recorded in the lock."""
        return sorted({*super()._data_paths(sha), *self._lock_pointers(sha)})

    # ------------------------------------------------------------ dag, stage add, trust

    def dag(self, *, format: str = "text") -> DagResult:  # noqa: A002 - the CLI's name
        """The pipeline graph, rendered as ``text``, ``mermaid`` or ``dot``."""
        pipe = self.pipeline()
        return DagResult(format, pipeline_mod.render(pipe, format),
                         {n: list(pipe.upstream[n]) for n in pipe.order})

    def stage_add(self, name: str, cmd: list[str], *, deps: list[str] | None = None,
                  outs: list[str] | None = None, params: list[str] | None = None,
                  shell: bool = False, probes: dict[str, str] | None = None) -> StageAddResult:
        """Append stage ``name`` to ``datavc.toml``, keeping the rest of it byte for byte.
        ``probes`` maps a probe's name to its command (a dependency that is not a file).
        A duplicate name or output, or a cycle, is refused. When the file was trusted (or
        did not exist), the new file is trusted too: its author is this user."""
        if not cmd:
            raise UsageError("no command given", hint="put it after --: datavc stage add -n "
                                                      "NAME -d DEP -o OUT -- python x.py")
        with self._locked("stage add"):
            return self._stage_add(name, cmd, deps or [], outs or [], params or [], shell,
                                   probes or {})

    def _stage_add(self, name: str, cmd: list[str], deps: list[str], outs: list[str],
                   params: list[str], shell: bool, probes: dict[str, str]) -> StageAddResult:
        old = self._pipeline_bytes()
        text = (old or b"").decode("utf-8", "replace")
        if old is not None and name in pipeline_mod.loads(old).stages:
            raise UsageError(f"stage '{name}' already exists in {FILENAME}")
        where = f"stage '{name}'"
        stage = Stage(name, cmd[0] if shell and len(cmd) == 1 else tuple(cmd),
                      tuple(self.target(p) for p in deps), tuple(self.target(p) for p in outs),
                      tuple(pipeline_mod.Param.parse(p, where=where) for p in params), shell,
                      tuple(pipeline_mod.Probe(n, c) for n, c in sorted(probes.items())))
        new = pipeline_mod.append_stage(text, stage).encode()
        pipeline_mod.loads(new)  # refuses duplicates and cycles, naming the stages
        was_trusted = old is None or trust_mod.is_trusted(self.root, trust_mod.digest(old))
        fsutil.atomic_write(os.path.join(self.root, FILENAME), new, tmp_dir=self._tmp_dir)
        if was_trusted:
            trust_mod.record(self.root, trust_mod.digest(new))
        return StageAddResult(name, FILENAME, was_trusted)

    def trust(self) -> TrustResult:
        """Allow the commands of this clone's ``datavc.toml``, as it is now, to run."""
        data = self._pipeline_bytes()
        if data is None:
            raise DatavcError(f"no {FILENAME} in {self.root}: nothing to trust")
        pipeline_mod.loads(data)  # never trust what cannot be read
        sha = trust_mod.digest(data)
        return TrustResult(os.path.realpath(self.root), sha, trust_mod.record(self.root, sha))


class _Scheduler:
    """Runs the stale stages of ``names`` in dependency order, ``jobs`` commands at once.

    Commands run in threads (each waits on its subprocess); hashing and storing happen in
    the calling thread only, one stage at a time, so the stat cache and the object store
    see one writer."""

    def __init__(self, repo: Pipelines, pipe: Pipeline, names: list[str], state: StatCache,
                 lock: dict[str, StageLock], *, dry_run: bool, force: bool, jobs: int,
                 run_cache: bool = True) -> None:
        self.repo, self.pipe, self.names, self.state = repo, pipe, names, state
        self.lock, self.dry_run, self.force, self.jobs = lock, dry_run, force, jobs
        self.run_cache = run_cache and not force
        self.done: dict[str, StageRun] = {}
        self.pending = list(names)
        self.running: dict[Future[str | None], tuple[str, _Now, list[Reason]]] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.remote: Remote | None = None  # the default remote, opened on the first miss
        self.no_remote = dry_run or repo.default_remote() is None
        self.trusted = not dry_run or repo._trusted()  # probes run only when trusted
        self.warned: set[str] = set()
        self.outs_checked = False

    def run(self) -> dict[str, StageRun]:
        try:
            return self._run()
        finally:
            if self.remote is not None:
                self.remote.close()

    def _run(self) -> dict[str, StageRun]:
        try:
            while self.pending or self.running:
                self._start_ready()
                if not self.running:
                    if self.pending:  # nothing runs and nothing can start: cannot happen
                        raise DatavcError(f"stages cannot be scheduled: {self.pending}")
                    break
                from concurrent.futures import FIRST_COMPLETED, wait

                finished, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                for future in finished:
                    self._finish(future)
        finally:
            if self.pool is not None:  # waits for the commands still running
                self.pool.shutdown(wait=True)
        return self.done

    def _submit(self, stage: Stage) -> Future[str | None]:
        """Run ``stage``'s command on the thread pool, made on the first run (a pipeline
        with nothing to run never loads it)."""
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=self.jobs)
        return self.pool.submit(self.repo._run_cmd, stage)

    def _ups(self, name: str) -> list[str]:
        return [u for u in self.pipe.upstream[name] if u in self.names]

    def _start_ready(self) -> None:
        for name in list(self.pending):
            if len(self.running) >= self.jobs:
                return
            ups = self._ups(name)
            if any(u not in self.done for u in ups):
                continue
            self.pending.remove(name)
            self._start(name, ups)

    def _start(self, name: str, ups: list[str]) -> None:
        bad = [u for u in ups if self.done[u].status in ("failed", "skipped")]
        if bad:
            self.done[name] = StageRun(name, "skipped", [], f"upstream stage '{bad[0]}' failed")
            return
        stage = self.pipe.stages[name]
        now = self.repo._now(stage, self.state, probes=self.trusted)
        self._warn_unrecorded(now)
        reasons = self.repo._reasons(stage, self.lock.get(name), now)
        if self.force and not reasons:
            reasons = [Reason("forced", None, "--force")]
        missing = [f"dependency '{d}' does not exist"
                   for d, oid in now.deps.items() if oid is None]
        missing += [f"probe '{n}' {why}" for n, why in now.failed_probes.items()]
        if self.dry_run:
            stale_ups = [u for u in ups
                         if self.done[u].status in ("would-run", "would-restore")]
            reasons += [Reason("upstream", u, "would run") for u in stale_ups]
            status = "up-to-date"
            if reasons:
                self._check_outs()
                # a stale upstream stage changes this stage's inputs: they are unknown yet
                restore = not stale_ups and not missing and self._cached(stage, now)
                status = "would-restore" if restore else "would-run"
            self.done[name] = StageRun(name, status, reasons)
            return
        if not reasons:
            self.done[name] = StageRun(name, "up-to-date")
            return
        if missing:
            self.done[name] = StageRun(name, "failed", reasons, missing[0])
            return
        self._check_outs()
        outs = self._cached(stage, now)
        if outs is not None and self._restore(stage, now, reasons, outs):
            return
        self.repo.reporter.info(f"Running stage '{name}' ({reasons[0]})")
        self.running[self._submit(stage)] = (name, now, reasons)

    def _check_outs(self) -> None:
        """``Pipelines._check_outs``, once, before anything is written (or, dry, said to be
        stale)."""
        if not self.outs_checked:
            self.repo._check_outs(self.pipe)
            self.outs_checked = True

    def _warn_unrecorded(self, now: _Now) -> None:
        """Warn (once per path) about a dependency that is a tracked target whose data
        differs from its manifest: the stage would run on data no commit records, e.g.
        after a `git checkout` without `datavc checkout`."""
        for dep, oid in now.deps.items():
            if dep in self.warned or oid is None:
                continue
            self.warned.add(dep)
            if not os.path.isfile(os.path.join(self.repo.root, manifest.pointer_path(dep))):
                continue  # not a tracked target
            try:
                pointer = self.repo.read_pointer(dep)
            except DatavcError:
                continue
            if pointer.oid != oid:
                self.repo.reporter.warn(
                    f"dependency '{dep}' differs from {manifest.pointer_path(dep)}: `datavc "
                    f"checkout {dep}` to use the recorded data, or `datavc add {dep}` to "
                    "record this")

    def _finish(self, future: Future[str | None]) -> None:
        name, now, reasons = self.running.pop(future)
        stage = self.pipe.stages[name]
        error = future.result()
        outs = self.repo._store_outs(stage, self.state) if error is None else error
        if isinstance(outs, str):
            self.done[name] = StageRun(name, "failed", reasons, outs)
            return
        self.repo._run_cache_record(self.repo._run_key(stage, now), outs)
        self._record(stage, now, outs)
        self.done[name] = StageRun(name, "ran", reasons)

    def _record(self, stage: Stage, now: _Now, outs: dict[str, OutLock]) -> None:
        self.lock[stage.name] = _lock_of(stage, now, outs)
        self.lock = {n: e for n, e in self.lock.items() if n in self.pipe.stages}
        self.repo._write_lock(self.lock)

    def _cached(self, stage: Stage, now: _Now) -> dict[str, OutLock] | None:
        """The outputs the run-cache can restore for ``stage`` as its inputs are now: from
        the cache, or (not in a dry run) fetched from the default remote's run-cache."""
        if not self.run_cache:
            return None
        run_key = self.repo._run_key(stage, now)
        if run_key is None:
            return None
        outs = self.repo._run_cache_find(stage, run_key)
        if outs is not None or self.no_remote:
            return outs
        if self.remote is None:
            try:
                _, self.remote = self.repo._open_remote(None, None)
            except DatavcError as exc:
                self.repo.reporter.warn(f"the default remote's run-cache is not used: "
                                        f"{exc.message}")
                self.no_remote = True
                return None
        return self.repo._run_cache_remote(stage, run_key, self.remote)

    def _restore(self, stage: Stage, now: _Now, reasons: list[Reason],
                 outs: dict[str, OutLock]) -> bool:
        """Restore ``stage``'s outputs from the run-cache; False (reported) when that
        failed, so that the stage runs instead."""
        self.repo.reporter.info(f"Restoring stage '{stage.name}' from the run-cache "
                                f"({reasons[0]})")
        error = self.repo._restore_outs(stage, outs, self.state)
        if error is not None:
            self.repo.reporter.warn(f"stage '{stage.name}': {error}; running it instead")
            return False
        self._record(stage, now, outs)
        self.done[stage.name] = StageRun(stage.name, "restored", reasons)
        return True



def _lock_of(stage: Stage, now: _Now, outs: dict[str, OutLock]) -> StageLock:
    """The lock entry of a run of ``stage`` with inputs ``now`` that produced ``outs``
    (its run-cache key is :func:`runcache.lock_key`)."""
    deps = {d: oid for d, oid in now.deps.items() if oid is not None}
    probes = {n: oid for n, oid in now.probes.items() if isinstance(oid, Oid)}
    return StageLock(stage.cmd_json, deps, now.params, outs, probes)


def _change(old: Any, new: Any) -> str:
    """``old -> new`` for messages; for two tables, only the keys that changed."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        parts = [f"{k} {old[k]!r} -> {new[k]!r}" if k in old and k in new else
                 f"{k} {'added' if k in new else 'removed'}"
                 for k in keys if old.get(k, _MISSING) != new.get(k, _MISSING)]
        return ", ".join(parts)
    return f"{old!r} -> {new!r}"


_MISSING = object()
