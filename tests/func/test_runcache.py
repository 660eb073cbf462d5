"""The run-cache through the CLI in real git repositories: outputs restored without running
after a branch switch, fallbacks to running when an entry is damaged, hostile or incomplete,
--force and --no-run-cache, and restored bytes equal to executed ones."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import gen, git
from tests.func.helpers import age, object_path, oid_of, ok, store_raw
from tests.func.test_pipeline import CAT, stage

RUNS = Path(".datavc/cache/runs")


def log_lines(root: Path) -> list[str]:
    """What ran so far (runs.log is never cleared here: it must not grow on a restore)."""
    log = root / "runs.log"
    return log.read_text().split() if log.exists() else []


def statuses(run, *args: str, cwd: Path | None = None) -> dict[str, str]:
    doc = json.loads(ok(run("repro", "--json", *args, cwd=cwd)).out)
    return {s["name"]: s["status"] for s in doc["stages"]}


def index_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / RUNS).glob("*/*") if p.is_file())


def entry_of(root: Path, index: Path) -> dict:
    return json.loads(object_path(root, index.read_text().strip()).read_bytes())


def overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


@pytest.fixture
def pipe(root, run):
    """a: raw -> data/a ; b: data/a -> data/b (param b.seed), committed on main."""
    gen(root, {"cat.py": CAT, "raw": {"x": "x1", "y": "y1"},
               "params.toml": "[b]\nseed = 1\n"})
    (root / "datavc.toml").write_text(stage("a", ["raw"], "data/a")
                                      + stage("b", ["data/a"], "data/b",
                                              params=["params.toml:b.seed"]))
    ok(run("trust"))
    git(root, "add", "datavc.toml", "cat.py", "raw", "params.toml", ".datavc")
    git(root, "commit", "-qm", "pipeline")
    return root


def commit_all(root: Path, message: str) -> None:
    git(root, "add", "datavc.lock", "raw", "params.toml", "data/.gitignore")
    git(root, "commit", "-qm", message)


def test_branch_switch_restores_without_running(pipe, run):
    assert statuses(run) == {"a": "ran", "b": "ran"}
    commit_all(pipe, "run on main")
    main_a, main_b = (pipe / "data/a").read_bytes(), (pipe / "data/b").read_bytes()
    main_lock = (pipe / "datavc.lock").read_bytes()
    git(pipe, "checkout", "-qb", "other")
    (pipe / "raw/x").write_text("x2")
    assert statuses(run) == {"a": "ran", "b": "ran"}
    commit_all(pipe, "run on other")
    assert (pipe / "data/b").read_bytes() == b"X2Y1"
    ran = len(log_lines(pipe))
    git(pipe, "checkout", "-q", "main")
    assert statuses(run, "--dry-run") == {"a": "would-restore", "b": "would-run"}
    r = ok(run("repro"))
    assert "Restored stage 'a'" in r.out and "Restored stage 'b'" in r.out
    assert len(log_lines(pipe)) == ran  # nothing executed
    assert (pipe / "data/a").read_bytes() == main_a
    assert (pipe / "data/b").read_bytes() == main_b
    assert (pipe / "datavc.lock").read_bytes() == main_lock
    assert "Everything is up to date" in ok(run("repro")).out
    # back on the other branch, then its inputs edited back to main's by hand: the lock
    # says "other", the run-cache knows main's run
    git(pipe, "checkout", "-q", "other")
    assert statuses(run) == {"a": "restored", "b": "restored"}
    (pipe / "raw/x").write_text("x1")
    assert statuses(run) == {"a": "restored", "b": "restored"}
    assert (pipe / "data/b").read_bytes() == main_b
    assert len(log_lines(pipe)) == ran


def test_param_change_back_restores(pipe, run):
    ok(run("repro"))
    (pipe / "params.toml").write_text("[b]\nseed = 2\n")
    assert statuses(run) == {"a": "up-to-date", "b": "ran"}
    ran = len(log_lines(pipe))
    (pipe / "params.toml").write_text("[b]\nseed = 1\n")
    assert statuses(run) == {"a": "up-to-date", "b": "restored"}
    assert len(log_lines(pipe)) == ran


def test_force_and_no_run_cache_execute(pipe, run):
    ok(run("repro"))
    age(pipe / "data")
    (pipe / "data/a").unlink()
    ran = len(log_lines(pipe))
    assert statuses(run, "--no-run-cache", "a") == {"a": "ran"}
    assert len(log_lines(pipe)) == ran + 1
    (pipe / "data/a").unlink()
    assert statuses(run, "--force", "a") == {"a": "ran"}
    assert len(log_lines(pipe)) == ran + 2


def _stale_with_entry(pipe, run) -> list[Path]:
    """Run, then make both stages stale with a run-cache entry for their inputs."""
    ok(run("repro"))
    (pipe / "data/a").unlink()
    (pipe / "data/b").unlink()
    found = index_files(pipe)
    assert len(found) == 2
    return found


@pytest.mark.parametrize("damage", ["index-garbage", "index-missing-entry", "entry-corrupt",
                                    "entry-not-json", "entry-other-key", "entry-hostile-path",
                                    "out-object-missing"])
def test_damaged_entry_falls_back_to_running(pipe, run, damage):
    found = _stale_with_entry(pipe, run)
    index = next(p for p in found if "data/a" in entry_of(pipe, p)["outs"])
    entry = entry_of(pipe, index)
    entry_path = object_path(pipe, index.read_text().strip())
    if damage == "index-garbage":
        index.write_text("not an id\n")
    elif damage == "index-missing-entry":
        index.write_text(oid_of(b"nothing") + "\n")
    elif damage == "entry-corrupt":
        overwrite(entry_path, entry_path.read_bytes().replace(b"data/a", b"data/A"))
    elif damage == "entry-not-json":
        index.write_text(store_raw(pipe, b"\xff{") + "\n")
    elif damage == "entry-other-key":
        other = next(p for p in found if p != index)
        index.write_text(other.read_text())
    elif damage == "entry-hostile-path":
        entry["outs"] = {"../escape": entry["outs"]["data/a"]}
        data = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        index.write_text(store_raw(pipe, data) + "\n")
    else:
        object_path(pipe, entry["outs"]["data/a"]["oid"]).unlink()
    ran = len(log_lines(pipe))
    r = run("repro", "--json")
    ok(r)
    assert {s["name"]: s["status"] for s in json.loads(r.out)["stages"]} == \
        {"a": "ran", "b": "restored"}
    assert log_lines(pipe)[ran:] == ["a"]
    assert (pipe / "data/a").read_bytes() == b"X1Y1"
    assert not (pipe.parent / "escape").exists()
    if damage not in ("out-object-missing", "index-missing-entry"):
        assert "ignoring" in r.err  # (an entry object gone, as after gc, is no entry)
    # the run rewrote the index: the next restore works again
    (pipe / "data/a").unlink()
    assert statuses(run) == {"a": "restored", "b": "up-to-date"}


@pytest.mark.parametrize("content", [b"", b"\x00\xff binary\n" * 100, "ünï\n".encode()])
def test_restored_output_is_byte_identical(root, run, content):
    """A directory output with a nested file, an empty file and an executable one."""
    maker = (
        "import os, sys, stat\n"
        "src, out = sys.argv[1], sys.argv[2]\n"
        "data = open(src, 'rb').read()\n"
        "os.makedirs(out + '/sub/deeper', exist_ok=True)\n"
        "open(out + '/sub/deeper/copy', 'wb').write(data)\n"
        "open(out + '/empty', 'wb').close()\n"
        "open(out + '/run.sh', 'w').write('#!/bin/sh\\n')\n"
        "os.chmod(out + '/run.sh', 0o755)\n"
        "open('runs.log', 'a').write('made\\n')\n")
    gen(root, {"make.py": maker, "in.bin": content})
    cmd = json.dumps([sys.executable, "make.py", "in.bin", "out"])
    (root / "datavc.toml").write_text(f'[stages.m]\ncmd = {cmd}\ndeps = ["make.py", "in.bin"]\n'
                                      'outs = ["out"]\n')
    ok(run("trust"))
    ok(run("repro"))

    def snapshot() -> dict[str, tuple[bytes, bool]]:
        got = {}
        for d, _, files in os.walk(root / "out"):
            for f in files:
                p = Path(d, f)
                got[str(p.relative_to(root))] = (p.read_bytes(), os.access(p, os.X_OK))
        return got

    executed = snapshot()
    assert executed["out/sub/deeper/copy"][0] == content
    age(root / "out")
    shutil.rmtree(root / "out")
    assert statuses(run) == {"m": "restored"}
    assert snapshot() == executed
    assert log_lines(root) == ["made"]
