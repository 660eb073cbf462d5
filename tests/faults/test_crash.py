"""kill -9 in the middle of ``datavc add`` and ``datavc checkout``.

Each test runs the real CLI in a subprocess that SIGKILLs itself at a named crash point
(``DATAVC_CRASH_AT``, after ``DATAVC_CRASH_AFTER`` hits), or is SIGKILLed from outside at a
random moment, then runs the oracle:

* every cache object hashes to its name (no torn object);
* the workspace holds, at every path, either the old or the new bytes, never a mix; the
  only other files allowed are ``.datavc-tmp-*`` leftovers;
* the pointer manifest is absent, or the complete manifest of the crash-free run;

and finally runs the same command again, without the crash: it succeeds, leaves no
leftovers (the rerun cleans them while it holds the lock) and gives exactly the result of
a crash-free run.

The repositories live on a memory file system when there is one: a process crash does not
depend on the file system (the page cache survives it), and it keeps the sync barriers of
a shared machine's disk out of the test time.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import datavc
from tests.faults.oracle import (
    TMP_MARK,
    assert_old_or_new,
    bad_objects,
    cache_tmp_files,
    cli,
    env,
    files,
    git,
    litter,
    scratch,
)
from tests.func.helpers import no_processes_left_in

HARDLINK = '\n[cache]\ntype = ["hardlink", "copy"]\n'


def make_dataset(data: Path, *, small: int = 200, small_max: int = 3000,
                 big: tuple[int, ...] = (5 << 20,), seed: int = 7) -> None:
    """``small`` files in nested directories (one empty file), an empty directory and the
    ``big`` files; the same bytes for the same arguments."""
    rng = random.Random(seed)
    for i in range(small):
        path = data / f"d{i % 10}" / f"s{i % 2}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1, small_max)) if i else b"")
    (data / "empty").mkdir(parents=True)
    for i, size in enumerate(big):
        (data / f"big{i}.bin").write_bytes(rng.randbytes(size))


def new_repo(root: Path) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    r = cli(root, "init")
    assert r.returncode == 0, r


def clone(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


@dataclass
class Template:
    fresh: Path  # a repository with the dataset, nothing added
    added: Path  # the same after a crash-free `datavc add data`
    expected: dict[str, bytes]  # the dataset (files(data))
    pointer: bytes  # data.datavc after the crash-free add


@pytest.fixture(scope="module")
def tpl() -> Iterator[Template]:
    with scratch("datavc-crash-tpl-") as base:
        fresh = base / "fresh"
        new_repo(fresh)
        make_dataset(fresh / "data")
        added = clone(fresh, base / "added")
        r = cli(added, "add", "data")
        assert r.returncode == 0, r
        yield Template(fresh, added, files(fresh / "data"),
                       (added / "data.datavc").read_bytes())


@pytest.fixture
def work() -> Iterator[Path]:
    with scratch("datavc-crash-") as path:
        yield path


def crash(root: Path, *args: str, point: str, after: int) -> None:
    r = cli(root, *args, DATAVC_CRASH_AT=point, DATAVC_CRASH_AFTER=str(after))
    assert r.returncode == -signal.SIGKILL, f"{point}/{after} not reached: {r}"


def assert_recovered(root: Path, tpl: Template) -> None:
    """The state of a crash-free run, and nothing left over."""
    assert (root / "data.datavc").read_bytes() == tpl.pointer
    assert files(root / "data") == tpl.expected
    assert bad_objects(root) == []
    assert cache_tmp_files(root) == []
    assert litter(root) == []
    repo = datavc.Repo(root)
    [status] = repo.status()
    assert status.state == "clean", status
    for _, entry in repo.ls_manifest(str(root / "data.datavc")):
        assert entry.kind == "dir" or repo.store.has(entry.oid), entry


# --------------------------------------------------------------------------- add

ADD_POINTS = [
    ("object-tmp-written", 0), ("object-tmp-written", 100),
    ("object-renamed", 0), ("object-renamed", 100),
    ("objects-synced", 0),
    pytest.param("manifest-tmp-written", 0),
    ("manifest-written", 0),
    ("state-tmp-written", 0), ("state-written", 0),
]


@pytest.mark.parametrize(("point", "after"), ADD_POINTS)
def test_crash_during_add(tpl: Template, work: Path, point: str, after: int) -> None:
    root = clone(tpl.fresh, work / "repo")
    crash(root, "add", "data", point=point, after=after)

    assert bad_objects(root) == []
    assert files(root / "data") == tpl.expected  # add (copy cache) never touches the data
    pointer = root / "data.datavc"
    assert not pointer.exists() or pointer.read_bytes() == tpl.pointer

    r = cli(root, "add", "data")
    assert r.returncode == 0, r
    assert_recovered(root, tpl)



PACK_POINTS = [("pack-tmp-written", 0), ("pack-tmp-written", 5), ("objects-synced", 0),
               ("pack-renamed", 0), ("pack-renamed", 1), ("pack-renamed", 7),
               ("manifest-written", 0)]


@pytest.fixture(scope="module")
def tpl_packed() -> Iterator[Template]:
    """1,500 small files on 1 job (the crash points are hit in the command's own process):
    the add writes them as 8 packs (chunks of 187 files)."""
    with scratch("datavc-crash-packs-") as base:
        fresh = base / "fresh"
        new_repo(fresh)
        (fresh / ".datavc" / "config.toml").write_text("[core]\nformat = 1\n\n[cache]\n"
                                                       "jobs = 1\n")
        make_dataset(fresh / "data", small=1500, small_max=2000, big=())
        added = clone(fresh, base / "added")
        r = cli(added, "add", "data")
        assert r.returncode == 0, r
        assert len(list((added / ".datavc/cache/packs").glob("*.pack"))) >= 8
        yield Template(fresh, added, files(fresh / "data"),
                       (added / "data.datavc").read_bytes())


@pytest.mark.parametrize(("point", "after"), PACK_POINTS)
def test_crash_during_add_of_packs(tpl_packed: Template, work: Path, point: str,
                                   after: int) -> None:
    """A kill while packs are written or named: every complete pack is sound, the rerun
    converges, and nothing but whole packs is left."""
    root = clone(tpl_packed.fresh, work / "repo")
    crash(root, "add", "data", point=point, after=after)
    assert bad_objects(root) == []
    assert files(root / "data") == tpl_packed.expected

    r = cli(root, "add", "data")
    assert r.returncode == 0, r
    assert_recovered(root, tpl_packed)
    names = [p.name for p in (root / ".datavc/cache/packs").iterdir()]
    assert sorted(n.split(".")[0] for n in names if n.endswith(".idx")) == \
        sorted(n.split(".")[0] for n in names if n.endswith(".pack"))
    r = cli(root, "fsck", "--read-data")
    assert r.returncode == 0, r


@pytest.mark.parametrize(("point", "after"), [
    ("workspace-tmp-written", 0),
    pytest.param("workspace-tmp-written", 100),
    pytest.param("workspace-replaced", 0),
    pytest.param("workspace-replaced", 100),
])
def test_crash_during_add_while_hardlinking(tpl: Template, work: Path, point: str,
                                           after: int) -> None:
    """With a hardlink cache, add replaces each file by a link to its object."""
    root = clone(tpl.fresh, work / "repo")
    with open(root / ".datavc" / "config.toml", "a") as f:
        f.write(HARDLINK)
    crash(root, "add", "data", point=point, after=after)

    assert bad_objects(root) == []
    assert_old_or_new(root / "data", tpl.expected)
    assert {p for p in files(root / "data") if TMP_MARK not in p} == set(tpl.expected)

    r = cli(root, "add", "data")
    assert r.returncode == 0, r
    assert_recovered(root, tpl)
    linked = [p for p in tpl.expected if not p.endswith("/")]
    assert all(os.stat(root / "data" / p).st_nlink == 2 for p in linked)


def test_readd_of_hardlinked_files_leaves_no_temp_links(work: Path) -> None:
    """Re-adding hardlinked files that the stat cache does not know (after a crash, or a
    discarded stat cache) must not leave temp links in the workspace."""
    root = work / "repo"
    new_repo(root)
    with open(root / ".datavc" / "config.toml", "a") as f:
        f.write(HARDLINK)
    make_dataset(root / "data", small=5, big=())
    assert cli(root, "add", "data").returncode == 0
    (root / ".datavc" / "state" / "stat").unlink()
    r = cli(root, "add", "data")
    assert r.returncode == 0, r
    assert litter(root) == []


# ---------------------------------------------------------------------- checkout

CHECKOUT_POINTS = [
    ("workspace-tmp-written", 0), ("workspace-tmp-written", 100),
    ("workspace-replaced", 0), ("workspace-replaced", 100),
    ("state-tmp-written", 0), ("state-written", 0),
]


@pytest.mark.parametrize(("point", "after"), CHECKOUT_POINTS)
def test_crash_during_checkout_into_empty_workspace(tpl: Template, work: Path, point: str,
                                                   after: int) -> None:
    root = clone(tpl.added, work / "repo")
    shutil.rmtree(root / "data")
    crash(root, "checkout", point=point, after=after)

    assert bad_objects(root) == []
    assert_old_or_new(root / "data", tpl.expected)

    r = cli(root, "checkout")
    assert r.returncode == 0, r
    assert_recovered(root, tpl)


def modify(data: Path, seed: int = 11) -> None:
    """Edits whose content is not in the cache: rewrites, deletions, new files, a directory
    replaced by a file and the big file changed in place."""
    rng = random.Random(seed)
    paths = sorted(p for p in data.rglob("*.bin") if p.name != "big0.bin")
    for p in paths[:20]:
        p.write_bytes(b"edited " + rng.randbytes(100))
    for p in paths[20:30]:
        p.unlink()
    for i in range(5):
        new = data / "new" / f"n{i}.txt"
        new.parent.mkdir(exist_ok=True)
        new.write_bytes(rng.randbytes(50))
    (data / "empty").rmdir()
    (data / "empty").write_bytes(b"now a file")
    with open(data / "big0.bin", "r+b") as f:
        f.write(b"in-place edit")


@pytest.mark.parametrize(("point", "after"), [
    (p, 15 if a else 0) for p, a in CHECKOUT_POINTS])  # 31 files to write here
def test_crash_during_forced_checkout_over_edits(tpl: Template, work: Path, point: str,
                                                 after: int) -> None:
    root = clone(tpl.added, work / "repo")
    modify(root / "data")
    edited = files(root / "data")
    crash(root, "checkout", "--force", point=point, after=after)

    assert bad_objects(root) == []
    assert_old_or_new(root / "data", tpl.expected, edited)

    r = cli(root, "checkout", "--force")
    assert r.returncode == 0, r
    assert_recovered(root, tpl)


# ------------------------------------------------------------ kill -9 from outside

def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the process group this test started (orphaned workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _start(root: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start datavc in a process group of its own, so that _kill_group can find every
    process it leaves behind; its stderr goes to ``<root>/../stderr``."""
    with open(root.parent / "stderr", "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "datavc", *args], cwd=root, env=env(),
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _stderr(work: Path) -> str:
    return (work / "stderr").read_text(errors="replace")


def _wait_locked(proc: subprocess.Popen[bytes], root: Path) -> float:
    """Wait until ``proc`` holds the repository lock (its work begins) or exits; return when."""
    lock = root / ".datavc" / "tmp" / "lock"
    mark = f"{proc.pid} ".encode()
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if lock.read_bytes().startswith(mark):
                break
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    return time.monotonic()


def _timed_run(root: Path, *args: str) -> float:
    """Run datavc to completion; return how long it worked while holding the lock."""
    proc = _start(root, *args)
    try:
        locked = _wait_locked(proc, root)
        assert proc.wait(timeout=120) == 0, _stderr(root.parent)
        return time.monotonic() - locked
    finally:
        _kill_group(proc)


@pytest.mark.parametrize("command", ["add", "checkout"])
def test_kill_at_random_moments(work: Path, command: str) -> None:
    """A larger dataset (serial hashing and writing), three kill -9 at random moments of the
    work of successive attempts, the oracle after each, then an uninterrupted run."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    ref = work / "ref"
    new_repo(ref)
    make_dataset(ref / "data", small=450, small_max=64 << 10, big=(24 << 20,) * 3)
    expected = files(ref / "data")
    root = clone(ref, work / "repo")
    duration = _timed_run(ref, "add", "data")
    if command == "checkout":
        shutil.rmtree(root)
        root = clone(ref, work / "repo")
        shutil.rmtree(root / "data")
        probe = clone(root, work / "probe")
        duration = _timed_run(probe, "checkout", "data")

    for attempt in range(3):
        proc = _start(root, command, "data")
        delay = rng.uniform(0, 0.8 * duration)  # later attempts have less to do
        try:
            time.sleep(max(0.0, delay - (time.monotonic() - _wait_locked(proc, root))))
            proc.send_signal(signal.SIGKILL)
        finally:
            _kill_group(proc)
        where = f"seed {seed}, attempt {attempt}, killed {delay:.3f}s into {duration:.3f}s"
        assert proc.returncode in (-signal.SIGKILL, 0), (where, _stderr(work))
        assert bad_objects(root) == [], where
        if command == "add":
            assert files(root / "data") == expected, where
            pointer = root / "data.datavc"
            assert not pointer.exists() or pointer.read_bytes() == (
                ref / "data.datavc").read_bytes(), where
        else:
            assert_old_or_new(root / "data", expected)

    r = cli(root, command, "data")
    assert r.returncode == 0, r
    assert_recovered(root, Template(ref, ref, expected, (ref / "data.datavc").read_bytes()))


def test_kill_during_parallel_hashing_leaves_no_lock_behind(work: Path) -> None:
    root = work / "repo"
    new_repo(root)
    with open(root / ".datavc" / "config.toml", "a") as f:
        f.write("\n[cache]\njobs = 2\n")  # a pool even on a one-CPU machine
    make_dataset(root / "data", small=1500, small_max=2048, big=())  # >= 512 files: a pool
    proc = _start(root, "add", "data")
    try:
        deadline = time.monotonic() + 30
        while not _children(proc.pid):
            assert proc.poll() is None, "add finished before its worker pool started"
            assert time.monotonic() < deadline, "no worker pool started"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # what a user's `kill -9 <pid>` does
        proc.wait()
        assert no_processes_left_in(root) == []  # the workers and the fork server follow
        r = cli(root, "add", "data", timeout=60)
        assert r.returncode == 0, r
    finally:
        _kill_group(proc)
