"""The ``datavc`` command: parse, call one ``Repo`` method, render text or ``--json``.

Every expected failure is a DatavcError; :func:`main` prints it and exits with its code
(docs/exit-codes.md). Nothing here does work the library does not.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from typing import Any

import click

from . import __version__
from .errors import (
    DatavcError,
    IntegrityError,
    Interrupted,
    StageFailedError,
    UsageError,
    from_oserror,
)
from .progress import TerminalReporter
from .repo import DiffStat, Repo, ReproResult

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _repo() -> Repo:
    return Repo(".", reporter=TerminalReporter())


def _emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="datavc")
def cli() -> None:
    """Version data next to your code: content-addressed cache, manifests in git.

    \b
    Typical session:
      datavc init
      datavc add data/ model.bin
      datavc commit -m "v1"          # or: git add -A && git commit -m v1
      datavc status
      datavc checkout                # make the workspace match the manifests
    """


@cli.command()
@click.option("--no-scm", is_flag=True, help="Use datavc outside a git work tree.")
def init(no_scm: bool) -> None:
    """Make the current git work tree a datavc repository.

    Also sets up git to merge pointer manifests with `datavc merge-driver`: the line
    `*.datavc merge=datavc` in .gitattributes (staged) and the driver in .git/config. A clone
    does not carry .git/config: run `datavc init` again in a fresh clone (or in a repository
    made before this set-up existed); on an existing repository it only does this set-up,
    idempotently.

    \b
    Example:
      git init && datavc init
      git clone URL proj && cd proj && datavc init   # set up a fresh clone
    """
    repo = Repo.init(".", no_scm=no_scm, reporter=TerminalReporter())
    if repo.reinitialized:
        click.echo(f"Reinitialized existing datavc repository in {repo.dir}")
    else:
        click.echo(f"Initialized datavc repository in {repo.dir}")
    if not no_scm:
        click.echo("Set up the datavc merge driver for *.datavc (.gitattributes, .git/config).")
        if not repo.reinitialized:
            click.echo("Staged .datavc/config.toml, .datavc/.gitignore and .gitattributes; "
                       "commit them with git.")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@json_option
def add(paths: tuple[str, ...], as_json: bool) -> None:
    """Track files or directories: hash them into the cache and write PATH.datavc.

    PATH itself is ignored in git (an entry in its directory's .gitignore); commit the
    small PATH.datavc manifest instead.

    \b
    Example:
      datavc add data/ model.bin
      git add data.datavc model.bin.datavc .gitignore && git commit -m "data v1"
    """
    results = _repo().add(list(paths))
    if as_json:
        _emit_json([r.to_dict() for r in results])
        return
    for r in results:
        what = f"{r.nfiles} files, " if r.kind == "dir" else ""
        verb = "Added" if r.changed else "Unchanged"
        click.echo(f"{verb} {r.path}: {what}{_size(r.size)} -> {r.pointer} ({r.oid})")


@cli.command()
@click.argument("targets", nargs=-1, type=click.Path())
@click.option("-m", "--message", help="Also create the git commit of the manifests.")
@json_option
def commit(targets: tuple[str, ...], message: str | None, as_json: bool) -> None:
    """Record changed tracked data into its manifests (all tracked data by default).

    With -m, also commit the changed manifests (and .gitignore entries) to git.

    \b
    Example:
      datavc commit -m "relabelled cats"
    """
    result = _repo().commit(list(targets) or None, message=message)
    if as_json:
        _emit_json(result.to_dict())
        return
    for r in result.recorded:
        if r.changed:
            click.echo(f"Recorded {r.path}: {r.oid}")
    if not any(r.changed for r in result.recorded) and not result.git_commit:
        click.echo("Nothing changed in the tracked data.")
    if message is not None:
        sha = result.git_commit
        click.echo(f"Committed {sha[:10]}" if sha else "Nothing to commit in git.")


@cli.command()
@click.argument("targets", nargs=-1, type=click.Path())
@click.option("--rev", metavar="REV",
              help="Use the manifests of this git revision (HEAD and the work-tree "
                   "manifests stay as they are); default targets: those tracked at REV.")
@click.option("-f", "--force", is_flag=True,
              help="Replace or delete workspace files even if their content is not cached.")
@json_option
def checkout(targets: tuple[str, ...], rev: str | None, force: bool, as_json: bool) -> None:
    """Make the workspace data match the manifests (of the work tree, or of --rev REV).

    Refuses (exit 1) to overwrite or delete a workspace file whose content is not in the
    cache, and lists those files; --force discards them.

    With --rev, the data of a past revision is read from git objects without moving HEAD
    or touching the work-tree *.datavc files; `datavc status` then shows how the workspace
    differs from the work-tree manifests, and `datavc checkout` brings their data back.

    \b
    Example:
      git checkout v1 -- data.datavc && datavc checkout data
      datavc checkout --rev HEAD~2 data      # the data of two commits ago
    """
    results = _repo().checkout(list(targets) or None, rev=rev, force=force)
    if as_json:
        _emit_json([r.to_dict() for r in results])
    else:
        for r in results:
            click.echo(f"{r.path}: {r.written} written, {r.deleted} deleted")
            for path in r.forced:
                click.echo(f"    discarded (--force): {path}")
    if any(r.missing for r in results):
        raise DatavcError("some files are not in the cache and were left as they are",
                          hint="restore their objects: re-add the data where it still exists, "
                               "or copy the objects into .datavc/cache from another clone")


@cli.command()
@click.argument("targets", nargs=-1, type=click.Path())
@click.option("--remote", "remote_name", is_flag=False, flag_value="", default=None,
              metavar="[NAME]",
              help="Also ask this remote (default: the default remote) which objects of the "
                   "manifests it lacks.")
@json_option
def status(targets: tuple[str, ...], remote_name: str | None, as_json: bool) -> None:
    """Show what changed in the workspace against the manifests.

    With --remote, also what the remote lacks of what the manifests name: it is asked now,
    nothing is assumed from earlier pushes. With a pipeline (and no TARGET), also which
    stages are stale and why (for scripts: `datavc repro --dry-run --json`).

    \b
    Example:
      datavc status
      datavc status data --json
      datavc status --remote          # what `datavc push` would still send
    """
    repo = _repo()
    results = repo.status(list(targets) or None, remote=remote_name)
    if as_json:
        _emit_json([r.to_dict() for r in results])
        return
    if not results and not os.path.exists(os.path.join(repo.root, "datavc.toml")):
        click.echo("Nothing is tracked yet: `datavc add PATH` to start.")
    elif all(r.state == "clean" and not r.not_in_cache for r in results):
        click.echo("Data and manifests are up to date.")
    for r in results:
        if r.remote is not None:
            click.echo(f"{r.path}: " + (f"{r.not_on_remote} object(s) not on remote "
                                        f"{r.remote} (`datavc push`)" if r.not_on_remote
                                        else f"everything is on remote {r.remote}"))
        if r.not_in_cache:
            click.echo(f"{r.path}: {r.not_in_cache} object(s) not in the cache "
                       f"(`datavc commit {r.path}` stores them)")
        if r.state == "clean":
            continue
        click.echo(f"{r.path}: {r.state}")
        for c in r.changes:
            click.echo(f"    {c.change + ':':<10} {c.path}{'/' if c.kind == 'dir' else ''}")
    if not targets:
        _stage_status(repo)


def _stage_status(repo: Repo) -> None:
    """status's pipeline part: each stale stage and why (what `repro --dry-run` says)."""
    if not os.path.exists(os.path.join(repo.root, "datavc.toml")):
        return
    try:
        dry = repo.repro(dry_run=True)
    except DatavcError as exc:
        click.echo(f"Pipeline: cannot tell which stages are stale: {exc.message}")
        return
    stale = [s for s in dry.stages if s.status != "up-to-date"]
    if not stale:
        click.echo(f"Pipeline: all {len(dry.stages)} stage(s) up to date.")
        return
    click.echo(f"Pipeline: {len(stale)} of {len(dry.stages)} stage(s) stale "
               "(`datavc repro` brings them up to date):")
    for s in stale:
        why = "; ".join(str(r) for r in s.reasons)
        click.echo(f"    {s.name}: {s.status.replace('would-', 'would ')} ({why})")


def _split_revisions(repo: Repo, args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The leading revisions (at most two) and the targets of ``diff A B TARGET...``."""
    revs: list[str] = []
    rest = list(args)
    while rest and len(revs) < 2:
        arg = rest[0]
        is_rev = repo.git.is_revision(arg)
        if not is_rev:
            break
        if os.path.lexists(arg) or os.path.lexists(arg + ".datavc"):
            raise UsageError(f"'{arg}' is both a git revision and a path",
                             hint=f"write ./{arg} for the path, or {arg}^{{commit}} "
                                  "for the revision")
        revs.append(rest.pop(0))
    if rest and len(revs) == 2 and repo.git.is_revision(rest[0]) and not (
            os.path.lexists(rest[0]) or os.path.lexists(rest[0] + ".datavc")):
        raise UsageError(f"'{rest[0]}' is a third revision: diff compares two",
                         hint="datavc diff A B [TARGET...]")
    return revs, rest


def _signed_size(n: int) -> str:
    return ("-" if n < 0 else "+") + _size(abs(n))


@cli.command()
@click.argument("args", nargs=-1, metavar="[A [B]] [TARGET...]")
@click.option("--stat", "stat_only", is_flag=True, help="Print only the totals.")
@json_option
def diff(args: tuple[str, ...], stat_only: bool, as_json: bool) -> None:
    """Show which data files changed between two revisions, or a revision and the workspace.

    A and B are git revisions; A defaults to HEAD and B to the data in the workspace.
    TARGETs are tracked targets, paths inside them, or directories holding them (default:
    everything tracked on either side). Only the subtrees whose ids differ are read, so a
    small change to a huge dataset diffs at once. A file that moved keeps its id and is shown
    as renamed. A path that is also a revision name must be written ./PATH.

    \b
    Example:
      datavc diff                          # HEAD against the workspace data
      datavc diff v1.1 v1.2 --stat         # 1204 added, 37 modified, 5 deleted, +812.0 MiB
      datavc diff v1.1 v1.2 data/images --json
    """
    repo = _repo()
    revs, targets = _split_revisions(repo, args)
    a = revs[0] if revs else None
    b = revs[1] if len(revs) > 1 else None
    changes = repo.diff(a, b, list(targets) or None)
    stat = DiffStat.of(changes)
    if as_json:
        _emit_json({"a": None if a is None and repo.git.is_unborn() else repo.resolve(a or "HEAD"),
                    "b": repo.resolve(b) if b is not None else None,
                    "workspace": b is None,
                    "changes": [] if stat_only else [c.to_dict() for c in changes],
                    "stat": stat.to_dict()})
        return
    if not stat_only:
        for c in changes:
            path = f"{c.old_path} -> {c.path}" if c.old_path else c.path
            click.echo(f"{c.change + ':':<10} {path}{'/' if c.kind == 'dir' else ''}")
    if not changes:
        click.echo("No data changes.")
    elif stat_only or len(changes) > 1:
        parts = [f"{n} {k}" for k, n in (("added", stat.added), ("modified", stat.modified),
                                          ("deleted", stat.deleted), ("renamed", stat.renamed))
                 if n or k != "renamed"]
        click.echo(f"{', '.join(parts)}, {_signed_size(stat.size_delta)}")


@cli.command()
@click.argument("target", type=click.Path())
@click.option("--rev", metavar="REV", default="HEAD", show_default=True,
              help="Start from this git revision.")
@json_option
def log(target: str, rev: str, as_json: bool) -> None:
    """Show the commits where a dataset's data changed, newest first.

    Each entry: the commit, its author and date, whether TARGET was added, modified or
    deleted there, its file count and size at that commit, and the commit message.
    Commits that changed only a manifest's metadata are left out. A manifest that fails
    validation at some commit is reported (`invalid manifest`) and never read further.

    \b
    Example:
      datavc log data/images
      datavc log data/images --json | jq '.[0].nfiles'
    """
    entries = _repo().log(target, rev=rev)
    if as_json:
        _emit_json([e.to_dict() for e in entries])
    else:
        for e in entries:
            click.echo(f"{e.commit[:12]}  {e.date}  {e.author} <{e.email}>")
            if e.error:
                what = f"invalid manifest: {e.error}"
            elif e.change == "deleted":
                what = "deleted"
            else:
                what = f"{e.change}: {e.nfiles} file(s), {_size(e.size or 0)}"
            subject = e.message.splitlines()[0] if e.message else ""
            click.echo(f"    {what}\n    {subject}\n")


@cli.command("ls")
@click.argument("target", required=False, type=click.Path())
@click.option("--rev", metavar="REV", help="List what the manifests of this git revision name.")
@click.option("--parquet", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the list to FILE as Parquet (path, kind, oid, size, executable) "
                   "instead of printing it (with --json, print the JSON too).")
@json_option
def ls_cmd(target: str | None, rev: str | None, parquet: str | None, as_json: bool) -> None:
    """List tracked files (of TARGET, or of every target), their ids and sizes.

    One line per file: `oid  size  path`. With --rev, the manifests of that git revision,
    read from git objects (nothing is checked out).

    \b
    Example:
      datavc ls data
      datavc ls --rev v1 --parquet files.parquet
    """
    from .repo import write_ls_parquet

    entries = _repo().ls(target, rev=rev)
    if parquet is not None:
        write_ls_parquet(entries, parquet)
    if as_json:
        _emit_json([e.to_dict() for e in entries])
        return
    if parquet is not None:
        click.echo(f"Wrote {len(entries)} file(s) to {parquet}")
        return
    for e in entries:
        click.echo(f"{e.oid}  {e.size}  {e.path}")


@cli.command("hash-object")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-w", "--write", is_flag=True, help="Also store the object in the cache.")
def hash_object(file: str, write: bool) -> None:
    """Print the object id of FILE's content (plumbing).

    \b
    Example:
      datavc hash-object model.bin      # xxh128:0f3a...
    """
    if write:
        click.echo(str(_repo().hash_object(file, write=True)))
        return
    from .hashing import hash_file

    try:
        click.echo(str(hash_file(file)[0]))
    except OSError as exc:
        from .errors import from_oserror

        raise from_oserror(exc, file, "hash") from exc


@cli.command("cat-object")
@click.argument("oid")
def cat_object(oid: str) -> None:
    """Write the verified bytes of one cache object to stdout (plumbing).

    Exit 3 when the object's content does not match its id.

    \b
    Example:
      datavc cat-object xxh128:0f3a... > copy.bin
    """
    out = sys.stdout.buffer
    for chunk in _repo().cat_object(oid):
        out.write(chunk)
    out.flush()


@cli.command("ls-manifest")
@click.argument("pointer", type=click.Path())
@json_option
def ls_manifest(pointer: str, as_json: bool) -> None:
    """List the entries a pointer manifest names: kind, id, size, path (plumbing).

    \b
    Example:
      datavc ls-manifest data.datavc
    """
    rows = _repo().ls_manifest(pointer)
    if as_json:
        _emit_json([{"path": p, **e.to_dict()} for p, e in rows])
        return
    for path, e in rows:
        click.echo(f"{e.kind}\t{e.oid}\t{e.size}\t{path}")


def _transfer_options(f: Any) -> Any:
    f = click.option("--run-cache", is_flag=True,
                     help="Also every run-cache entry (push: in the cache; fetch: on the "
                          "remote), with its outputs.")(f)
    f = click.option("-j", "--jobs", type=int, help="Parallel transfers (default 16).")(f)
    f = click.option("-r", "--remote", "remote_name", metavar="NAME",
                     help="The remote (default: the default remote).")(f)
    return f


def _scope_options(f: Any) -> Any:
    f = click.option("--all-commits", is_flag=True,
                     help="The data of every commit reachable from any branch or tag.")(f)
    f = click.option("--all-tags", is_flag=True, help="The data of every tag.")(f)
    f = click.option("--all-branches", is_flag=True, help="The data of every branch's tip.")(f)
    f = click.option("--rev", "revs", metavar="REV", multiple=True,
                     help="The data of this git revision (repeatable).")(f)
    return f


def _report_transfer(result: Any, as_json: bool, verb: str) -> None:
    t = result.transfer
    if as_json:
        _emit_json(result.to_dict())
    else:
        runs = f", {_entries(result.runs)}" if result.runs else ""
        click.echo(f"{verb} {t.transferred} object(s), {_size(t.nbytes)} "
                   f"({t.present} already there){runs} — remote {result.remote}")
    _check_transfer(result)


def _entries(n: int) -> str:
    return f"{n} run-cache entr{'y' if n == 1 else 'ies'}"


def _check_transfer(result: Any) -> None:
    """Exit 3 for corrupt downloads, 1 for objects that could not be moved."""
    t = result.transfer
    shown = ", ".join(str(o) for o in (t.corrupt or t.missing)[:5])
    more = " …" if len(t.corrupt or t.missing) > 5 else ""
    if t.corrupt:
        raise IntegrityError(f"{len(t.corrupt)} object(s) arrived corrupt twice and were not "
                             f"stored: {shown}{more}",
                             hint="the remote holds damaged copies: push them again from a "
                                  "clone that has them")
    if t.missing and result.direction == "push":
        raise DatavcError(f"{len(t.missing)} object(s) are not in the cache, so they and the "
                          f"listings naming them were not pushed: {shown}{more}",
                          hint="re-add the data where it still exists, then push again")
    if t.missing:
        raise DatavcError(f"{len(t.missing)} object(s) are not on the remote: {shown}{more}",
                          hint="push them from a clone that has them")


@cli.command()
@click.argument("targets", nargs=-1, type=click.Path())
@_transfer_options
@_scope_options
@json_option
def push(targets: tuple[str, ...], remote_name: str | None, jobs: int | None,
         run_cache: bool, revs: tuple[str, ...], all_branches: bool, all_tags: bool,
         all_commits: bool, as_json: bool) -> None:
    """Upload the data of TARGETs (default: everything tracked, and the stage outputs in
    datavc.lock) that the remote lacks.

    The remote is asked what it holds (never a local belief); objects go up in parallel,
    each checked against its id, and a listing only after everything it names, so a remote
    never claims data it cannot serve. With no TARGET, the run-cache entries of the runs
    datavc.lock records go up too (after their outputs), so that `datavc repro` in CI or a
    teammate's clone restores those outputs instead of running the stages.

    \b
    Example:
      datavc push                    # the default remote
      datavc push -r backup -j 32 data
      datavc push --all-tags         # the data of every tag
      datavc push --run-cache        # and every run this cache recorded
    """
    result = _repo().push(list(targets) or None, remote=remote_name, jobs=jobs,
                          revs=list(revs) or None, all_branches=all_branches,
                          all_tags=all_tags, all_commits=all_commits, run_cache=run_cache)
    _report_transfer(result, as_json, "Pushed")


@cli.command()
@click.argument("targets", nargs=-1, type=click.Path())
@_transfer_options
@_scope_options
@json_option
def fetch(targets: tuple[str, ...], remote_name: str | None, jobs: int | None,
          run_cache: bool, revs: tuple[str, ...], all_branches: bool, all_tags: bool,
          all_commits: bool, as_json: bool) -> None:
    """Download into the cache the data of TARGETs that it lacks (the workspace is not touched).

    Every download is re-hashed before it enters the cache; a mismatch is retried once,
    then reported (exit 3) and never stored. `datavc repro` asks the default remote for
    a run it lacks by itself; --run-cache brings every run ahead of time (to work offline).

    \b
    Example:
      datavc fetch
      datavc fetch --rev v1.1 data
      datavc fetch --run-cache
    """
    result = _repo().fetch(list(targets) or None, remote=remote_name, jobs=jobs,
                           revs=list(revs) or None, all_branches=all_branches,
                           all_tags=all_tags, all_commits=all_commits, run_cache=run_cache)
    _report_transfer(result, as_json, "Fetched")


@cli.command()
@click.argument("targets", nargs=-1, type=click.Path())
@_transfer_options
@click.option("--rev", metavar="REV", help="The data of this git revision (as checkout --rev).")
@click.option("-f", "--force", is_flag=True,
              help="Replace or delete workspace files even if their content is not cached.")
@json_option
def pull(targets: tuple[str, ...], remote_name: str | None, jobs: int | None,
         run_cache: bool, rev: str | None, force: bool, as_json: bool) -> None:
    """Fetch the data of TARGETs, then check it out (with all of checkout's safety rules).

    \b
    Example:
      git clone URL project && cd project && datavc init && datavc pull
      datavc pull --rev v1.1 data
    """
    fetched, checked = _repo().pull(list(targets) or None, remote=remote_name, jobs=jobs,
                                    rev=rev, force=force, run_cache=run_cache)
    if as_json:
        _emit_json({**fetched.to_dict(), "checkout": [r.to_dict() for r in checked]})
    else:
        t = fetched.transfer
        runs = f", {_entries(fetched.runs)}" if fetched.runs else ""
        click.echo(f"Fetched {t.transferred} object(s), {_size(t.nbytes)} "
                   f"({t.present} already cached){runs} — remote {fetched.remote}")
        for r in checked:
            click.echo(f"{r.path}: {r.written} written, {r.deleted} deleted")
    if any(r.missing for r in checked) and not (fetched.transfer.missing
                                                or fetched.transfer.corrupt):
        raise DatavcError("some files are not in the cache and were left as they are")
    _check_transfer(fetched)


@cli.command()
@click.argument("targets", nargs=-1, type=click.Path())
@click.option("--remote", "remote_name", metavar="NAME", default="",
              help="The remote that must hold every object (default: the default remote, "
                   "when one is set).")
@click.option("--no-remote", is_flag=True, help="Do not ask any remote (e.g. before a commit).")
@click.option("--staged", is_flag=True,
              help="A manifest staged in git's index counts as committed (for pre-commit).")
@json_option
def check(targets: tuple[str, ...], remote_name: str, no_remote: bool, staged: bool,
          as_json: bool) -> None:
    """The CI gate: exit 0 only when every dataset is pinned.

    Pinned: its manifest is committed in git, the workspace matches it (or is absent), every
    object it needs is on the remote (asked now, when a remote is named or a default is
    set), and git does not track its path itself. Each problem is one line; exit 1.

    \b
    Example:
      datavc check --remote storage          # in CI, after `git clone`
      datavc check --no-remote --staged     # before a commit (the pre-commit hook)
    """
    result = _repo().check(list(targets) or None, remote=None if no_remote else remote_name,
                           staged=staged)
    if as_json:
        _emit_json(result.to_dict())
    else:
        for p in result.problems:
            click.echo(f"{p.path or '-'}: {p.problem}: {p.detail}")
        if result.pinned:
            where = f", all on remote {result.remote}" if result.remote else ""
            click.echo(f"Pinned: {len(result.targets)} dataset(s){where}.")
    if not result.pinned:
        raise DatavcError(f"{len(result.problems)} problem(s): the data is not pinned",
                          hint="fix each line above, then run `datavc check` again")


@cli.command()
@json_option
def level(as_json: bool) -> None:
    """The maturity audit: which level (0-3) of data versioning this repository reached,
    the evidence, and the next step.

    \b
    Example:
      datavc level
      datavc level --json | jq .next_step
    """
    report = _repo().level()
    if as_json:
        _emit_json(report.to_dict())
        return
    click.echo(f"level {report.level}: {report.summary}.")
    for e in report.evidence[:10]:
        if e.kind == "outside-pipeline":
            click.echo(f"    tracked by hand, no stage reads or writes it: {e.path} "
                       f"({e.files} file(s), {_size(e.size)})")
            continue
        what = f"{e.files} data files, " if e.kind == "data-dir" else ""
        click.echo(f"    unversioned {e.kind}: {e.path} ({what}{_size(e.size)})")
    if len(report.evidence) > 10:
        click.echo(f"    … and {len(report.evidence) - 10} more (--json lists them all)")
    click.echo(f"Next: {report.next_step}")


@cli.command()
@json_option
def install(as_json: bool) -> None:
    """Install git hooks: post-checkout checks the data out, pre-push pushes it, pre-commit
    runs `datavc check --no-remote`. Hooks already there are chained, not replaced.

    \b
    Example:
      datavc install
    """
    changes = _repo().install()
    if as_json:
        _emit_json([c.to_dict() for c in changes])
        return
    for c in changes:
        click.echo(f"{c.hook}: {c.action}")


@cli.command()
@json_option
def uninstall(as_json: bool) -> None:
    """Remove datavc's git hooks, putting back the hooks they chained.

    \b
    Example:
      datavc uninstall
    """
    changes = _repo().uninstall()
    if as_json:
        _emit_json([c.to_dict() for c in changes])
        return
    for c in changes:
        click.echo(f"{c.hook}: {c.action}")


def _render_repro(result: ReproResult) -> None:
    verbs = {"ran": "Ran", "restored": "Restored", "would-run": "Would run",
             "would-restore": "Would restore", "failed": "Failed", "skipped": "Skipped"}
    for s in result.stages:
        if s.status == "up-to-date":
            continue
        why = "; ".join(str(r) for r in s.reasons)
        detail = f": {s.error}" if s.error else (f": {why}" if why else "")
        click.echo(f"{verbs[s.status]} stage '{s.name}'{detail}")
    if all(s.status == "up-to-date" for s in result.stages):
        click.echo("Everything is up to date.")


@cli.command()
@click.argument("stages", nargs=-1)
@click.option("-j", "--jobs", type=click.IntRange(min=1), metavar="N",
              help="Run up to N independent stages at once (default 1).")
@click.option("--dry-run", is_flag=True, help="Run nothing: say which stages would run, and why.")
@click.option("-f", "--force", is_flag=True,
              help="Run the stages even when up to date (and never restore them from the "
                   "run-cache).")
@click.option("--no-run-cache", is_flag=True,
              help="Run stale stages even when the run-cache could restore their outputs.")
@json_option
def repro(stages: tuple[str, ...], jobs: int | None, dry_run: bool, force: bool,
          no_run_cache: bool, as_json: bool) -> None:
    """Run the pipeline stages (of datavc.toml) whose command, dependencies' content, params
    or outputs changed, in dependency order; with STAGE..., those and what they depend on.

    Outputs are stored in the cache and recorded in datavc.lock; a timestamp alone never
    reruns anything. Each successful run is recorded in the run-cache: a stale stage whose
    command, dependencies and params match a recorded run has its outputs restored from
    the cache, without running (`Restored stage`). The commands of a cloned pipeline run
    only after `datavc trust` (exit 6 until then). Stage commands write to stderr. A failed
    stage exits 1, naming it; its dependents do not run and datavc.lock keeps its last good
    run.

    \b
    Example:
      datavc repro --dry-run        # what would run, and why
      datavc repro -j 4
      datavc repro train
    """
    try:
        result = _repo().repro(list(stages) or None, jobs=jobs, dry_run=dry_run, force=force,
                               run_cache=not no_run_cache)
    except StageFailedError as exc:
        if isinstance(exc.result, ReproResult):
            _show_repro(exc.result, as_json)
        raise
    _show_repro(result, as_json)


def _show_repro(result: ReproResult, as_json: bool) -> None:
    if as_json:
        _emit_json(result.to_dict())
    else:
        _render_repro(result)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot"]), default="text",
              show_default=True, help="How to draw the graph.")
@json_option
def dag(fmt: str, as_json: bool) -> None:
    """Show the pipeline graph of datavc.toml: each stage after the stages it depends on.

    \b
    Example:
      datavc dag
      datavc dag --format mermaid > pipeline.mmd
      datavc dag --format dot | dot -Tsvg > pipeline.svg
    """
    result = _repo().dag(format=fmt)
    if as_json:
        _emit_json(result.to_dict())
    else:
        click.echo(result.text, nl=False)


@cli.group(context_settings=CONTEXT)
def stage() -> None:
    """Edit the pipeline file, datavc.toml.

    \b
    Example:
      datavc stage add -n train -d data/features -o model.bin -- python train.py
    """


@stage.command("add", context_settings={"ignore_unknown_options": True})
@click.option("-n", "--name", required=True, help="The stage's name.")
@click.option("-d", "--dep", "deps", multiple=True, metavar="PATH", help="A dependency (repeat).")
@click.option("-o", "--out", "outs", multiple=True, metavar="PATH", help="An output (repeat).")
@click.option("-p", "--param", "params", multiple=True, metavar="FILE:KEY",
              help="A parameter, e.g. params.toml:train.seed (repeat).")
@click.option("--probe", "probes", multiple=True, metavar="NAME=COMMAND",
              help="A dependency that is not a file: COMMAND's output, hashed (repeat).")
@click.option("--shell", is_flag=True, help="Run the command (and probes) through the shell.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@json_option
def stage_add(name: str, deps: tuple[str, ...], outs: tuple[str, ...], params: tuple[str, ...],
              probes: tuple[str, ...], shell: bool, command: tuple[str, ...],
              as_json: bool) -> None:
    """Add stage NAME running COMMAND to datavc.toml (the rest of the file is kept as it is).

    A duplicate name or output, or a cycle, is refused. Adding to a pipeline you trusted
    (or a new one) keeps it trusted: you wrote it. A probe reruns the stage when what its
    command prints changes: a database table's checksum, an API's version.

    \b
    Example:
      datavc stage add -n eval -d model.bin -o metrics.json -- python src/eval.py
      datavc stage add -n users -o data/users.csv \\
          --probe "table=sqlite3 app.db 'select max(updated) from users'" \\
          -- python src/export_users.py
    """
    table: dict[str, str] = {}
    for probe in probes:
        probe_name, eq, probe_cmd = probe.partition("=")
        if not eq or not probe_name or not probe_cmd.strip():
            raise UsageError(f"--probe must be NAME=COMMAND, not {probe!r}")
        table[probe_name] = probe_cmd
    result = _repo().stage_add(name, list(command), deps=list(deps), outs=list(outs),
                               params=list(params), shell=shell, probes=table)
    if as_json:
        _emit_json(result.to_dict())
        return
    click.echo(f"Added stage '{result.name}' to {result.path}.")
    if not result.trusted:
        click.echo("The pipeline is not trusted here: review it, then run `datavc trust`.")


@cli.command()
@json_option
def trust(as_json: bool) -> None:
    """Allow the commands of this clone's datavc.toml, as it is now, to run.

    Recorded in your own config ($XDG_CONFIG_HOME/datavc/trust.json) against the file's
    SHA-256: after the file changes (e.g. a pull), `datavc repro` asks for trust again.

    \b
    Example:
      git clone URL proj && cd proj && cat datavc.toml && datavc trust
    """
    result = _repo().trust()
    if as_json:
        _emit_json(result.to_dict())
        return
    click.echo(f"Trusted {result.root}/datavc.toml (sha256 {result.digest[:16]}…).")


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise UsageError(f"not a duration: {text!r}", hint="e.g. 0, 90s, 30m, 2h, 7d") from None


@cli.command("gc")
@click.option("-w", "--workspace", is_flag=True, help="Keep the work tree's data (always kept).")
@click.option("--rev", "revs", metavar="REV", multiple=True, help="Keep this revision's data.")
@click.option("--all-branches", is_flag=True, help="Keep the data of every branch tip.")
@click.option("--all-tags", is_flag=True, help="Keep the data of every tag.")
@click.option("--all-commits", is_flag=True, help="Keep the data of every commit.")
@click.option("-r", "--remote", "remote_name", metavar="NAME", is_flag=False, flag_value="",
              default=None, help="Also collect on this remote (default: the default remote).")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("--grace", default="1h", show_default=True, metavar="DURATION",
              help="Keep unreferenced objects stored more recently than this (in the cache "
                   "and on the remote).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting on a remote.")
@json_option
def gc_cmd(workspace: bool, revs: tuple[str, ...], all_branches: bool, all_tags: bool,
           all_commits: bool, remote_name: str | None, dry_run: bool, grace: str, yes: bool,
           as_json: bool) -> None:
    """Delete the objects no kept revision names. Fails closed: if any kept revision's data
    cannot be read, nothing is deleted (exit 1).

    On a remote, objects other clones pushed for commits this clone does not know would go
    too: gc there asks first (or needs --yes), and --all-commits after `git fetch --all` is
    the safe scope.

    \b
    Example:
      datavc gc --all-branches --all-tags --dry-run
      datavc gc --all-commits --remote storage --yes
    """
    if remote_name is not None and not dry_run and not yes:
        if not sys.stdin.isatty():
            raise UsageError("gc on a remote deletes shared data: confirm with --yes",
                             hint="run with --dry-run first to see what would go")
        click.confirm("Delete unreferenced objects on the remote too?", abort=True)
    results = _repo().gc(workspace=workspace, revs=list(revs) or None,
                         all_branches=all_branches, all_tags=all_tags,
                         all_commits=all_commits, remote=remote_name, dry_run=dry_run,
                         grace=_duration(grace))
    if as_json:
        _emit_json([r.to_dict() for r in results])
        return
    for r in results:
        verb = "would delete" if r.dry_run else "deleted"
        size = f", {_size(r.nbytes)}" if r.nbytes is not None else ""
        recent = f"; {r.recent} recent object(s) kept" if r.recent else ""
        runs = f"; {_entries(r.runs)} dropped" if r.runs else ""
        click.echo(f"{r.where}: {verb} {r.deleted} object(s){size}; {r.kept} in use"
                   f"{recent}{runs}")


@cli.command()
@click.option("--read-data", is_flag=True, help="Re-hash every object (else: sizes only).")
@click.option("-r", "--remote", "remote_name", metavar="NAME", is_flag=False, flag_value="",
              default=None, help="Also check this remote (default: the default remote).")
@click.option("--repair", is_flag=True,
              help="Replace damaged or missing cache objects from the remote.")
@click.option("--rev", "revs", metavar="REV", multiple=True, help="Also check this revision.")
@click.option("--all-branches", is_flag=True, help="Also check every branch tip.")
@click.option("--all-tags", is_flag=True, help="Also check every tag.")
@click.option("--all-commits", is_flag=True, help="Also check every commit.")
@json_option
def fsck(read_data: bool, remote_name: str | None, repair: bool, revs: tuple[str, ...],
         all_branches: bool, all_tags: bool, all_commits: bool, as_json: bool) -> None:
    """Check the cache, the manifests and their listings (and a remote); trust nothing.

    Exit 3 when an object is corrupt, naming it and the paths that use it; exit 1 when
    objects are missing.

    \b
    Example:
      datavc fsck --read-data
      datavc fsck --read-data --remote storage --repair
    """
    if repair and remote_name is None:
        remote_name = ""
    result = _repo().fsck(read_data=read_data, remote=remote_name, repair=repair,
                          revs=list(revs) or None, all_branches=all_branches,
                          all_tags=all_tags, all_commits=all_commits)
    if as_json:
        _emit_json(result.to_dict())
    else:
        for p in result.problems:
            paths = f" (used by {', '.join(p.paths)})" if p.paths else ""
            click.echo(f"{p.where}: {p.kind}: {p.oid or p.detail}{paths}"
                       + (f": {p.detail}" if p.oid and p.detail else ""))
        for oid in result.repaired:
            click.echo(f"repaired: {oid}")
        if not result.problems:
            click.echo(f"OK: {result.checked} object(s) checked.")
    bad = [p for p in result.problems if p.kind in ("corrupt", "size", "invalid")]
    if bad:
        raise IntegrityError(f"{len(bad)} damaged object(s) or listing(s)",
                             hint="`datavc fsck --repair --remote NAME` refetches them")
    if result.problems:
        raise DatavcError(f"{len(result.problems)} problem(s) found")


@cli.group(context_settings=CONTEXT)
def remote() -> None:
    """Manage remotes: where `datavc push` sends objects and `pull` gets them.

    Remotes live in .datavc/config.toml (tracked: the team shares them) or, with --local,
    in .datavc/config.local.toml (this machine only: credentials, profiles, overrides).
    The tracked file refuses credentials (exit 6).

    \b
    Example:
      datavc remote add storage s3://ml-data/project --default
      datavc remote modify storage endpoint_url http://127.0.0.1:9000
      datavc remote modify storage --local profile ml-team
      datavc remote list
    """


local_option = click.option("--local", is_flag=True,
                            help="Write .datavc/config.local.toml (ignored by git) instead.")


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("-d", "--default", "default", is_flag=True, help="Also make it the default.")
@click.option("-f", "--force", is_flag=True, help="Replace a remote of that name.")
@local_option
def remote_add(name: str, url: str, default: bool, force: bool, local: bool) -> None:
    """Add a remote NAME at URL: s3://BUCKET/PREFIX, file:///PATH or a directory.

    \b
    Example:
      datavc remote add storage s3://ml-data/project --default
      datavc remote add backup /mnt/nas/datavc
    """
    repo = _repo()
    repo.remote_add(name, url, default=default, local=local, force=force)
    click.echo(f"Added remote {name}" + (" (default)" if default else ""))


@remote.command("modify")
@click.argument("name")
@click.argument("key")
@click.argument("value", required=False)
@click.option("-u", "--unset", is_flag=True, help="Remove KEY instead of setting it.")
@local_option
def remote_modify(name: str, key: str, value: str | None, unset: bool, local: bool) -> None:
    """Set KEY of remote NAME to VALUE (url, endpoint_url, region, profile, path_style,
    pack; access_key_id, secret_access_key and session_token only with --local).

    `pack false` makes push store every object on its own instead of packing many small
    ones together (fewer files and requests); readers use packs either way.

    \b
    Example:
      datavc remote modify storage endpoint_url http://127.0.0.1:9000
      datavc remote modify storage --local secret_access_key "$SECRET"
      datavc remote modify storage region --unset
      datavc remote modify storage pack false
    """
    if unset == (value is not None):
        raise UsageError("give a VALUE, or --unset without one")
    _repo().remote_modify(name, key, None if unset else value, local=local)


@remote.command("list")
@json_option
def remote_list(as_json: bool) -> None:
    """List the remotes: name, URL (credentials masked), settings, the default.

    \b
    Example:
      datavc remote list --json
    """
    remotes = _repo().remotes()
    if as_json:
        _emit_json([r.to_dict() for r in remotes])
        return
    if not remotes:
        click.echo("No remotes: `datavc remote add NAME URL` to add one.")
    for r in remotes:
        extra = "".join(f" {k}={v}" for k, v in r.settings.items())
        flags = " (default)" if r.default else ""
        click.echo(f"{r.name}\t{r.url}{flags}{extra}")


@remote.command("remove")
@click.argument("name")
@local_option
def remote_remove(name: str, local: bool) -> None:
    """Remove remote NAME (from both config files; with --local, only from the local one).

    \b
    Example:
      datavc remote remove backup
    """
    _repo().remote_remove(name, local=local)
    click.echo(f"Removed remote {name}")


@remote.command("default")
@click.argument("name", required=False)
@click.option("-u", "--unset", is_flag=True, help="Unset the default remote.")
@local_option
def remote_default(name: str | None, unset: bool, local: bool) -> None:
    """Show the default remote, or make NAME the default.

    \b
    Example:
      datavc remote default storage
      datavc remote default            # prints the default's name
    """
    repo = _repo()
    if unset or name is not None:
        if unset and name is not None:
            raise UsageError("give NAME or --unset, not both")
        repo.remote_default(name, local=local)
        return
    default = repo.default_remote()
    if default is None:
        raise DatavcError("no default remote is set",
                          hint="datavc remote default NAME (see `datavc remote list`)")
    click.echo(default)

@cli.command("merge-driver")
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("ours", type=click.Path(dir_okay=False))
@click.argument("theirs", type=click.Path(dir_okay=False))
@click.argument("path")
def merge_driver(base: str, ours: str, theirs: str, path: str) -> None:
    """Merge two branches' changes to one pointer manifest: git's merge driver (plumbing).

    git runs it as `merge-driver %O %A %B %P` for files marked `merge=datavc` in
    .gitattributes, which `datavc init` sets up: BASE, OURS and THEIRS hold the three
    versions of the manifest PATH (BASE is empty when both branches added it). Changes to
    different files of a directory merge: the merged manifest is written into OURS (its new
    listings into the cache) and the exit code is 0. Paths both branches changed differently
    are printed on stderr, one per line, OURS is left as it is, and the exit code is 1, so
    git reports a conflict; so is a side that is not a valid manifest.

    \b
    Example:
      datavc merge-driver base.datavc ours.datavc theirs.datavc data.datavc
    """
    result = _repo().merge_pointers(base, ours, theirs, path)
    if result.clean:
        return
    for c in result.conflicts:
        click.echo(f"datavc: conflict: {c.path}: {c.reason}", err=True)
    click.echo(f"hint: {path} was left as our side. Keep a side with `git checkout --ours "
               f"{path}` (or --theirs), or combine the data by hand and run `datavc add "
               f"{result.target}`; then `git add {path}`", err=True)
    raise click.exceptions.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn every expected failure into its exit code."""
    sys.setrecursionlimit(10_000)
    gc.disable()  # a run allocates 100k+ long-lived objects and frees them at exit: cyclic
    # collection only rescans them (~10% of a 100k-file status)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = cli.main(args=argv, prog_name="datavc", standalone_mode=False)
    except click.exceptions.Abort:
        code = _fail(Interrupted("interrupted"))
    except click.ClickException as exc:
        exc.show()
        code = 2
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except DatavcError as exc:
        code = _fail(exc)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except OSError as exc:  # a file-system failure no layer below translated: still no trace
        code = _fail(from_oserror(exc, exc.filename or "?", "access"))
    except KeyboardInterrupt:
        code = _fail(Interrupted("interrupted"))

    sys.exit(code if isinstance(code, int) else 0)


def _fail(exc: DatavcError) -> int:
    click.echo(f"datavc: error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)
    return exc.exit_code


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
