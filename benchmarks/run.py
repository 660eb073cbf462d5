#!/usr/bin/env python3
"""Core benchmark: datavc vs DVC on the same generated data, side by side in one run.

Scenarios (pick with --only):
  add       `add data` of the small-file tree into a fresh repo
  status    `status` right after that add (nothing changed)
  readd     `add data` again with nothing changed
  checkout  delete data/ entirely, then `checkout`
  big       `add big.bin` of one big file into a fresh repo

Every timed command starts after `sync` + drop_caches (cold); status and re-add are also
repeated warm unless --no-warm. Results go to benchmarks/results/<date>-core.md (a full run
of both tools) or <date>-core-partial.md (--quick, --only, --skip-*), so a partial run never
replaces a full one.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
DVC_VENV = HERE / ".venv-dvc"
RESULTS = HERE / "results"
SCENARIOS = ("add", "status", "readd", "checkout", "big")
SMALL_SCENARIOS = ("add", "status", "readd", "checkout")
TOOLS = ("datavc", "dvc")
SEED = 20240601
FULL = {"files": 100_000, "size": "2G"}
QUICK = {"files": 2_000, "size": "64M"}
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


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    tools: list[Tool]
    rows: dict[str, dict[str, Result]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    drops: int = 0
    drop_failed: bool = False
    slept: int = 0

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

    def run(self, row: str, tool: Tool, repo: Path, cmd: list[str], cold: bool = True) -> None:
        if cold:
            self.settle()
        print(f"  {tool.name:6} {row:16} {' '.join(cmd)} ...", end=" ", flush=True)
        log = self.workdir / "logs" / f"{tool.name}-{row.replace(' ', '_')}"
        res = measure([str(tool.exe), *cmd], repo, tool.env, log, self.args.timeout)
        print(f"{res.seconds:.2f} s, {res.peak_tree_kib / 1024:.0f} MB" if res.ok else "FAILED",
              flush=True)
        self.rows.setdefault(row, {})[tool.name] = res

    def fail(self, rows: list[str], tool: Tool, error: str) -> None:
        for row in rows:
            self.rows.setdefault(row, {})[tool.name] = Result(rc=-1, error=error)


def make_tools(args: argparse.Namespace, workdir: Path) -> list[Tool]:
    tools = []
    if not args.skip_datavc:
        exe = find_datavc(args.datavc)
        tools.append(Tool("datavc", exe, tool_env(exe, {}), [["init"]]))
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
    if "checkout" in wanted:
        for tool in live:
            _checkout(bench, tool, repos[tool.name], expected)


def _cold_and_warm(bench: Bench, live: list[Tool], repos: dict[str, Path], step: str,
                   cmd: list[str]) -> None:
    for tool in live:
        bench.run(step, tool, repos[tool.name], cmd)
    if not bench.args.no_warm:
        for tool in live:
            bench.run(f"{step} (warm)", tool, repos[tool.name], cmd, cold=False)


def _checkout(bench: Bench, tool: Tool, repo: Path, expected: tuple[int, int]) -> None:
    sh(["rm", "-rf", str(repo / "data")])
    bench.settle(after_delete=True)
    bench.run("checkout", tool, repo, ["checkout"], cold=False)
    res = bench.rows["checkout"][tool.name]
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


# --------------------------------------------------------------------------- data


def gen_command(args: argparse.Namespace, src: Path, dataset: str) -> list[str]:
    return [sys.executable, str(HERE / "generate.py"), "--out", str(src), "--seed",
            str(args.seed), "--dataset", dataset, "--files", str(args.files), "--dirs", "100",
            "--min-size", "1024", "--max-size", "8192", "--size", args.size]


def generate(bench: Bench, wanted: list[str]) -> Path:
    src = bench.workdir / "src"
    need_small = any(s in wanted for s in SMALL_SCENARIOS)
    need_big = "big" in wanted
    dataset = "all" if need_small and need_big else ("small" if need_small else "big")
    cmd = gen_command(bench.args, src, dataset)
    t0 = time.perf_counter()
    print(sh(cmd), flush=True)
    shown = " ".join(["python", "benchmarks/generate.py", *cmd[2:]]).replace(str(src), "SRC")
    bench.notes.append(f"Generator: `{shown}` ({time.perf_counter() - t0:.1f} s)")
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
    "big": "e. add one {size} file (cold)",
}


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


def failures(bench: Bench) -> list[str]:
    out = []
    for row, by_tool in bench.rows.items():
        for name, res in by_tool.items():
            if not res.ok:
                out += [f"### {name}: {row}", "", "```", res.error, "```", ""]
    return ["## Failures", "", *out] if out else []


def cache_note(bench: Bench) -> str:
    if not bench.drop_failed:
        return (f"cold: `sync` + `echo 3 > /proc/sys/vm/drop_caches` before every cold "
                f"command ({bench.drops} drops); this also evicts each tool's own Python code, "
                "so cold times include loading it from disk. Warm rows rerun immediately after.")
    return (f"NOT cold: writing /proc/sys/vm/drop_caches failed, so the page cache was warm; "
            f"slept 60 s after each mass delete instead ({bench.slept}×).")


def report(bench: Bench, started: dt.datetime, took: float) -> str:
    tools = {t.name: t for t in bench.tools}
    head = [f"# datavc vs DVC: core benchmark ({'quick' if bench.args.quick else 'full'})", "",
            f"Run {started:%Y-%m-%d %H:%M} UTC, {took / 60:.1f} min total. "
            f"Command: `{' '.join(['python', 'benchmarks/run.py', *sys.argv[1:]])}`", "",
            "## Setup", ""]
    facts = machine_facts(bench.workdir)
    if "datavc" in tools:
        facts.append(f"datavc: {tools['datavc'].version} (`{tools['datavc'].exe}`, "
                     f"commit {datavc_commit()})")
    if "dvc" in tools:
        facts.append(f"DVC: {tools['dvc'].version} (pip-installed in benchmarks/.venv-dvc)")
    facts += [f"Page cache: {cache_note(bench)}", *bench.notes]
    legend = ("Peak RSS MB = peak of the summed VmRSS of the command's whole process tree, "
              f"sampled every {POLL_S * 1000:.0f} ms (pages shared by several processes count in "
              "each, so forked workers are somewhat overstated). "
              "Max proc MB = largest single-process RSS (`ru_maxrss` from wait4). "
              "MB = 2^20 bytes. Ratio > 1 means datavc is faster.")
    return "\n".join([*head, *(f"- {f}" for f in facts), "", "## Results", "", *table(bench),
                      "", legend, "", *failures(bench)]).rstrip() + "\n"


def write_report(bench: Bench, text: str, started: dt.datetime) -> Path:
    args = bench.args
    partial = (args.quick or args.skip_dvc or args.skip_datavc
               or set(args.scenarios) != set(SCENARIOS))
    path = bench.args.results or RESULTS / (
        f"{started:%Y-%m-%d}-core{'-partial' if partial else ''}.md")
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
        SCENARIOS))
    p.add_argument("--workdir", type=Path, help="scratch dir (must be empty or missing)")
    p.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    p.add_argument("--skip-dvc", action="store_true", help="time datavc alone")
    p.add_argument("--skip-datavc", action="store_true", help="time DVC alone")
    p.add_argument("--datavc", type=Path, help="datavc executable (default: next to python)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--files", type=int, help="override the number of small files")
    p.add_argument("--size", help="override the big file size, e.g. 512M")
    p.add_argument("--no-warm", action="store_true", help="skip warm repeats")
    p.add_argument("--timeout", type=float, default=3600, help="per command, seconds")
    p.add_argument("--results", type=Path, help="report path (default results/<date>-core.md)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.files = args.files or preset["files"]
    args.size = args.size or preset["size"]
    args.scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    if bad := set(args.scenarios) - set(SCENARIOS):
        p.error(f"unknown scenario(s) {sorted(bad)}; choose from {', '.join(SCENARIOS)}")
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
        src = generate(bench, args.scenarios)
        small = [s for s in args.scenarios if s in SMALL_SCENARIOS]
        if small:
            run_small(bench, small, src)
        if "big" in args.scenarios:
            run_big(bench, src)
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
