"""The git merge driver: `git merge` of two branches that both changed one dataset merges
their pointer manifests file by file, reports real conflicts as git conflicts, refuses
hostile manifests, and `datavc init` sets it up (again in a fresh clone)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, read_tree
from tests.func.helpers import CACHE, fails, ok, write_pointer
from tests.func.test_exit_codes import lock_held
from tests.func.test_history import _set

BASE = {"a": "a base\n", "sub": {"b": "b base\n"}, "keep": {"k": "k\n"}}


def _commit(root: Path, run, spec: dict, message: str) -> None:
    _set(root, spec)
    ok(run("add", "data"))
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)


def _switch(root: Path, run, branch: str) -> None:
    git(root, "checkout", "-q", branch)
    ok(run("checkout", "--force"))


def _merge(root: Path, branch: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "merge", "--no-edit", branch], cwd=root, capture_output=True,
                          text=True, timeout=300)


def _bytes(spec: dict) -> dict:
    return {k: _bytes(v) if isinstance(v, dict) else v.encode() for k, v in spec.items()}


def _branches(root: Path, run, ours: dict, theirs: dict, base: dict = BASE) -> None:
    """``base`` committed on main; ``theirs`` on branch 'other'; ``ours`` on main."""
    _commit(root, run, base, "base")
    git(root, "checkout", "-qb", "other")
    _commit(root, run, theirs, "theirs")
    _switch(root, run, "main")
    _commit(root, run, ours, "ours")


def _with(spec: dict, **changes) -> dict:
    out = json.loads(json.dumps(spec))
    for key, value in changes.items():
        *dirs, name = key.split("__")
        node = out
        for d in dirs:
            node = node.setdefault(d, {})
        if value is None:
            del node[name]
        else:
            node[name] = value
    return out


def test_disjoint_changes_merge_cleanly_and_check_out_the_union(root, run):
    ours = _with(BASE, sub__d="d ours\n", a="a ours\n")
    theirs = _with(BASE, c="c theirs\n", sub__b=None, new={"n": "n theirs\n"})
    _branches(root, run, ours, theirs)
    proc = _merge(root, "other")
    assert proc.returncode == 0, proc
    assert "Traceback" not in proc.stderr
    assert git(root, "status", "--porcelain") == ""
    assert len(git(root, "log", "-1", "--format=%P").split()) == 2  # a merge commit
    union = _with(ours, c="c theirs\n", sub__b=None, new={"n": "n theirs\n"})
    listed = [line.split("  ")[2] for line in ok(run("ls", "data")).out.splitlines()]
    assert listed == ["data/a", "data/c", "data/keep/k", "data/new/n", "data/sub/d"]
    pointer = json.loads((root / "data.datavc").read_text())
    assert (pointer["nfiles"], pointer["size"]) == (5, sum(len(v) for v in
                                                          ["a ours\n", "c theirs\n", "k\n",
                                                           "n theirs\n", "d ours\n"]))
    _set(root, {})
    shutil.rmtree(root / "data")
    ok(run("checkout"))
    assert read_tree(root / "data") == _bytes(union)
    assert json.loads(ok(run("status", "--json")).out)[0]["state"] == "clean"
    ok(run("checkout", "--rev", "HEAD~1"))  # our side, still whole
    assert read_tree(root / "data") == _bytes(ours)


def test_overlapping_edits_are_a_git_conflict_naming_the_path(root, run):
    ours = _with(BASE, a="a ours\n", x="x\n")
    theirs = _with(BASE, a="a theirs\n", sub__b=None)
    _branches(root, run, ours, theirs)
    pointer = (root / "data.datavc").read_bytes()
    proc = _merge(root, "other")
    assert proc.returncode == 1, proc
    assert "datavc: conflict: data/a: changed on both sides" in proc.stderr
    assert "data/sub" not in proc.stderr and "Traceback" not in proc.stderr
    assert "git checkout --ours data.datavc" in proc.stderr
    assert "CONFLICT" in proc.stdout
    assert "UU data.datavc" in git(root, "status", "--porcelain")
    assert (root / "data.datavc").read_bytes() == pointer  # left as our side
    git(root, "checkout", "--theirs", "data.datavc")  # the resolution the hint names
    git(root, "add", "data.datavc")
    git(root, "commit", "-qm", "take theirs")
    ok(run("checkout"))
    assert read_tree(root / "data") == _bytes(theirs)


def test_delete_versus_modify_and_file_versus_directory_conflict(root, run):
    ours = _with(BASE, keep=None, a={"now": "a dir\n"})
    theirs = _with(BASE, keep__k="k theirs\n", a="a theirs\n")
    _branches(root, run, ours, theirs)
    proc = _merge(root, "other")
    assert proc.returncode == 1, proc
    assert "data/a: a file on one side, a directory on the other" in proc.stderr
    assert "data/keep: deleted on one side, changed on the other" in proc.stderr


@pytest.mark.parametrize("doc", ["{not json\n", '{"datavc": 99, "kind": "dir"}\n',
                                 '{"datavc": 1, "kind": "dir", "oid": "xxh128:../../x", '
                                 '"size": 0, "nfiles": 0}\n', "x" * 70000])
def test_a_hostile_pointer_on_one_side_is_refused(root, run, doc):
    _commit(root, run, BASE, "base")
    git(root, "checkout", "-qb", "other")
    write_pointer(root, "data", doc)
    git(root, "commit", "-qam", "hostile")
    git(root, "checkout", "-q", "main")
    _commit(root, run, _with(BASE, a="a ours\n"), "ours")
    pointer = (root / "data.datavc").read_bytes()
    proc = _merge(root, "other")
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    assert "datavc: conflict: data: data.datavc (theirs)" in proc.stderr
    assert (root / "data.datavc").read_bytes() == pointer


# --- the plumbing command itself ------------------------------------------------------------


def _sides(root: Path, run, *specs: dict | None) -> list[str]:
    """Pointer files (empty for None) of each spec, stored in the cache, as file names."""
    names = []
    for i, spec in enumerate(specs):
        name = f"side{i}"
        if spec is None:
            (root / name).write_bytes(b"")
        else:
            _set(root, spec)
            ok(run("add", "data"))
            shutil.copy(root / "data.datavc", root / name)
        names.append(name)
    return names


def test_driver_add_add_with_an_empty_base(root, run):
    base, ours, theirs = _sides(root, run, None, {"x": "x\n"}, {"y": "y\n"})
    ok(run("merge-driver", base, ours, theirs, "data.datavc"))
    merged = json.loads((root / ours).read_text())
    (root / "data.datavc").write_text((root / ours).read_text())
    shutil.rmtree(root / "data")
    ok(run("checkout", "data"))
    assert read_tree(root / "data") == {"x": b"x\n", "y": b"y\n"}
    assert merged["nfiles"] == 2
    base, ours, theirs = _sides(root, run, None, {"x": "1\n"}, {"x": "2\n"})
    before = (root / ours).read_bytes()
    r = fails(run("merge-driver", base, ours, theirs, "data.datavc"), 1)
    assert "data/x: added on both sides with different content" in r.err
    assert (root / ours).read_bytes() == before


def test_driver_takes_the_lock_only_when_it_writes_listings(root, run):
    base, ours, theirs = _sides(root, run, BASE, _with(BASE, a="2\n"), _with(BASE, c="3\n"))
    (root / "one").write_bytes((root / ours).read_bytes())
    with lock_held(root):
        ok(run("merge-driver", base, "one", base, "data.datavc"))  # nothing new to store
        assert (root / "one").read_bytes() == (root / ours).read_bytes()
        r = fails(run("merge-driver", base, ours, theirs, "data.datavc"), 4)
        assert "lock" in r.err
    ok(run("merge-driver", base, ours, theirs, "data.datavc"))
    ok(run("merge-driver", base, ours, theirs, "data.datavc"))  # idempotent


def test_driver_with_a_missing_listing_says_to_fetch_the_data(root, run):
    base, ours, theirs = _sides(root, run, BASE, _with(BASE, a="2\n"), _with(BASE, c="3\n"))
    for p in (root / CACHE).glob("*/*"):
        p.chmod(0o644)
        p.unlink()
    r = fails(run("merge-driver", base, ours, theirs, "data.datavc"), 1)
    assert "listing is missing" in r.err and "fetch" in r.err


# --- set-up: init, again, and in a fresh clone ----------------------------------------------


def test_init_sets_up_the_driver_idempotently_keeping_gitattributes(scm, run):
    (scm / ".gitattributes").write_text("*.bin binary")  # no trailing newline
    ok(run("init"))
    assert (scm / ".gitattributes").read_text() == "*.bin binary\n*.datavc merge=datavc\n"
    driver = git(scm, "config", "--get", "merge.datavc.driver").strip()
    assert driver.endswith(" -m datavc merge-driver %O %A %B %P")
    assert git(scm, "config", "--get", "merge.datavc.name").strip()
    assert ".gitattributes" in git(scm, "diff", "--cached", "--name-only").split()
    attrs = git(scm, "check-attr", "merge", "--", "data.datavc", "x/y.datavc")
    assert attrs.splitlines() == ["data.datavc: merge: datavc", "x/y.datavc: merge: datavc"]
    r = ok(run("init"))
    assert "Reinitialized existing datavc repository" in r.out
    assert (scm / ".gitattributes").read_text() == "*.bin binary\n*.datavc merge=datavc\n"
    assert git(scm, "config", "--get-all", "merge.datavc.driver").strip() == driver


def test_a_fresh_clone_is_set_up_by_init(root, run, tmp_path):
    ours = _with(BASE, a="a ours\n")
    theirs = _with(BASE, c="c theirs\n")
    _branches(root, run, ours, theirs)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    assert subprocess.run(["git", "config", "--get", "merge.datavc.driver"], cwd=clone,
                          capture_output=True).returncode == 1
    r = ok(run("init", cwd=clone))
    assert "Reinitialized" in r.out and "merge driver" in r.out
    assert git(clone, "status", "--porcelain") == ""
    git(clone, "config", "user.name", "Test")
    git(clone, "config", "user.email", "test@example.com")

    proc = _merge(clone, "origin/other")  # this clone's cache has no listing yet
    assert proc.returncode == 1 and "listing is missing" in proc.stderr, proc
    git(clone, "merge", "--abort")
    shutil.copytree(root / CACHE, clone / CACHE, dirs_exist_ok=True)
    proc = _merge(clone, "origin/other")
    assert proc.returncode == 0, proc
    ok(run("checkout", cwd=clone))
    assert read_tree(clone / "data") == _bytes(_with(ours, c="c theirs\n"))
