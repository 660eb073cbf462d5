#!/usr/bin/env python3
"""Core benchmark: datavc vs DVC on the same generated data, side by side in one run.

Scenarios (pick with --only):
  add       `add data` of the small-file tree into a fresh repo
  status    `status` right after that add (nothing changed)
  readd     `add data` again with nothing changed
  checkout  move data/ aside, then `checkout` into the empty workspace; then again right
            after `rm -rf data` (row "checkout (after rm)": ext4 without a journal makes
            creating files slow for minutes after a mass delete)
  big       `add big.bin` of one big file into a fresh repo

Every timed command starts after `sync` + drop_caches (cold); status and re-add are also
repeated warm unless --no-warm. Results go to benchmarks/results/<date>-core.md (a full run
of both tools) or <date>-core-partial.md (--quick, --only, --skip-*), so a partial run never
replaces a full one.

History group (`--only history`, or some of its scenarios; never mixed with the core ones):
each tool's repo gets `add data` + git commit (tag v1), then 10 files in different
directories are rewritten and it gets `add data` + git commit (tag v2); none of that is timed.
  diff       `diff v1 v2` (both tools)
  diff-json  `diff v1 v2 --json` / `dvc diff --json v1 v2`; the JSON must name exactly the
             10 rewritten files, as modified, for both tools
  log        `log data` (datavc only: DVC has no equivalent)
Each command runs --repeats times cold and as often warm, the tools alternating; the report
gives medians. Results go to <date>-history.md (or <date>-history-partial.md).

Remote group (`--only remote`, or some of its scenarios): push and pull, side by side, each
tool to its own remote. Untimed setup per dataset: a repo with the data added, a directory
remote and/or an S3 remote (a moto server on 127.0.0.1 that the harness starts and stops)
configured and committed. Timed: `push` into an emptied remote (cold), then `pull` into a
fresh `git clone` of the repo (cold, empty cache), the pulled tree verified byte-exact.
  small-local  the 100,000 small files, directory remote
  mixed-local  ~1 GiB of mixed sizes (1 KiB..64 MiB, 5,000 files), directory remote
  mixed-s3     the mixed files, S3 (moto)
  small-s3     the small files, S3 (moto): slow (minutes per command), one run; --skip-slow
Results go to <date>-remote.md (or <date>-remote-partial.md).

Pipeline group (`--only pipeline`): `repro` of the same generated chain of --stages stages
(default 100; each `cp` of the previous stage's output, see pipeline.py), datavc.toml for
datavc and dvc.yaml for DVC, each tool in its own repo. Timed: the first repro (every stage
runs; a fresh repo each time, cold), a no-op repro (cold and warm), the dry run
(`datavc repro --dry-run` / `dvc status`, cold and warm), a no-op repro after `touch` of
every dependency and output, and a repro after the input changed (every stage reruns).
Every run is checked: the stages the tool reports as run, the outputs' content, and for
no-ops unchanged inodes and mtimes plus `datavc repro --json` / `dvc status --json`.
Results go to <date>-pipeline.md (or <date>-pipeline-partial.md).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pipeline as chain

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
DVC_VENV = HERE / ".venv-dvc"
RESULTS = HERE / "results"
SCENARIOS = ("add", "status", "readd", "checkout", "big")
SMALL_SCENARIOS = ("add", "status", "readd", "checkout")
HISTORY = ("diff", "diff-json", "log")
REMOTE = ("small-local", "mixed-local", "mixed-s3", "small-s3")
SLOW = ("small-s3",)
PIPELINE = ("pipeline",)
GROUPS = {"core": SCENARIOS, "history": HISTORY, "remote": REMOTE, "pipeline": PIPELINE}
MODIFIED = 10  # files rewritten between the two history commits
REPEATS = {"core": 1, "history": 5, "remote": 3, "pipeline": 3}
TOOLS = ("datavc", "dvc")
SEED = 20240601
FULL = {"files": 100_000, "size": "2G", "mixed_files": 5_000, "stages": 100}
QUICK = {"files": 2_000, "size": "64M", "mixed_files": 300, "stages": 10}
POLL_S = 0.01
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


# --------------------------------------------------------------------------- measuring


@dataclass
class Result:
    seconds: float = 0.0
    peak_tree_kib: int = 0
    max_proc_kib: int = 0
    rc: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.update(int(k) for k in fh.read().split())
    except OSError:
        pass
    return kids


def _rss_kib(pid: int) -> int | None:
    """VmRSS of pid in KiB; 0 for a zombie; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return 0


class TreeSampler:
    """Sums VmRSS over a process and every descendant it ever had that is still alive.

    Descendants stay tracked after their parent exits (reparenting), and their own new
    children are found through them.
    """

    def __init__(self, root: int) -> None:
        self.known = {root}

    def sample(self) -> int:
        todo = list(self.known)
        while todo:
            new = _children(todo.pop()) - self.known
            self.known |= new
            todo.extend(new)
        total = 0
        for pid in list(self.known):
            rss = _rss_kib(pid)
            if rss is None:
                self.known.discard(pid)
            else:
                total += rss
        return total


def _tail(path: Path, lines: int = 15, chars: int = 2000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


@dataclass
class _Exit:
    end: float = 0.0
    status: int = 0
    maxrss_kib: int = 0


def measure(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float) -> Result:
    """Run cmd; wall time, peak summed RSS of its process tree, max single-process RSS."""
    out, err = log.with_suffix(".out"), log.with_suffix(".err")
    ex = _Exit()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fo,
                                stderr=fe, start_new_session=True)

        def reap() -> None:
            _, ex.status, usage = os.wait4(proc.pid, 0)
            ex.end, ex.maxrss_kib = time.perf_counter(), usage.ru_maxrss

        waiter = threading.Thread(target=reap, daemon=True)
        waiter.start()
        peak = _sample_until_done(proc, waiter, t0, timeout)
    proc.returncode = rc = os.waitstatus_to_exitcode(ex.status)
    res = Result(seconds=ex.end - t0, peak_tree_kib=peak, max_proc_kib=ex.maxrss_kib, rc=rc)
    if rc != 0:
        res.error = f"exit code {rc}\n{_tail(err)}"
    return res


def _sample_until_done(proc: subprocess.Popen, waiter: threading.Thread, t0: float,
                       timeout: float) -> int:
    sampler, peak = TreeSampler(proc.pid), 0
    try:
        while waiter.is_alive():
            peak = max(peak, sampler.sample())
            if time.perf_counter() - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                print(f"  ! timeout after {timeout:.0f} s, killed", flush=True)
            waiter.join(POLL_S)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return peak


# --------------------------------------------------------------------------- environment


def sh(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run an untimed helper command; raise with its output if it fails."""
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (in {cwd}) failed: {res.returncode}\n"
                           f"{(res.stdout + res.stderr).strip()[-2000:]}")
    return res.stdout.strip()


def ensure_dvc() -> Path:
    dvc = DVC_VENV / "bin" / "dvc"
    if not dvc.exists():
        print(f"creating {DVC_VENV} and installing dvc from the package index ...", flush=True)
        sh([sys.executable, "-m", "venv", str(DVC_VENV)])
        sh([str(DVC_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "dvc"])
    return dvc


def find_datavc(explicit: Path | None) -> Path:
    exe = explicit or Path(sys.executable).parent / "datavc"
    if not exe.exists():
        sys.exit(f"datavc executable not found at {exe}; pass --datavc PATH or --skip-datavc")
    return exe.absolute()


def tool_env(exe: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{exe.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def version_of(exe: Path, env: dict[str, str]) -> str:
    try:
        return sh([str(exe), "--version"], env=env).splitlines()[-1]
    except (RuntimeError, OSError, IndexError) as exc:
        return f"unknown ({str(exc).splitlines()[0][:80]})"


def snapshot_datavc(rev: str, workdir: Path) -> tuple[dict[str, str], str]:
    """The datavc package as of git revision rev, unpacked (`git archive`) into the work dir
    and byte-compiled, as an installed package is.

    Returns the env entries that make the datavc executable import it (PYTHONPATH comes
    before the editable install), and a description for the report. Other engineers' edits
    in the working tree then do not leak into the timings. Without the compile, a run under
    PYTHONDONTWRITEBYTECODE would compile every datavc module from source on every command;
    DVC's modules were compiled by pip.
    """
    sha = sh(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO_ROOT)
    root = workdir / f"datavc-{sha[:12]}"
    archive = subprocess.run(["git", "archive", sha, "datavc"], cwd=REPO_ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    sh([sys.executable, "-m", "compileall", "-q", str(root / "datavc")])
    extra = {"PYTHONPATH": str(root)}
    env = tool_env(Path(sys.executable), extra)
    where = sh([sys.executable, "-c", "import datavc; print(datavc.__file__)"], cwd=workdir,
               env=env)  # not in REPO_ROOT: `-c` puts the cwd first on sys.path
    if not Path(where).is_relative_to(root):
        raise RuntimeError(f"the snapshot is not what gets imported: {where}")
    return extra, (f"{sha[:12]} ({rev}), a clean `git archive` snapshot on PYTHONPATH, "
                   "byte-compiled")


def datavc_commit() -> str:
    try:
        commit = sh(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT)
    except RuntimeError:
        commit = "no commit yet"
    dirty = sh(["git", "status", "--porcelain", "--", "datavc"], cwd=REPO_ROOT)
    return f"{commit}{' + uncommitted changes in datavc/' if dirty else ''}"


def mount_of(path: Path) -> str:
    best = ("?", "?", "?", "")
    real = str(path.resolve())
    with open("/proc/self/mounts") as fh:
        for line in fh:
            dev, mnt, fstype, opts = line.split()[:4]
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best[1]):
                best = (dev, mnt, fstype, opts)
    return f"{best[2]} on {best[0]} mounted at {best[1]} ({best[3]})"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_facts(workdir: Path) -> list[str]:
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo
                if line.startswith("model name")), platform.processor())
    return [
        f"CPU: {cpu}; nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))})",
        f"RAM: {mem_kib / 2**20:.1f} GiB",
        f"Work dir: `{workdir}`: {mount_of(workdir)}",
        f"Kernel: {platform.release()}; harness Python {platform.python_version()}",
    ]


# --------------------------------------------------------------------------- run context


@dataclass
class Tool:
    name: str
    exe: Path
    env: dict[str, str]
    init: list[list[str]]
    version: str = ""
    source: str = ""


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    tools: list[Tool]
    rows: dict[str, dict[str, Result]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # repeated rows
    drops: int = 0
    drop_failed: bool = False
    slept: int = 0
    remote: RemoteRun | None = None
    trash: list[Path] = field(default_factory=list)  # deleted after the stage's last run

    def settle(self, after_delete: bool = False) -> None:
        """sync + drop the page cache so the next command starts cold."""
        os.sync()
        try:
            DROP_CACHES.write_text("3\n")
            self.drops += 1
        except OSError:
            self.drop_failed = True
            if after_delete:
                time.sleep(60)
                self.slept += 1

    def discard(self, path: Path) -> None:
        """Set ``path`` aside (a rename) for :meth:`empty_trash`: on this ext4 (no journal),
        creating many files right after many were deleted is several times slower for
        minutes (the allocator skips inodes freed in the last 60 s, 360 s once their inode
        table block is dirty again, and rescans them for every new file; sync + drop_caches
        does not help, because the creates read those blocks back). So no timed run may
        follow a mass delete unless that is what it measures: pulls got 40-60 % slower after
        the previous clone's delete, for both tools, and the order of runs decided by how
        much."""
        if path.exists():
            aside = self.workdir / "trash" / str(len(self.trash))
            aside.parent.mkdir(exist_ok=True)
            path.rename(aside)
            self.trash.append(aside)

    def empty_trash(self) -> None:
        for path in self.trash:
            shutil.rmtree(path, ignore_errors=True)
        self.trash.clear()

    def log_path(self, row: str, tool: Tool) -> Path:
        """Stem of the command's logs: stdout goes to .out, stderr to .err."""
        return self.workdir / "logs" / f"{tool.name}-{row.replace(' ', '_')}"

    def run(self, row: str, tool: Tool, repo: Path, cmd: list[str], cold: bool = True) -> Result:
        if cold:
            self.settle()
        print(f"  {tool.name:6} {row:16} {' '.join(cmd)} ...", end=" ", flush=True)
        log = self.log_path(row, tool)
        res = measure([str(tool.exe), *cmd], repo, tool.env, log, self.args.timeout)
        print(f"{res.seconds:.2f} s, {res.peak_tree_kib / 1024:.0f} MB" if res.ok else "FAILED",
              flush=True)
        self.rows.setdefault(row, {})[tool.name] = res
        return res

    def fail(self, rows: list[str], tool: Tool, error: str) -> None:
        for row in rows:
            self.rows.setdefault(row, {})[tool.name] = Result(rc=-1, error=error)


def make_tools(args: argparse.Namespace, workdir: Path) -> list[Tool]:
    tools = []
    if not args.skip_datavc:
        exe = find_datavc(args.datavc)
        extra, source = snapshot_datavc(args.datavc_rev, workdir) if args.datavc_rev else ({}, "")
        tools.append(Tool("datavc", exe, tool_env(exe, extra), [["init"]], source=source))
    if not args.skip_dvc:
        exe = ensure_dvc()
        env = tool_env(exe, {"DVC_NO_ANALYTICS": "1",
                             "DVC_SITE_CACHE_DIR": str(workdir / "dvc-site-cache"),
                             "DVC_GLOBAL_CONFIG_DIR": str(workdir / "dvc-global-config"),
                             "DVC_SYSTEM_CONFIG_DIR": str(workdir / "dvc-system-config")})
        init = [["init", "-q"], ["config", "core.analytics", "false"],
                ["config", "core.check_update", "false"]]
        tools.append(Tool("dvc", exe, env, init))
    for tool in tools:
        tool.version = version_of(tool.exe, tool.env)
    return tools


# --------------------------------------------------------------------------- scenarios


def new_repo(bench: Bench, tool: Tool, name: str, payload: Path) -> Path:
    """Fresh git repo with the tool initialised, initial commit, and a copy of payload."""
    repo = bench.workdir / "repos" / f"{tool.name}-{name}"
    repo.mkdir(parents=True)
    sh(["git", "init", "-q"], cwd=repo)
    sh(["git", "config", "user.name", "datavc bench"], cwd=repo)
    sh(["git", "config", "user.email", "bench@example.invalid"], cwd=repo)
    for cmd in tool.init:
        sh([str(tool.exe), *cmd], cwd=repo, env=tool.env)
    sh(["git", "add", "-A"], cwd=repo)
    sh(["git", "commit", "-q", "--allow-empty", "-m", f"{tool.name} init"], cwd=repo)
    sh(["cp", "-a", str(payload), str(repo / payload.name)])
    return repo


def count_tree(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return files, size


def run_small(bench: Bench, wanted: list[str], src: Path) -> None:
    expected = count_tree(src / "data")
    repos: dict[str, Path] = {}
    for tool in bench.tools:
        try:
            repos[tool.name] = new_repo(bench, tool, "small", src / "data")
        except RuntimeError as exc:
            bench.fail(wanted, tool, f"setup failed: {exc}")
    add_row = "add" if "add" in wanted else "add (setup)"
    live = []
    for tool in (t for t in bench.tools if t.name in repos):
        bench.run(add_row, tool, repos[tool.name], ["add", "data"])
        if bench.rows[add_row][tool.name].ok:
            live.append(tool)
        else:
            bench.fail([w for w in wanted if w != "add"], tool, "not run: the add failed")
    for step, cmd in (("status", ["status"]), ("readd", ["add", "data"])):
        if step in wanted:
            _cold_and_warm(bench, live, repos, step, cmd)
    if "status" in wanted and not bench.args.skip_git:
        git_reference(bench, src / "data")
    if "checkout" in wanted:
        for tool in live:
            _checkout(bench, tool, repos[tool.name], expected, "checkout")
        for tool in live:
            _checkout(bench, tool, repos[tool.name], expected, "checkout (after rm)")
        bench.empty_trash()


def _cold_and_warm(bench: Bench, live: list[Tool], repos: dict[str, Path], step: str,
                   cmd: list[str]) -> None:
    """Each tool's cold run, then at once its warm one: the next tool's cold run drops the
    page cache, so a warm row run after it would be cold again."""
    for tool in live:
        bench.run(step, tool, repos[tool.name], cmd)
        if not bench.args.no_warm:
            bench.run(f"{step} (warm)", tool, repos[tool.name], cmd, cold=False)


GIT_ROWS = ("git status", "git status (warm)")


def git_reference(bench: Bench, payload: Path) -> None:
    """The bar the no-op status rows are read against: ``git status`` of the same files,
    committed to git in a repo of its own (untimed setup), cold and then warm. git's
    defaults otherwise (index preloading in threads, no fsmonitor, no untracked cache), but
    gc.auto=0, so no background repack of the commit's 100,000 loose objects competes with
    the timed commands. One untimed ``git status`` first lets git record the index's stat
    data as it would after any status. A run counts only if it reports no change."""
    exe = shutil.which("git")
    if exe is None:
        bench.notes.append("git status reference: not run (no git on PATH)")
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    tool = Tool("git", Path(exe), env, [["config", "gc.auto", "0"]],
                version=sh([exe, "--version"]))
    try:
        repo = new_repo(bench, tool, "small", payload)
        sh([exe, "add", payload.name], cwd=repo, env=env)
        sh([exe, "commit", "-q", "-m", "data"], cwd=repo, env=env)
        sh([exe, "status", "--porcelain"], cwd=repo, env=env)
    except RuntimeError as exc:
        bench.fail(list(GIT_ROWS), tool, f"setup failed: {exc}")
        return
    bench.notes.append(f"git status reference: {tool.version}")
    for row in GIT_ROWS[:1] if bench.args.no_warm else GIT_ROWS:
        res = bench.run(row, tool, repo, ["status", "--porcelain"], cold=row == GIT_ROWS[0])
        said = bench.log_path(row, tool).with_suffix(".out").read_text(errors="replace")
        if res.ok and said.strip():
            res.error = f"git status reported changes:\n{said[:2000]}"


def _checkout(bench: Bench, tool: Tool, repo: Path, expected: tuple[int, int],
              row: str) -> None:
    """Time ``checkout`` into an empty workspace: ``data/`` moved aside (row ``checkout``),
    or deleted right before (``checkout (after rm)``: what this disk does to any tool that
    creates 100k files right after 100k were deleted, see :meth:`Bench.discard`)."""
    if row == "checkout":
        bench.discard(repo / "data")
    else:
        sh(["rm", "-rf", str(repo / "data")])
    bench.settle(after_delete=True)
    bench.run(row, tool, repo, ["checkout"], cold=False)
    res = bench.rows[row][tool.name]
    got = count_tree(repo / "data")
    if res.ok and got != expected:
        res.error = (f"checkout exited 0 but restored {got[0]} files / {got[1]} B; "
                     f"expected {expected[0]} files / {expected[1]} B")


def run_big(bench: Bench, src: Path) -> None:
    for tool in bench.tools:
        try:
            repo = new_repo(bench, tool, "big", src / "big.bin")
        except RuntimeError as exc:
            bench.fail(["big"], tool, f"setup failed: {exc}")
            continue
        bench.run("big", tool, repo, ["add", "big.bin"])
        if bench.args.keep:
            continue
        shutil.rmtree(repo)  # free the space before the next tool copies 2 GiB


# --------------------------------------------------------------------------- history

# What each history scenario runs per tool (None: the tool has no equivalent).
HISTORY_CMDS: dict[str, dict[str, list[str] | None]] = {
    "diff": {"datavc": ["diff", "v1", "v2"], "dvc": ["diff", "v1", "v2"]},
    "diff-json": {"datavc": ["diff", "v1", "v2", "--json"], "dvc": ["diff", "--json", "v1", "v2"]},
    "log": {"datavc": ["log", "data"], "dvc": None},
}
DATA_FILE = re.compile(r"data/d\d+/f\d+\.bin")


@dataclass
class History:
    """What the history repos must report: the rewritten files and the two commits."""
    paths: list[str]
    commits: dict[str, tuple[str, str]] = field(default_factory=dict)  # tool -> (v1, v2)


def pick_modified(data: Path, count: int) -> list[str]:
    """`count` files spread evenly over the sorted tree, so over as many directories."""
    files = sorted(str(Path(d, n).relative_to(data.parent))
                   for d, _, names in os.walk(data) for n in names)
    if len(files) < count:
        raise RuntimeError(f"need at least {count} files, have {len(files)}")
    return [files[(2 * i + 1) * len(files) // (2 * count)] for i in range(count)]


def rewrite(repo: Path, paths: list[str], seed: int) -> None:
    """Give each path new seeded content, by rename: never write through a cache link."""
    for i, rel in enumerate(paths):
        rng = random.Random(f"{seed}:modify:{i}")
        target = repo / rel
        tmp = target.with_name(target.name + ".bench-tmp")
        tmp.write_bytes(rng.randbytes(rng.randint(1024, 8192)))
        os.replace(tmp, target)


def add_and_commit(tool: Tool, repo: Path, tag: str) -> str:
    sh([str(tool.exe), "add", "data"], cwd=repo, env=tool.env)
    sh(["git", "add", "-A"], cwd=repo)
    sh(["git", "commit", "-q", "-m", f"data {tag}"], cwd=repo)
    sh(["git", "tag", tag], cwd=repo)
    return sh(["git", "rev-parse", "HEAD"], cwd=repo)


def history_repo(bench: Bench, tool: Tool, src: Path, hist: History) -> Path:
    """Untimed setup: add + commit (v1), rewrite the chosen files, add + commit (v2)."""
    repo = new_repo(bench, tool, "history", src / "data")
    v1 = add_and_commit(tool, repo, "v1")
    rewrite(repo, hist.paths, bench.args.seed)
    v2 = add_and_commit(tool, repo, "v2")  # git commit fails if the pointer did not change
    hist.commits[tool.name] = (v1, v2)
    return repo


def check_history(scenario: str, tool: str, out: str, hist: History) -> str:
    """Why the output does not report exactly the rewritten files; "" when it does."""
    want = sorted(hist.paths)
    v1, v2 = hist.commits[tool]
    if scenario == "log":  # entries start with the short commit id, newest first
        got = re.findall(r"^([0-9a-f]{12})\b", out, re.MULTILINE)
        return "" if got == [v2[:12], v1[:12]] else f"log lists {got}, expected v2 then v1"
    if scenario == "diff":
        got = sorted(DATA_FILE.findall(out))
        return "" if got == want else f"diff names files {got}, expected {want}"
    try:
        doc = json.loads(out)
    except ValueError as exc:
        return f"stdout is not JSON: {exc}"
    if tool == "datavc":
        other = [c for c in doc["changes"] if c["change"] != "modified" or c["kind"] != "file"]
        got = sorted(c["path"] for c in doc["changes"] if c not in other)
        if (doc["a"], doc["b"]) != (v1, v2):
            return f"diff compared {doc['a']}..{doc['b']}, expected {v1}..{v2}"
    else:  # DVC also lists the modified directory itself, as "data/"
        other = [e for k, v in doc.items() if k != "modified" for e in v]
        got = sorted(e["path"] for e in doc.get("modified", []) if not e["path"].endswith("/"))
    if other:
        return f"unexpected changes besides the modified files: {other[:5]}"
    return "" if got == want else f"JSON names modified files {got}, expected {want}"


def warm_up(tool: Tool, repo: Path, cmd: list[str]) -> None:
    subprocess.run([str(tool.exe), *cmd], cwd=repo, env=tool.env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_history(bench: Bench, wanted: list[str], src: Path) -> None:
    hist = History(pick_modified(src / "data", MODIFIED))
    states = ["cold"] if bench.args.no_warm else ["cold", "warm"]
    rows = [s if st == "cold" else f"{s} (warm)" for s in wanted for st in states]
    repos: dict[str, Path] = {}
    for tool in bench.tools:
        try:
            repos[tool.name] = history_repo(bench, tool, src, hist)
        except RuntimeError as exc:
            bench.fail(rows, tool, f"setup failed: {exc}")
    bench.notes.append(f"Rewritten between v1 and v2: {', '.join(hist.paths)}")
    bench.notes.append(f"Load average after the untimed setup: {load()}")
    for scenario in wanted:
        live = [t for t in bench.tools
                if t.name in repos and HISTORY_CMDS[scenario][t.name] is not None]
        for state in states:
            row = scenario if state == "cold" else f"{scenario} (warm)"
            if state == "warm":
                for tool in live:
                    warm_up(tool, repos[tool.name], HISTORY_CMDS[scenario][tool.name] or [])
            _repeat(bench, live, repos, scenario, row, state == "cold", hist)


def _repeat(bench: Bench, live: list[Tool], repos: dict[str, Path], scenario: str, row: str,
            cold: bool, hist: History) -> None:
    """Run the row --repeats times per tool, alternating; keep the median of good runs."""
    runs: dict[str, list[Result]] = {t.name: [] for t in live}
    failed: dict[str, Result] = {}
    for _ in range(bench.args.repeats):
        for tool in (t for t in live if t.name not in failed):
            res = bench.run(row, tool, repos[tool.name], HISTORY_CMDS[scenario][tool.name] or [],
                            cold=cold)
            if res.ok:
                out = bench.log_path(row, tool).with_suffix(".out").read_text(errors="replace")
                res.error = check_history(scenario, tool.name, out, hist)
            if res.ok:
                runs[tool.name].append(res)
            else:
                failed[tool.name] = res
    for tool in live:
        if tool.name in failed:
            bench.rows[row][tool.name] = failed[tool.name]
            continue
        good = runs[tool.name]
        bench.times.setdefault(row, {})[tool.name] = [r.seconds for r in good]
        bench.rows[row][tool.name] = Result(
            seconds=statistics.median(r.seconds for r in good),
            peak_tree_kib=max(r.peak_tree_kib for r in good),
            max_proc_kib=max(r.max_proc_kib for r in good))


# --------------------------------------------------------------------------- remote

# Scenario -> (dataset, remote kind). The data sets: "small" is SRC/data, "mixed" SRC/mixed.
REMOTE_STAGES = {
    "small-local": ("small", "local"),
    "mixed-local": ("mixed", "local"),
    "mixed-s3": ("mixed", "s3"),
    "small-s3": ("small", "s3"),
}
PAYLOAD = {"small": "data", "mixed": "mixed"}
REMOTE_NAME = {"local": "local", "s3": "s3remote"}
BUCKET = {"datavc": "datavc-bench", "dvc": "dvc-bench"}
AWS_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
AWS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
             "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
             "AWS_ROLE_ARN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HTTP_PROXY",
             "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
CEILING_OBJECTS = {"full": 3000, "quick": 300}
MOTO_START_S = 30.0
# One request line of werkzeug's log (moto colours some of them).
MOTO_LINE = re.compile(r'"(?:\x1b\[[\d;]*m)*([A-Z]+) (\S+) HTTP/[\d.]+')


def isolated_aws_env(workdir: Path) -> dict[str, str]:
    """No route anywhere but 127.0.0.1: no proxies, instance metadata or shared AWS files."""
    return {"AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def _http(port: int, method: str, path: str, timeout: float = 60) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


class Moto:
    """moto's standalone S3 server on 127.0.0.1 (started here, stopped by its pid), with its
    request log in a file, so each timed command's requests can be counted."""

    def __init__(self, python: str, log: Path, env: dict[str, str]) -> None:
        self.python, self.log, self.env = python, log, env
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        for _ in range(3):  # a free port can be taken before moto binds it
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(
                    [self.python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env)
            deadline = time.monotonic() + MOTO_START_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    _http(self.port, "GET", "/", timeout=1)
                    return
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"moto server did not start; see {self.log}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def reset(self, buckets: list[str]) -> None:
        """Forget every bucket and object (frees moto's memory), then create `buckets`."""
        if _http(self.port, "POST", "/moto-api/reset") != 200:
            raise RuntimeError("moto reset failed")
        for bucket in buckets:  # moto accepts unsigned requests
            if _http(self.port, "PUT", f"/{bucket}") != 200:
                raise RuntimeError(f"cannot create bucket {bucket} on moto")

    def rss_mib(self) -> float:
        kib = _rss_kib(self.proc.pid) if self.proc else None
        return (kib or 0) / 1024

    def mark(self) -> int:
        return self.log.stat().st_size

    def requests(self, since: int) -> dict[str, int]:
        """Requests logged since offset `since`, by kind (PUT of a part, LIST, ...)."""
        time.sleep(0.2)  # werkzeug logs a request right after answering it
        with open(self.log, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace")
        counts: dict[str, int] = {}
        for method, path in MOTO_LINE.findall(text):
            kind = method
            if method == "GET" and ("list-type=" in path or path.rstrip("/").count("/") < 2):
                kind = "LIST"
            elif method == "PUT" and "partNumber=" in path:
                kind = "PUT part"
            elif method == "POST" and "upload" in path.lower():  # ?uploads, ?uploadId=
                kind = "POST mpu"
            counts[kind] = counts.get(kind, 0) + 1
        return counts


@dataclass
class Transfer:
    """What one timed push/pull moved: objects as the tool counts them, requests to moto."""
    objects: int = 0
    requests: dict[str, int] = field(default_factory=dict)


def tree_digest(root: Path) -> tuple[int, int, str]:
    """Files, bytes and a SHA-256 over (path, SHA-256 of content) of every file, sorted."""
    entries = sorted(os.path.relpath(os.path.join(d, n), root)
                     for d, _, names in os.walk(root) for n in names)
    outer, size = hashlib.sha256(), 0
    for rel in entries:
        with open(root / rel, "rb") as fh:
            inner = hashlib.file_digest(fh, "sha256")
            size += fh.tell()
        outer.update(rel.encode("utf-8", "surrogateescape") + b"\0" + inner.digest())
    return len(entries), size, outer.hexdigest()


def remote_cmds(tool: str, kind: str, where: str, moto: Moto | None) -> list[list[str]]:
    """Configure remote REMOTE_NAME[kind] in a repo (tracked config: the clone inherits it)."""
    name = REMOTE_NAME[kind]
    if kind == "local":
        return [["remote", "add", name, where, "--default"] if tool == "datavc"
                else ["remote", "add", "-d", name, where]]
    assert moto is not None
    key = "endpoint_url" if tool == "datavc" else "endpointurl"
    return [["remote", "add", name, where], ["remote", "modify", name, key, moto.url]]


def local_creds(tool: str) -> list[list[str]]:
    """datavc's S3 credentials, in the git-ignored config.local.toml of each repo and clone;
    DVC takes them from AWS_* variables."""
    if tool != "datavc":
        return []
    return [["remote", "modify", REMOTE_NAME["s3"], "--local", k, v]
            for k, v in (("access_key_id", "testing"), ("secret_access_key", "testing"))]


def push_pull_cmd(tool: str, op: str, kind: str) -> list[str]:
    cmd = [op, "-r", REMOTE_NAME[kind]]
    return [*cmd, "--json"] if tool == "datavc" else cmd


def check_transfer(tool: str, op: str, out: str, nfiles: int) -> tuple[int, str]:
    """(objects moved, "" or why the run does not count) from the command's stdout."""
    if tool == "datavc":
        try:
            doc = json.loads(out)
        except ValueError as exc:
            return 0, f"stdout is not JSON: {exc}"
        bad = {k: doc[k] for k in ("missing", "corrupt") if doc.get(k)}
        if bad or doc.get("present"):
            return 0, f"not a full transfer: present {doc.get('present')}, {bad}"
        moved = int(doc["transferred"])
    else:
        verb = "pushed" if op == "push" else "fetched"
        match = re.search(rf"(\d+) files? {verb}", out)
        if not match:
            return 0, f"no '{verb}' count in DVC's output: {out.strip()[-300:]!r}"
        moved = int(match.group(1))
    if moved < nfiles:
        return moved, f"moved {moved} objects, fewer than the {nfiles} files"
    return moved, ""


@dataclass
class RemoteRun:
    """State of the remote group: the origin repos per (tool, dataset), the source trees'
    digests, the moto server, and what every timed run moved."""
    bench: Bench
    src: Path
    moto: Moto | None = None
    origins: dict[tuple[str, str], Path] = field(default_factory=dict)
    digests: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    moved: dict[str, dict[str, Transfer]] = field(default_factory=dict)  # row -> tool ->
    ceilings: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> raw rates
    clones: int = 0
    def remote_dir(self, tool: str, dataset: str) -> Path:
        return self.bench.workdir / "remotes" / f"{tool}-{dataset}"

    def where(self, tool: str, dataset: str, kind: str) -> str:
        if kind == "local":
            return str(self.remote_dir(tool, dataset))
        return f"s3://{BUCKET[tool]}/{dataset}"


def run_remote(bench: Bench, wanted: list[str], src: Path) -> None:
    rr = RemoteRun(bench, src)
    aws = isolated_aws_env(bench.workdir)
    for tool in bench.tools:
        for key in AWS_UNSET:
            tool.env.pop(key, None)
        tool.env.update(aws | (AWS_KEYS if tool.name == "dvc" else {}))
    datasets = list(dict.fromkeys(REMOTE_STAGES[s][0] for s in wanted))
    for dataset in datasets:
        rr.digests[dataset] = tree_digest(src / PAYLOAD[dataset])
    try:
        if any(REMOTE_STAGES[s][1] == "s3" for s in wanted):
            try:
                start_moto(rr, aws)
            except (RuntimeError, OSError) as exc:
                s3 = [s for s in wanted if REMOTE_STAGES[s][1] == "s3"]
                for tool in bench.tools:
                    bench.fail([f"{s} {op}" for s in s3 for op in ("push", "pull")], tool,
                               f"no S3 server: {exc}")
                wanted = [s for s in wanted if s not in s3]
        for dataset in datasets:
            kinds = [REMOTE_STAGES[s][1] for s in wanted if REMOTE_STAGES[s][0] == dataset]
            for tool in bench.tools:
                setup_origin(rr, tool, dataset, kinds)
        bench.notes.append(f"Load average after the untimed setup (adds): {load()}")
        for stage in wanted:
            run_stage(rr, stage)
    finally:
        if rr.moto is not None:
            rr.moto.stop()
    bench.remote = rr


def start_moto(rr: RemoteRun, aws: dict[str, str]) -> None:
    bench = rr.bench
    python = str(bench.args.moto_python)
    env = {k: v for k, v in os.environ.items() if k not in AWS_UNSET} | aws | AWS_KEYS
    rr.moto = Moto(python, bench.workdir / "logs" / "moto.log", env)
    rr.moto.start()
    version = sh([python, "-c", "import moto; print(moto.__version__)"], env=env)
    bench.notes.append(f"S3: moto {version} standalone server (`python -m moto.server -H "
                       f"127.0.0.1`, pid {rr.moto.proc.pid if rr.moto.proc else '?'}) on the "
                       "same 2 cores; each tool has its own bucket, `s3://BUCKET/<dataset>`")
    if not bench.args.no_ceiling:
        n = CEILING_OBJECTS["quick" if bench.args.quick else "full"]
        bench.notes.append(
            f"Raw boto3 ceiling of the moto server, measured right before the pushes and "
            f"again before the pulls of every S3 scenario (`benchmarks/s3ceiling.py`: {n:,} "
            "objects of 4 KiB PUT, then GET, 16 threads, one client, into a bucket of its own)"
            ": see the last two columns of the second table")


def measure_ceiling(rr: RemoteRun, row: str) -> None:
    """The server's raw boto3 PUT/s and GET/s now, under the load of the moment."""
    bench, moto = rr.bench, rr.moto
    if bench.args.no_ceiling or moto is None:
        return
    n = CEILING_OBJECTS["quick" if bench.args.quick else "full"]
    bucket = f"ceiling-{len(rr.ceilings)}"
    try:
        out = sh([moto.python, str(HERE / "s3ceiling.py"), "--endpoint", moto.url, "--bucket",
                  bucket, "--objects", str(n), "--size", "4096", "--jobs", "16"], env=moto.env)
        got = json.loads(out)
    except (RuntimeError, ValueError) as exc:
        bench.notes.append(f"{row}: the ceiling measurement failed: {str(exc)[:300]}")
        return
    got["load"] = os.getloadavg()[0]
    rr.ceilings[row] = got
    print(f"  ceiling before {row}: {got['put_per_s']:.0f} PUT/s, {got['get_per_s']:.0f} GET/s, "
          f"load {load()}", flush=True)


def setup_origin(rr: RemoteRun, tool: Tool, dataset: str, kinds: list[str]) -> None:
    """Untimed: a repo with the dataset added, its remotes configured, all committed."""
    bench = rr.bench
    try:
        repo = new_repo(bench, tool, dataset, rr.src / PAYLOAD[dataset])
        sh([str(tool.exe), "add", PAYLOAD[dataset]], cwd=repo, env=tool.env)
        for kind in dict.fromkeys(kinds):
            for cmd in remote_cmds(tool.name, kind, rr.where(tool.name, dataset, kind), rr.moto):
                sh([str(tool.exe), *cmd], cwd=repo, env=tool.env)
            if kind == "s3":
                for cmd in local_creds(tool.name):
                    sh([str(tool.exe), *cmd], cwd=repo, env=tool.env)
        sh(["git", "add", "-A"], cwd=repo)
        sh(["git", "commit", "-q", "-m", f"{dataset} data, remotes"], cwd=repo)
        if sh(["git", "status", "--porcelain"], cwd=repo):
            raise RuntimeError(f"{repo} is not clean after the commit")
    except RuntimeError as exc:
        stages = [s for s, (d, _) in REMOTE_STAGES.items() if d == dataset]
        bench.fail([f"{s} {op}" for s in stages for op in ("push", "pull")], tool,
                   f"setup failed: {exc}")
        return
    rr.origins[(tool.name, dataset)] = repo


def wipe_remotes(rr: RemoteRun, dataset: str, kind: str, tools: list[Tool]) -> None:
    if kind == "s3":
        assert rr.moto is not None
        rr.moto.reset([BUCKET[t.name] for t in tools])
    else:
        for tool in tools:
            rr.bench.discard(rr.remote_dir(tool.name, dataset))
    rr.bench.settle()


def timed(rr: RemoteRun, row: str, tool: Tool, repo: Path, op: str, kind: str,
          nfiles: int) -> Result:
    """One cold push or pull; counts moto's requests; checks what the tool says it moved."""
    bench = rr.bench
    since = rr.moto.mark() if kind == "s3" and rr.moto else 0
    bench.settle()
    res = bench.run(row, tool, repo, push_pull_cmd(tool.name, op, kind), cold=False)
    moved = Transfer()
    if kind == "s3" and rr.moto:
        moved.requests = rr.moto.requests(since)
    if res.ok:
        out = bench.log_path(row, tool).with_suffix(".out").read_text(errors="replace")
        moved.objects, res.error = check_transfer(tool.name, op, out, nfiles)
    rr.moved.setdefault(row, {})[tool.name] = moved
    return res


def fresh_clone(rr: RemoteRun, tool: Tool, dataset: str, kind: str) -> Path:
    """Untimed: `git clone` of the origin repo (data and cache not included) plus, for
    datavc on S3, the credentials in the clone's own config.local.toml."""
    rr.clones += 1
    clone = rr.bench.workdir / "clones" / f"{tool.name}-{dataset}-{kind}-{rr.clones}"
    clone.parent.mkdir(exist_ok=True)
    sh(["git", "clone", "-q", str(rr.origins[(tool.name, dataset)]), str(clone)])
    if kind == "s3":
        for cmd in local_creds(tool.name):
            sh([str(tool.exe), *cmd], cwd=clone, env=tool.env)
    return clone


def run_stage(rr: RemoteRun, stage: str) -> None:
    bench = rr.bench
    dataset, kind = REMOTE_STAGES[stage]
    live = [t for t in bench.tools if (t.name, dataset) in rr.origins]
    repeats = 1 if stage in SLOW else bench.args.repeats
    expected = rr.digests[dataset]
    print(f"{stage}: {repeats} run(s) per tool, load {load()}", flush=True)
    bench.notes.append(f"{stage}: load average before it {load()}")
    runs: dict[str, dict[str, list[Result]]] = {}
    failed: dict[str, dict[str, Result]] = {}
    for op in ("push", "pull"):
        row = f"{stage} {op}"
        runs[op] = {t.name: [] for t in live}
        failed[op] = {}
        if kind == "s3":
            measure_ceiling(rr, row)
        for _ in range(repeats):
            if op == "push":
                wipe_remotes(rr, dataset, kind, live)
            for tool in (t for t in live if t.name not in failed[op]):
                if op == "pull" and tool.name in failed["push"]:
                    failed[op][tool.name] = Result(rc=-1, error="not run: the push failed")
                    continue
                res = one_run(rr, row, tool, op, dataset, kind, expected)
                (runs[op][tool.name].append(res) if res.ok
                 else failed[op].__setitem__(tool.name, res))
        for tool in live:
            if tool.name in failed[op]:
                bench.rows.setdefault(row, {})[tool.name] = failed[op][tool.name]
                continue
            good = runs[op][tool.name]
            bench.times.setdefault(row, {})[tool.name] = [r.seconds for r in good]
            bench.rows.setdefault(row, {})[tool.name] = Result(
                seconds=statistics.median(r.seconds for r in good),
                peak_tree_kib=max(r.peak_tree_kib for r in good),
                max_proc_kib=max(r.max_proc_kib for r in good))
    if rr.moto and kind == "s3":
        bench.notes.append(f"{stage}: moto server RSS at the end {rr.moto.rss_mib():,.0f} MiB")
        rr.moto.reset([])
    if not bench.args.keep:
        for tool in live:
            rr.bench.discard(rr.remote_dir(tool.name, dataset))
    rr.bench.empty_trash()
    bench.settle(after_delete=True)


def one_run(rr: RemoteRun, row: str, tool: Tool, op: str, dataset: str, kind: str,
            expected: tuple[int, int, str]) -> Result:
    if op == "push":
        return timed(rr, row, tool, rr.origins[(tool.name, dataset)], op, kind, expected[0])
    try:
        clone = fresh_clone(rr, tool, dataset, kind)
    except RuntimeError as exc:
        return Result(rc=-1, error=f"clone failed: {exc}")
    res = timed(rr, row, tool, clone, op, kind, expected[0])
    if res.ok:
        got = tree_digest(clone / PAYLOAD[dataset])
        if got != expected:
            res.error = (f"pulled tree differs: {got[0]} files / {got[1]} B / sha256 "
                         f"{got[2][:16]}, expected {expected[0]} / {expected[1]} / "
                         f"{expected[2][:16]}")
    if not rr.bench.args.keep:
        rr.bench.discard(clone)  # deleted after the stage: no timed run follows a mass delete
    return res


# --------------------------------------------------------------------------- pipeline

# Row -> what each tool runs; every row runs --repeats times per tool, the tools alternating.
REPRO = {"datavc": ["repro"], "dvc": ["repro"]}
DRY_RUN = {"datavc": ["repro", "--dry-run"], "dvc": ["status"]}
PIPELINE_CMDS = {"first": REPRO, "noop": REPRO, "dry-run": DRY_RUN, "touch": REPRO,
                 "change": REPRO}
JSON_STATUS = {"datavc": ["repro", "--json"], "dvc": ["status", "--json"]}
TOUCH_SETTLE_S = 1.0  # between the touch and the timed repro


@dataclass
class PipelineRun:
    """The chain, the payload with its input, each tool's current repo, the rows' loads."""
    bench: Bench
    stages: list[chain.Stage]
    payload: Path
    repos: dict[str, Path] = field(default_factory=dict)
    loads: dict[str, float] = field(default_factory=dict)
    made: int = 0


Check = Callable[[Tool, Path, str, dict[str, tuple[int, int]]], str]
Prepare = Callable[[Tool, int], Path]


def run_pipeline(bench: Bench) -> None:
    args = bench.args
    stages = chain.linear(args.stages)
    payload = bench.workdir / "src" / "pipeline"
    chain.write_input(payload, args.seed)
    pr = PipelineRun(bench, stages, payload)
    for tool in bench.tools:  # both run `cp` through /bin/sh -c; trust.json in the work dir
        tool.env.update(SHELL="/bin/sh", XDG_CONFIG_HOME=str(bench.workdir / "xdg-config"))
    bench.notes.append(f"Pipeline: {len(stages)} stages in a chain, {chain.INPUT} of "
                       f"{len(chain.input_bytes(args.seed, 0)):,} B copied along it "
                       f"(`{stages[0].cmd}`, ..., `{stages[-1].cmd}`); both tools run each "
                       "command with `/bin/sh -c` (datavc: `shell = true`; DVC: `$SHELL -c`, "
                       "SHELL=/bin/sh)")
    live = _pipeline_rows(pr, "first", bench.tools, cold=True,
                          prepare=lambda tool, _: pipeline_repo(pr, tool), check=_ran_check(pr))
    noop = _noop_check(pr)
    states = ["cold"] if args.no_warm else ["cold", "warm"]
    later = [row for row in PIPELINE_LABELS if row != "first"
             and not (args.no_warm and row.endswith("(warm)"))]
    for tool in bench.tools:
        if tool not in live:
            bench.fail(later, tool, "not run: the first repro failed")
    for key in ("noop", "dry-run"):
        for state in states:
            _pipeline_rows(pr, key if state == "cold" else f"{key} (warm)", live,
                           cold=state == "cold", prepare=_current(pr, key, warm=state == "warm"),
                           check=noop)
    _pipeline_rows(pr, "touch", live, cold=False, prepare=_touched(pr), check=noop)
    _pipeline_rows(pr, "change", live, cold=False, prepare=_changed(pr), check=_ran_check(pr))
    bench.notes.append("Load average (1 min) right before each row: " + ", ".join(
        f"{row} {value:.2f}" for row, value in pr.loads.items()))


def pipeline_repo(pr: PipelineRun, tool: Tool) -> Path:
    """Untimed: a fresh repo with the input, out/ and the pipeline file committed, and for
    datavc the pipeline trusted."""
    pr.made += 1
    repo = new_repo(pr.bench, tool, f"pipeline-{pr.made}", pr.payload / "data")
    chain.write_pipeline(repo, tool.name, pr.stages)
    sh(["git", "add", "-A"], cwd=repo)
    sh(["git", "commit", "-q", "-m", f"{len(pr.stages)}-stage pipeline"], cwd=repo)
    if tool.name == "datavc":
        sh([str(tool.exe), "trust"], cwd=repo, env=tool.env)
    pr.repos[tool.name] = repo
    return repo


def _current(pr: PipelineRun, key: str, *, warm: bool) -> Prepare:
    """The tool's repo as it is; for a warm row, one untimed run of the row's command first."""
    def prepare(tool: Tool, k: int) -> Path:
        repo = pr.repos[tool.name]
        if warm and k == 0:
            warm_up(tool, repo, PIPELINE_CMDS[key][tool.name])
        return repo
    return prepare


def _touched(pr: PipelineRun) -> Prepare:
    def prepare(tool: Tool, k: int) -> Path:
        repo = pr.repos[tool.name]
        chain.touch_all(repo, pr.stages)
        time.sleep(TOUCH_SETTLE_S)
        return repo
    return prepare


def _changed(pr: PipelineRun) -> Prepare:
    """New input content for repeat k, the same for both tools and never seen before."""
    def prepare(tool: Tool, k: int) -> Path:
        repo = pr.repos[tool.name]
        chain.write_input(repo, pr.bench.args.seed, version=k + 1)
        return repo
    return prepare


def _ran_check(pr: PipelineRun) -> Check:
    def check(tool: Tool, repo: Path, out: str, before: dict[str, tuple[int, int]]) -> str:
        return (chain.check_ran(tool.name, out, pr.stages)
                or chain.check_outputs(repo, pr.stages))
    return check


def _noop_check(pr: PipelineRun) -> Check:
    """Nothing ran: stdout says so, no dependency or output was rewritten or replaced, the
    outputs are still copies of the input, and the tool's JSON status agrees (untimed)."""
    def check(tool: Tool, repo: Path, out: str, before: dict[str, tuple[int, int]]) -> str:
        error = (chain.check_noop(tool.name, out, pr.stages)
                 or chain.check_unchanged(before, chain.snapshot(repo, pr.stages))
                 or chain.check_outputs(repo, pr.stages))
        if error:
            return error
        try:
            status = sh([str(tool.exe), *JSON_STATUS[tool.name]], cwd=repo, env=tool.env)
        except RuntimeError as exc:
            return f"{' '.join(JSON_STATUS[tool.name])} failed: {exc}"
        return chain.check_json_noop(tool.name, status, pr.stages)
    return check


def _pipeline_rows(pr: PipelineRun, row: str, live: list[Tool], *, cold: bool,
                   prepare: Prepare, check: Check) -> list[Tool]:
    """Run the row --repeats times per tool, alternating, each run prepared (untimed) and
    checked; keep the median of the good runs. Returns the tools none of whose runs failed."""
    bench = pr.bench
    key = row.split()[0]
    pr.loads[row] = os.getloadavg()[0]
    runs: dict[str, list[Result]] = {t.name: [] for t in live}
    failed: dict[str, Result] = {}
    for k in range(bench.args.repeats):
        for tool in (t for t in live if t.name not in failed):
            try:
                repo = prepare(tool, k)
            except (RuntimeError, OSError) as exc:
                failed[tool.name] = Result(rc=-1, error=f"setup failed: {exc}")
                continue
            before = chain.snapshot(repo, pr.stages)
            res = bench.run(row, tool, repo, PIPELINE_CMDS[key][tool.name], cold=cold)
            if res.ok:
                out = bench.log_path(row, tool).with_suffix(".out").read_text(errors="replace")
                res.error = check(tool, repo, out, before)
            if res.ok:
                runs[tool.name].append(res)
            else:
                failed[tool.name] = res
    _summarise(bench, row, live, runs, failed)
    return [t for t in live if t.name not in failed]


def _summarise(bench: Bench, row: str, live: list[Tool], runs: dict[str, list[Result]],
               failed: dict[str, Result]) -> None:
    """The row's result per tool: its failure, or the median time of its good runs and the
    highest memory over them."""
    for tool in live:
        if tool.name in failed:
            bench.rows.setdefault(row, {})[tool.name] = failed[tool.name]
            continue
        good = runs[tool.name]
        bench.times.setdefault(row, {})[tool.name] = [r.seconds for r in good]
        bench.rows.setdefault(row, {})[tool.name] = Result(
            seconds=statistics.median(r.seconds for r in good),
            peak_tree_kib=max(r.peak_tree_kib for r in good),
            max_proc_kib=max(r.max_proc_kib for r in good))


# --------------------------------------------------------------------------- data


def gen_command(args: argparse.Namespace, src: Path, dataset: str) -> list[str]:
    cmd = [sys.executable, str(HERE / "generate.py"), "--out", str(src), "--seed",
           str(args.seed), "--dataset", dataset]
    if dataset == "mixed":
        return [*cmd, "--mixed-files", str(args.mixed_files), "--mixed-dirs", "50"]
    return [*cmd, "--files", str(args.files), "--dirs", "100", "--min-size", "1024",
            "--max-size", "8192", "--size", args.size]


def generate(bench: Bench, wanted: list[str]) -> Path:
    src = bench.workdir / "src"
    remote = [REMOTE_STAGES[s][0] for s in wanted if s in REMOTE_STAGES]
    need_small = any(s in wanted for s in (*SMALL_SCENARIOS, *HISTORY)) or "small" in remote
    need_big = "big" in wanted
    need_mixed = "mixed" in remote
    datasets = ["all"] if need_small and need_big else (
        ["small"] if need_small else ["big"] if need_big else [])
    for dataset in [*datasets, *(["mixed"] if need_mixed else [])]:
        cmd = gen_command(bench.args, src, dataset)
        t0 = time.perf_counter()
        print(sh(cmd), flush=True)
        shown = " ".join(["python", "benchmarks/generate.py", *cmd[2:]]).replace(str(src),
                                                                                 "SRC")
        bench.notes.append(f"Generator: `{shown}` ({time.perf_counter() - t0:.1f} s)")
    if need_mixed:
        files, size = count_tree(src / "mixed")
        sizes = sorted(os.lstat(os.path.join(d, n)).st_size
                       for d, _, names in os.walk(src / "mixed") for n in names)
        bench.notes.append(f"mixed: {files:,} files in 50 dirs, {size / 2**30:.3f} GiB; sizes "
                           f"{sizes[0]:,} B to {sizes[-1] / 2**20:.0f} MiB, median "
                           f"{sizes[len(sizes) // 2] / 1024:.0f} KiB; over 16 MiB (multipart "
                           f"uploads for datavc): {sum(x > 16 << 20 for x in sizes)}")
    if need_small:
        files, size = count_tree(src / "data")
        bench.notes.append(f"small: {files:,} files in 100 dirs, sizes uniform in "
                           f"[1024, 8192] B, total {size / 2**20:.1f} MiB")
    if need_big:
        bench.notes.append(f"big: 1 file, {(src / 'big.bin').stat().st_size / 2**30:.3f} GiB")
    return src


# --------------------------------------------------------------------------- report

LABELS = {
    "add": "a. add {files} small files (cold)",
    "status": "b. no-op status (cold)",
    "status (warm)": "b. no-op status (warm)",
    "readd": "c. re-add, nothing changed (cold)",
    "readd (warm)": "c. re-add, nothing changed (warm)",
    "checkout": "d. checkout into empty workspace (cold)",
    "checkout (after rm)": "d. checkout right after `rm -rf data` (cold)",
    "big": "e. add one {size} file (cold)",
}


HISTORY_LABELS = {
    "diff": "a. `diff v1 v2` (cold)",
    "diff (warm)": "a. `diff v1 v2` (warm)",
    "diff-json": "b. `diff v1 v2 --json` (cold)",
    "diff-json (warm)": "b. `diff v1 v2 --json` (warm)",
    "log": "c. `log data` (cold)",
    "log (warm)": "c. `log data` (warm)",
}


REMOTE_LABELS = {
    "small-local push": "a. push {files} small files to a directory remote (cold)",
    "small-local pull": "a. pull them into a fresh clone, from the directory (cold)",
    "mixed-local push": "b. push {mixed} mixed files, {mixed_size}, to a directory remote (cold)",
    "mixed-local pull": "b. pull them into a fresh clone, from the directory (cold)",
    "mixed-s3 push": "c. push the {mixed} mixed files to S3 (moto) (cold)",
    "mixed-s3 pull": "c. pull them into a fresh clone, from S3 (cold)",
    "small-s3 push": "d. push the {files} small files to S3 (moto) (cold)",
    "small-s3 pull": "d. pull them into a fresh clone, from S3 (cold)",
}
PIPELINE_LABELS = {
    "first": "a. first `repro`: all {stages} stages run (fresh repo, cold)",
    "noop": "b. no-op `repro`, nothing changed (cold)",
    "noop (warm)": "b. no-op `repro`, nothing changed (warm)",
    "dry-run": "c. `repro --dry-run` / `dvc status`, nothing changed (cold)",
    "dry-run (warm)": "c. `repro --dry-run` / `dvc status`, nothing changed (warm)",
    "touch": "d. no-op `repro` after `touch` of all {files} deps and outputs (warm)",
    "change": "e. `repro` after the input changed: all {stages} stages rerun (warm)",
}
NOOP_TARGET = 10.0  # the issue's goal: datavc's no-op repro at least 10x faster than DVC's
REQUEST_KINDS = ("PUT", "PUT part", "POST mpu", "HEAD", "GET", "LIST", "DELETE")


def _secs(res: Result | None) -> str:
    if res is None:
        return "skipped"
    if res.ok:
        return f"{res.seconds:.2f}"
    return f"FAILED (rc {res.rc})" if res.rc else "FAILED (wrong result)"


def _mb(res: Result | None, kib: str) -> str:
    return f"{getattr(res, kib) / 1024:.0f}" if res and res.ok else "–"


def _ratio(a: Result | None, b: Result | None) -> str:
    if a and b and a.ok and b.ok and a.seconds > 0:
        return f"{b.seconds / a.seconds:.2f}×"
    return "–"


def _spread(bench: Bench, row: str, tool: str) -> str:
    times = bench.times.get(row, {}).get(tool)
    return f"{min(times):.2f}–{max(times):.2f}" if times else "–"


def pipeline_table(bench: Bench) -> list[str]:
    lines = ["| scenario | datavc s | DVC s | ratio (DVC/datavc) | datavc peak RSS MB "
             "| DVC peak RSS MB | datavc max proc MB | DVC max proc MB | datavc min–max s "
             "| DVC min–max s |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    n = bench.args.stages
    for row, label in PIPELINE_LABELS.items():
        if row not in bench.rows:
            continue
        a, b = bench.rows[row].get("datavc"), bench.rows[row].get("dvc")
        lines.append(f"| {label.format(stages=n, files=n + 1)} | {_secs(a)} | {_secs(b)} "
                     f"| {_ratio(a, b)} | {_mb(a, 'peak_tree_kib')} | {_mb(b, 'peak_tree_kib')} "
                     f"| {_mb(a, 'max_proc_kib')} | {_mb(b, 'max_proc_kib')} "
                     f"| {_spread(bench, row, 'datavc')} | {_spread(bench, row, 'dvc')} |")
    return [*lines, "", *noop_target(bench)]


def noop_target(bench: Bench) -> list[str]:
    """Whether datavc's no-op repro met the target ratio, per cache state."""
    out = []
    for row in ("noop (warm)", "noop"):
        a, b = bench.rows.get(row, {}).get("datavc"), bench.rows.get(row, {}).get("dvc")
        if a and b and a.ok and b.ok:
            ratio = b.seconds / a.seconds
            out.append(f"No-op `repro` ({'warm' if 'warm' in row else 'cold'}): DVC/datavc "
                       f"{ratio:.2f}×; target ≥ {NOOP_TARGET:.0f}×: "
                       f"{'met' if ratio >= NOOP_TARGET else 'missed'}.")
    return [" ".join(out)] if out else []


def history_table(bench: Bench) -> list[str]:
    lines = ["| scenario | datavc s | DVC s | ratio (DVC/datavc) | datavc peak RSS MB "
             "| DVC peak RSS MB | datavc max proc MB | DVC max proc MB | datavc min–max s "
             "| DVC min–max s |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row, label in HISTORY_LABELS.items():
        if row not in bench.rows:
            continue
        a, b = bench.rows[row].get("datavc"), bench.rows[row].get("dvc")
        none = HISTORY_CMDS[row.split()[0]]["dvc"] is None and "dvc" in bench.args.tools
        dvc_s = "no equivalent" if none else _secs(b)
        lines.append(f"| {label} | {_secs(a)} | {dvc_s} | {_ratio(a, b)} "
                     f"| {_mb(a, 'peak_tree_kib')} | {_mb(b, 'peak_tree_kib')} "
                     f"| {_mb(a, 'max_proc_kib')} | {_mb(b, 'max_proc_kib')} "
                     f"| {_spread(bench, row, 'datavc')} | {_spread(bench, row, 'dvc')} |")
    return lines


def remote_table(bench: Bench) -> list[str]:
    rr = bench.remote
    lines = ["| scenario | datavc s | DVC s | ratio (DVC/datavc) | datavc peak RSS MB "
             "| DVC peak RSS MB | datavc max proc MB | DVC max proc MB | datavc min–max s "
             "| DVC min–max s | runs |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    mixed = rr.digests.get("mixed", (0, 0, "")) if rr else (0, 0, "")
    for row, label in REMOTE_LABELS.items():
        if row not in bench.rows:
            continue
        a, b = bench.rows[row].get("datavc"), bench.rows[row].get("dvc")
        runs = 1 if row.split()[0] in SLOW else bench.args.repeats
        text = label.format(files=f"{bench.args.files:,}", mixed=f"{mixed[0]:,}",
                            mixed_size=f"{mixed[1] / 2**30:.2f} GiB")
        lines.append(f"| {text} | {_secs(a)} | {_secs(b)} | {_ratio(a, b)} "
                     f"| {_mb(a, 'peak_tree_kib')} | {_mb(b, 'peak_tree_kib')} "
                     f"| {_mb(a, 'max_proc_kib')} | {_mb(b, 'max_proc_kib')} "
                     f"| {_spread(bench, row, 'datavc')} | {_spread(bench, row, 'dvc')} "
                     f"| {runs} |")
    return lines


def transfer_table(bench: Bench) -> list[str]:
    """Objects moved and, for S3, the requests moto logged, per tool and row."""
    rr = bench.remote
    if rr is None or not rr.moved:
        return []
    lines = ["| row | tool | objects moved | objects/s | S3 requests | requests per file "
             "| requests/s | raw boto3 ceiling then (load) | objects/s vs ceiling |",
             "|---|---|--:|--:|---|--:|--:|--:|--:|"]
    for row in REMOTE_LABELS:
        stage = row.split()[0]
        dataset = REMOTE_STAGES[stage][0] if stage in REMOTE_STAGES else None
        nfiles = rr.digests[dataset][0] if dataset in rr.digests else 0  # rows not run: 0
        for tool, moved in rr.moved.get(row, {}).items():
            res = bench.rows.get(row, {}).get(tool)
            if res is None or not res.ok or not nfiles:
                continue
            total = sum(moved.requests.values())
            kinds = ", ".join(f"{k} {moved.requests[k]:,}" for k in
                              sorted(moved.requests, key=lambda k: (
                                  REQUEST_KINDS.index(k) if k in REQUEST_KINDS else 99, k)))
            s3 = REMOTE_STAGES[stage][1] == "s3"
            ceiling, vs = "–", "–"
            if s3 and row in rr.ceilings:
                c = rr.ceilings[row]
                verb = "PUT" if row.endswith("push") else "GET"
                rate = c[f"{verb.lower()}_per_s"]
                ceiling = f"{rate:,.0f} {verb}/s ({c['load']:.1f})"
                vs = f"{moved.objects / res.seconds / rate:.0%}"
            lines.append(f"| {row} | {tool} | {moved.objects:,} "
                         f"| {moved.objects / res.seconds:,.0f} | {kinds if s3 else '–'} "
                         f"| {f'{total / nfiles:.3f}' if s3 else '–'} "
                         f"| {f'{total / res.seconds:,.0f}' if s3 else '–'} | {ceiling} | {vs} |")
    return lines


def table(bench: Bench) -> list[str]:
    lines = ["| scenario | datavc s | DVC s | ratio (DVC/datavc) | datavc peak RSS MB "
             "| DVC peak RSS MB | datavc max proc MB | DVC max proc MB |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for row in LABELS:
        if row not in bench.rows:
            continue
        a, b = bench.rows[row].get("datavc"), bench.rows[row].get("dvc")
        label = LABELS[row].format(files=f"{bench.args.files:,}", size=bench.args.size)
        lines.append(f"| {label} | {_secs(a)} | {_secs(b)} | {_ratio(a, b)} "
                     f"| {_mb(a, 'peak_tree_kib')} | {_mb(b, 'peak_tree_kib')} "
                     f"| {_mb(a, 'max_proc_kib')} | {_mb(b, 'max_proc_kib')} |")
    return lines


def git_table(bench: Bench) -> list[str]:
    """The ``git status`` reference beside datavc's and DVC's no-op status."""
    if not any(row in bench.rows for row in GIT_ROWS):
        return []
    lines = ["", f"Reference, the bar for b: `git status --porcelain` of the same "
             f"{bench.args.files:,} files, committed to git (see Setup).", "",
             "| cache | git s | datavc status s | DVC status s | git/datavc | DVC/git "
             "| git max proc MB |", "|---|--:|--:|--:|--:|--:|--:|"]
    for row, ours in zip(GIT_ROWS, ("status", "status (warm)"), strict=True):
        g = bench.rows.get(row, {}).get("git")
        a, b = bench.rows.get(ours, {}).get("datavc"), bench.rows.get(ours, {}).get("dvc")
        lines.append(f"| {'warm' if 'warm' in row else 'cold'} | {_secs(g)} | {_secs(a)} "
                     f"| {_secs(b)} | {_ratio(a, g)} | {_ratio(g, b)} "
                     f"| {_mb(g, 'max_proc_kib')} |")
    return lines


def failures(bench: Bench) -> list[str]:
    out = []
    for row, by_tool in bench.rows.items():
        for name, res in by_tool.items():
            if not res.ok:
                out += [f"### {name}: {row}", "", "```", res.error, "```", ""]
    return ["## Failures", "", *out] if out else []


def cache_note(bench: Bench) -> str:
    if bench.args.group == "pipeline" and not bench.drop_failed:
        return (f"cold rows: `sync` + `echo 3 > /proc/sys/vm/drop_caches` before every run "
                f"({bench.drops} drops), which also evicts each tool's own Python code. Warm "
                "rows: one untimed run per tool first (b, c), or right after other runs "
                "(d, e), no drops.")
    if bench.args.group == "remote" and not bench.drop_failed:
        return (f"cold: `sync` + `echo 3 > /proc/sys/vm/drop_caches` before every timed push "
                f"and pull ({bench.drops} drops), which also evicts each tool's own Python "
                "code. Every push goes to an emptied remote (directory renamed aside; moto "
                "reset and the bucket recreated), every pull into a fresh `git clone` with an "
                "empty cache. Old remotes and clones are deleted only after a stage's last run: "
                "on this disk, creating many files right after a mass delete is several times "
                "slower for minutes, so no timed run follows one. moto keeps objects in its "
                "own memory, which no drop evicts.")
    if bench.args.group == "history" and not bench.drop_failed:
        return (f"cold: `sync` + `echo 3 > /proc/sys/vm/drop_caches` before every cold run "
                f"({bench.drops} drops), which also evicts each tool's own Python code. Warm: "
                "one untimed run per tool first, then no drops. The objects both tools read "
                "are in their local caches (the adds stored them; nothing is fetched).")
    if not bench.drop_failed:
        return (f"cold: `sync` + `echo 3 > /proc/sys/vm/drop_caches` before every cold "
                f"command ({bench.drops} drops); this also evicts each tool's own Python code, "
                "so cold times include loading it from disk. Warm rows rerun immediately after.")
    return (f"NOT cold: writing /proc/sys/vm/drop_caches failed, so the page cache was warm; "
            f"slept 60 s after each mass delete instead ({bench.slept}×).")


def report(bench: Bench, started: dt.datetime, took: float) -> str:
    tools = {t.name: t for t in bench.tools}
    head = [f"# datavc vs DVC: {bench.args.group} benchmark "
            f"({'quick' if bench.args.quick else 'full'})", "",
            f"Run {started:%Y-%m-%d %H:%M} UTC, {took / 60:.1f} min total. "
            f"Command: `{' '.join(['python', 'benchmarks/run.py', *sys.argv[1:]])}`", "",
            "## Setup", ""]
    facts = machine_facts(bench.workdir)
    if "datavc" in tools:
        facts.append(f"datavc: {tools['datavc'].version} (`{tools['datavc'].exe}`, "
                     f"commit {tools['datavc'].source or datavc_commit()})")
    if "dvc" in tools:
        facts.append(f"DVC: {tools['dvc'].version} (pip-installed in benchmarks/.venv-dvc)")
    facts += [f"Page cache: {cache_note(bench)}", *bench.notes]
    legend = ("Peak RSS MB = peak of the summed VmRSS of the command's whole process tree, "
              f"sampled every {POLL_S * 1000:.0f} ms (pages shared by several processes count in "
              "each, so forked workers are somewhat overstated). "
              "Max proc MB = largest single-process RSS (`ru_maxrss` from wait4). "
              "MB = 2^20 bytes. Ratio > 1 means datavc is faster.")
    rows = [*table(bench), *git_table(bench)]
    if bench.args.group == "remote":
        rows = [*remote_table(bench), "", *transfer_table(bench)]
        legend += (f" Each push and pull ran {bench.args.repeats}× per tool (small-s3: once), "
                   "datavc and DVC alternating; s = the median run, min–max = the fastest "
                   "and slowest, ratio = DVC median / datavc median, peak RSS and max proc = "
                   "the highest over the runs (the moto server is not part of either tool's "
                   "process tree). A run counts only if it exits 0, reports a full transfer "
                   "(datavc --json: nothing present, missing or corrupt; DVC: `N files pushed` "
                   "/ `fetched` with N ≥ the files) and, for pull, the clone's tree has the "
                   "same files and SHA-256 of every file's content as the generated data. "
                   "Objects moved = what the tool says it moved (datavc counts directory "
                   "listings too, one per directory plus the top; DVC one `.dir` object); "
                   "objects/s and requests/s use the median time; S3 requests = the lines "
                   "moto's request log gained during the last run (LIST = ListObjectsV2, "
                   "PUT part / POST mpu = multipart upload parts and create/complete). Raw "
                   "boto3 ceiling then = `s3ceiling.py` run right before that row's runs (the "
                   "1-minute load average then in parentheses); objects/s vs ceiling = the "
                   "row's objects/s over it (the ceiling moves 4 KiB objects, so rows with "
                   "bigger objects cannot reach it).")
    if bench.args.group == "pipeline":
        rows = pipeline_table(bench)
        legend += (f" Each row ran {bench.args.repeats}× per tool, datavc and DVC alternating; "
                   "s = the median run, min–max = the fastest and slowest, ratio = DVC median "
                   "/ datavc median, peak RSS and max proc = the highest over the runs. a: a "
                   "fresh repo per run (untimed setup: copy the input, write the pipeline "
                   "file, git commit, `datavc trust`); the later rows use the last one. d: "
                   f"every dependency and output gets the current time (`os.utime`), then "
                   f"{TOUCH_SETTLE_S:.0f} s pause, untimed. e: the input gets new content, "
                   "the same for both tools and new in every run (so neither tool's "
                   "run-cache can restore). A run counts only if it exits 0 and: a, e: stdout "
                   "reports every stage as run, in order (datavc `Ran stage`, DVC `Running "
                   "stage`) and every output equals the input; b, c, d: stdout says nothing "
                   "is to be done (DVC: every stage or none `didn't change, skipping`), no "
                   "dependency or output changed inode or mtime, every output equals the "
                   "input, and then (untimed) `datavc repro --json` reports every stage "
                   "`up-to-date` / `dvc status --json` prints `{}`.")
    if bench.args.group == "history":
        rows = history_table(bench)
        legend += (f" Each command ran {bench.args.repeats}× per cache state, datavc and DVC "
                   "alternating; s = the median run, min–max = the fastest and slowest run, "
                   "ratio = DVC median / datavc median, peak RSS and max proc = the highest "
                   "over the runs. A run counts only if it exits 0 and its output names "
                   f"exactly the {MODIFIED} rewritten files (the --json rows parse the JSON: "
                   "all changes `modified`, nothing added, deleted or renamed; DVC's extra "
                   "`data/` directory entry is ignored) or, for log, both commits.")
    return "\n".join([*head, *(f"- {f}" for f in facts), "", "## Results", "", *rows,
                      "", legend, "", *failures(bench)]).rstrip() + "\n"


def write_report(bench: Bench, text: str, started: dt.datetime) -> Path:
    args = bench.args
    full = set(GROUPS[args.group]) - (set(SLOW) if args.skip_slow else set())
    partial = (args.quick or args.skip_dvc or args.skip_datavc or set(args.scenarios) != full
               or (args.group == "pipeline" and args.stages != FULL["stages"]))
    path = bench.args.results or RESULTS / (
        f"{started:%Y-%m-%d}-{args.group}{'-partial' if partial else ''}.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: 2,000 files, 64 MiB file")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma list of: " + ", ".join(
        SCENARIOS) + "; or of: " + ", ".join(HISTORY) + "; or of: " + ", ".join(REMOTE)
        + "; or a group: core, history, remote; or pipeline")
    p.add_argument("--workdir", type=Path, help="scratch dir (must be empty or missing)")
    p.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    p.add_argument("--skip-dvc", action="store_true", help="time datavc alone")
    p.add_argument("--skip-datavc", action="store_true", help="time DVC alone")
    p.add_argument("--datavc", type=Path, help="datavc executable (default: next to python)")
    p.add_argument("--datavc-rev", metavar="REV",
                   help="time the datavc package of git revision REV (unpacked into the work "
                        "dir), not the working tree")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--files", type=int, help="override the number of small files")
    p.add_argument("--size", help="override the big file size, e.g. 512M")
    p.add_argument("--no-warm", action="store_true", help="skip warm repeats")
    p.add_argument("--skip-git", action="store_true",
                   help="status: leave out the `git status` reference (the same files "
                        "committed to git: about 20 s of untimed setup, 1 GB of disk)")
    p.add_argument("--repeats", type=int,
                   help="history: runs per command and cache state (default "
                        f"{REPEATS['history']}); remote: runs per push and pull (default "
                        f"{REPEATS['remote']}; the slow small-s3 runs once); pipeline: runs "
                        f"per row (default {REPEATS['pipeline']}); core: each row runs once "
                        "(a repeat would create files right after the previous run deleted "
                        "100,000, which this disk makes slow for minutes): run it again")
    p.add_argument("--stages", type=int,
                   help=f"pipeline: length of the chain (default {FULL['stages']}, "
                        f"--quick {QUICK['stages']})")
    p.add_argument("--mixed-files", type=int,
                   help="remote: files in the mixed-size data set (default 5,000)")
    p.add_argument("--skip-slow", action="store_true",
                   help="remote: leave out small-s3 (100,000 files to S3, minutes per command)")
    p.add_argument("--moto-python", type=Path, default=REPO_ROOT / ".venv" / "bin" / "python",
                   help="remote: the Python that runs moto's server and boto3 (default: "
                        "datavc's .venv)")
    p.add_argument("--no-ceiling", action="store_true",
                   help="remote: skip measuring the raw boto3 PUT/GET rate of the server")
    p.add_argument("--timeout", type=float, default=3600, help="per command, seconds")
    p.add_argument("--results", type=Path, help="report path (default results/<date>-core.md)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.files = args.files or preset["files"]
    args.size = args.size or preset["size"]
    args.mixed_files = args.mixed_files or preset["mixed_files"]
    args.stages = args.stages or preset["stages"]
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    args.scenarios = list(dict.fromkeys(x for n in names for x in GROUPS.get(n, (n,))))
    if args.skip_slow:
        args.scenarios = [s for s in args.scenarios if s not in SLOW]
    if bad := set(args.scenarios) - {s for members in GROUPS.values() for s in members}:
        p.error(f"unknown scenario(s) {sorted(bad)}; choose from {', '.join(SCENARIOS)}, "
                f"{', '.join(HISTORY)}, {', '.join(REMOTE)}, pipeline or a group: core, "
                "history, remote")
    groups = {g for g, members in GROUPS.items() if set(args.scenarios) & set(members)}
    if len(groups) != 1:
        p.error("run the core, history, remote and pipeline scenarios separately (one report "
                "each)")
    args.group = groups.pop()
    if args.group == "remote":  # in the order of REMOTE: the slow one last
        args.scenarios = [s for s in REMOTE if s in args.scenarios]
    if args.repeats is None:
        args.repeats = REPEATS[args.group]
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.group == "core" and args.repeats != 1:
        p.error("--repeats does not apply to the core scenarios: each row runs once; run "
                "the benchmark again for another sample")
    if args.stages < 1:
        p.error("--stages must be at least 1")
    args.tools = [t for t, skip in (("datavc", args.skip_datavc), ("dvc", args.skip_dvc))
                  if not skip]
    if args.skip_dvc and args.skip_datavc:
        p.error("nothing to time with both --skip-dvc and --skip-datavc")
    return args


def make_workdir(args: argparse.Namespace) -> Path:
    if args.workdir is None:
        return Path(tempfile.mkdtemp(prefix="datavc-bench-", dir="/tmp"))
    if args.workdir.exists() and any(args.workdir.iterdir()):
        sys.exit(f"--workdir {args.workdir} is not empty")
    args.workdir.mkdir(parents=True, exist_ok=True)
    return args.workdir.resolve()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    workdir = make_workdir(args)
    (workdir / "logs").mkdir()
    print(f"work dir: {workdir}", flush=True)
    try:
        bench = Bench(args, workdir, make_tools(args, workdir))
        bench.notes.append(f"Load average (1/5/15 min) at start: {load()}")
        if (not args.skip_datavc and not args.datavc_rev
                and os.environ.get("PYTHONDONTWRITEBYTECODE")):
            bench.notes.append("PYTHONDONTWRITEBYTECODE is set: each datavc run compiled "
                               "those of its modules that had no .pyc yet from source "
                               "(--datavc-rev byte-compiles its snapshot)")
        src = generate(bench, args.scenarios)
        small = [s for s in args.scenarios if s in SMALL_SCENARIOS]
        if small:
            run_small(bench, small, src)
        if "big" in args.scenarios:
            run_big(bench, src)
        if args.group == "history":
            run_history(bench, args.scenarios, src)
        if args.group == "remote":
            run_remote(bench, args.scenarios, src)
        if args.group == "pipeline":
            run_pipeline(bench)
        bench.notes.append(f"Load average at end: {load()}")
        text = report(bench, started, (dt.datetime.now(dt.UTC) - started).total_seconds())
        print("\n" + text)
        print(f"written to {write_report(bench, text, started)}")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            sh(["rm", "-rf", str(workdir)])
    return 1 if any(not r.ok for row in bench.rows.values() for r in row.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
