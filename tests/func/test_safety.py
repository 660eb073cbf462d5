"""Confinement and concurrency: symlinks planted around tracked data never redirect a write
outside the work tree, and concurrent writers are serialised by the lock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import gen
from tests.func.helpers import fails, ok, snapshot


def test_checkout_all_does_not_follow_a_symlinked_parent_directory(root, run, outside):
    gen(root, {"sub": {"data": {"a": "a"}}})
    ok(run("add", "sub/data"))
    # move the tracked tree outside and leave a symlink in its place
    shutil.move(str(root / "sub"), str(outside / "sub"))
    os.symlink(outside / "sub", root / "sub")
    shutil.rmtree(outside / "sub/data")
    before = snapshot(outside)
    ok(run("checkout"))  # sub/data.datavc is behind a symlink: not a tracked target here
    assert snapshot(outside) == before
    r = fails(run("checkout", "sub/data"), 6)
    assert "symlink" in r.err
    assert snapshot(outside) == before


def test_status_and_commit_refuse_targets_behind_symlinks(root, run, outside):
    gen(outside, {"elsewhere": {"data": {"a": "a"}}})
    os.symlink(outside / "elsewhere", root / "lnk")
    before = snapshot(outside)
    for args in (("add", "lnk/data"), ("status", "lnk/data"), ("commit", "lnk/data"),
                 ("ls-manifest", "lnk/data.datavc")):
        fails(run(*args), 6)
    assert snapshot(outside) == before


def test_symlink_skipped_in_add_is_never_followed(root, run, outside):
    gen(root, {"data": {"real": "r"}})
    os.symlink(outside, root / "data/escape")
    before = snapshot(outside)
    ok(run("add", "data"))
    ok(run("status"))
    ok(run("commit"))
    assert snapshot(outside) == before
    rows = json.loads(ok(run("ls-manifest", "--json", "data")).out)
    assert [r["path"] for r in rows] == ["data/real"]


def test_concurrent_adds_are_serialised(root, run):
    gen(root, {f"d{i}": {f"f{j}": f"{i}-{j}" * 50 for j in range(30)} for i in range(4)})
    procs = [subprocess.Popen([sys.executable, "-m", "datavc", "add", f"d{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(4)]
    results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    for i, (code, _out, err) in enumerate(results):
        assert code in (0, 4), (i, code, err)
        assert b"Traceback" not in err
        if code == 4:
            assert b"holds the repository lock" in err
            ok(run("add", f"d{i}"))
    st = json.loads(ok(run("status", "--json")).out)
    assert [s["state"] for s in st] == ["clean"] * 4


@pytest.mark.parametrize("name", [".git", ".datavc", ".GIT", "sub/.git"])
def test_a_planted_pointer_for_a_reserved_name_is_refused(root, run, name):
    """A hostile clone could commit `.git.datavc`: no command may treat `.git` as a target."""
    gen(root, {"f": "f"})
    ok(run("add", "f"))
    (root / "sub").mkdir(exist_ok=True)
    shutil.copy(root / "f.datavc", root / f"{name}.datavc")
    git_before = snapshot(root / ".git")
    for args in (("status",), ("checkout",), ("checkout", "--force"), ("commit",)):
        r = fails(run(*args), 6)
        assert ".git" in r.err.lower() or ".datavc" in r.err
    assert snapshot(root / ".git") == git_before
    assert (root / ".datavc/config.toml").is_file()
