"""``Sync``: remotes: their configuration (``remotes``, ``remote_add``/``modify``/``remove``/
``default``), ``push``, ``fetch`` and ``pull``, what a remote lacks for ``status --remote``,
and ``_fetch_object``, through which reading falls back to the default remote. Part of
``datavc.Repo``."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import config as config_mod
from . import listing
from .errors import DatavcError, IntegrityError, ObjectMissingError, UsageError, from_oserror
from .hashing import Oid
from .parallel import publish
from .results import CheckoutResult, TargetStatus, TransferResult
from .worktree import Worktree

if TYPE_CHECKING:  # imported where used: a command that needs none of them loads none
    from . import transfer


class Sync(Worktree):
    """Remote configuration, push, fetch and pull (see ``datavc.Repo``)."""

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
             all_commits: bool = False, run_cache: bool = False) -> TransferResult:
        """Upload the objects of ``targets`` (default: every tracked target and stage
        output) that the remote lacks, as the work-tree manifests name them, or those of
        ``revs`` / the scopes. Objects missing from the cache are reported in ``missing``
        and the listings above them are not pushed. (Run-cache entries, and ``run_cache``,
        are the pipeline part's: ``Pipelines.push``.)"""
        from . import transfer

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
              all_commits: bool = False, run_cache: bool = False) -> TransferResult:
        """Download into the cache the objects of ``targets`` that it lacks (verified; a
        mismatch is retried once, then reported in ``corrupt`` and never stored).
        (``run_cache`` is the pipeline part's: ``Pipelines.fetch``.)"""
        from . import transfer

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
             jobs: int | None = None, rev: str | None = None, force: bool = False,
             run_cache: bool = False) -> tuple[TransferResult, list[CheckoutResult]]:
        """``fetch`` then ``checkout`` (with all of checkout's safety rules)."""
        fetched = self.fetch(targets, remote=remote, jobs=jobs,
                             revs=[rev] if rev is not None else None, run_cache=run_cache)
        try:
            return fetched, self.checkout(targets, rev=rev, force=force)
        except ObjectMissingError as exc:
            bad = fetched.transfer.corrupt
            if not bad:
                raise
            # the cause is a download that arrived damaged twice, not a missing object
            raise IntegrityError(
                f"{len(bad)} object(s) arrived corrupt twice and were not stored "
                f"({', '.join(str(o) for o in bad[:5])}), so: {exc.message}",
                hint="the remote holds damaged copies: push them again from a clone that "
                     "has them") from None

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

    def _shas(self, revs: list[str] | None, all_branches: bool, all_tags: bool,
              all_commits: bool) -> list[str | None]:
        """The commits named and in the scopes, each once; [None] (the work tree) when none
        is."""
        if not (revs or all_branches or all_tags or all_commits):
            return [None]
        shas = [self.resolve(r) for r in revs or []]
        shas += self.git.revisions(branches=all_branches, tags=all_tags, commits=all_commits)
        return list(dict.fromkeys(shas))

    def _roots(self, targets: list[str] | None, revs: list[str] | None, all_branches: bool,
               all_tags: bool, all_commits: bool) -> list[transfer.Root]:
        """The trees to transfer: the work-tree manifests (no revision named), or those of
        each revision named and of each commit in the scopes."""
        from . import transfer

        roots: dict[tuple[str, bytes, tuple[str, ...]], transfer.Root] = {}
        for sha in self._shas(revs, all_branches, all_tags, all_commits):
            rels = ([self.target(t) for t in targets] if targets
                    else self._data_paths(sha))
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

    # ------------------------------------------------- the hooks of RepoCore

    def _fetch_object(self, oid: Oid) -> None:
        """Bring object ``oid``, missing from the cache, into it from the default remote
        (verified before it enters the cache, under the lock): the one place where reading
        falls back to a remote. ObjectMissingError (exit 1) when no remote is configured or
        the remote lacks it; IntegrityError (exit 3) when it arrives corrupt twice."""
        from . import transfer

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

    def _remote_status(self, found: list[TargetStatus],
                       remote: str | None) -> list[TargetStatus]:
        from . import transfer

        name, rem = self._open_remote(remote, None)
        try:
            out = []
            for st in found:
                pointer = self.read_pointer(st.path)
                ids, _ = transfer.object_ids(self.store, transfer.Root(
                    pointer.kind, pointer.oid, pointer.nfiles))
                lacking = len(rem.missing(ids))
                out.append(replace(st, remote=name, not_on_remote=lacking))
            return out
        finally:
            rem.close()
