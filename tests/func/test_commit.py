"""`datavc commit`: recording changes into manifests, and the git commit with -m."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import gen, git
from tests.func.helpers import fails, ok


def head(root):
    return git(root, "rev-parse", "HEAD").strip()


def committed_files(root, rev="HEAD"):
    return set(git(root, "show", "--name-only", "--format=", rev).split())


@pytest.fixture
def added(root, run):
    gen(root, {"data": {"a": "a", "s": {"b": "b"}}, "sub": {"m.bin": "m"}})
    ok(run("add", "data", "sub/m.bin"))
    return root


def test_commit_m_creates_a_git_commit_with_pointers_and_gitignores(added, run):
    r = ok(run("commit", "-m", "data v1"))
    assert "Committed " in r.out
    sha = head(added)
    assert r.out.strip().endswith(sha[:10])
    assert git(added, "log", "-1", "--format=%s").strip() == "data v1"
    files = committed_files(added)
    assert {"data.datavc", ".gitignore", "sub/m.bin.datavc", "sub/.gitignore"} <= files
    assert not any(f.startswith("data/") for f in files)
    assert "/data" in git(added, "show", "HEAD:.gitignore").splitlines()
    assert git(added, "status", "--porcelain", "--", "data.datavc", "sub") == ""


def test_commit_json(added, run):
    doc = json.loads(ok(run("commit", "-m", "v1", "--json")).out)
    assert set(doc) == {"recorded", "git_commit"}
    assert doc["git_commit"] == head(added)
    assert {r["path"] for r in doc["recorded"]} == {"data", "sub/m.bin"}
    assert all(r["changed"] is False for r in doc["recorded"])  # add already recorded them


def test_commit_without_m_only_updates_pointers(added, run):
    ok(run("commit", "-m", "v1"))
    before = head(added)
    (added / "data/s/b").write_text("B2")
    r = ok(run("commit"))
    assert r.out.startswith("Recorded data: xxh128:")
    assert "Committed" not in r.out
    assert head(added) == before
    assert git(added, "status", "--porcelain").splitlines() == [" M data.datavc"]
    pointer = json.loads((added / "data.datavc").read_text())
    assert pointer["oid"] == json.loads(ok(run("add", "--json", "data")).out)[0]["oid"]
    assert "up to date" in ok(run("status")).out


def test_commit_records_only_named_targets(added, run):
    (added / "data/a").write_text("A2")
    (added / "sub/m.bin").write_text("M2")
    doc = json.loads(ok(run("commit", "--json", "sub/m.bin")).out)
    assert [r["path"] for r in doc["recorded"]] == ["sub/m.bin"]
    st = {s["path"]: s["state"] for s in json.loads(ok(run("status", "--json")).out)}
    assert st == {"data": "modified", "sub/m.bin": "clean"}


def test_commit_m_twice_says_nothing_to_commit(added, run):
    ok(run("commit", "-m", "v1"))
    sha = head(added)
    r = ok(run("commit", "-m", "again"))
    assert "Nothing changed in the tracked data." in r.out
    assert "Nothing to commit in git." in r.out
    assert head(added) == sha
    doc = json.loads(ok(run("commit", "-m", "again", "--json")).out)
    assert doc["git_commit"] is None


def test_commit_second_version_then_history(added, run):
    ok(run("commit", "-m", "v1"))
    (added / "data/a").write_text("a2")
    r = ok(run("commit", "-m", "v2"))
    assert "Recorded data:" in r.out and "Committed" in r.out
    assert committed_files(added) == {"data.datavc"}
    v1 = json.loads(git(added, "show", "HEAD~1:data.datavc"))
    v2 = json.loads(git(added, "show", "HEAD:data.datavc"))
    assert v1["oid"] != v2["oid"] and v1["size"] == v2["size"] - 1


def test_commit_with_nothing_tracked(root, run):
    r = fails(run("commit"), 1)
    assert "nothing is tracked yet" in r.err and "datavc add" in r.err


def test_commit_of_deleted_target_errors_with_hint(added, run):
    shutil.rmtree(added / "data")
    for args in (("commit",), ("commit", "data"), ("commit", "-m", "x")):
        r = fails(run(*args), 1)
        assert "'data' is missing from the workspace" in r.err
        assert "datavc checkout data" in r.err and "data.datavc" in r.err
    assert (added / "data.datavc").exists()


def test_commit_of_untracked_target(added, run):
    (added / "loose").write_text("l")
    r = fails(run("commit", "loose"), 1)
    assert "not tracked by datavc" in r.err


def test_commit_without_git_identity_is_a_clear_error(tmp_path, run):
    work = tmp_path / "noid"
    work.mkdir()
    git(work, "init", "-q")
    home = tmp_path / "emptyhome"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "", "GIT_AUTHOR_EMAIL": "",
           "GIT_COMMITTER_NAME": "", "GIT_COMMITTER_EMAIL": "", "EMAIL": ""}
    ok(run("init", cwd=work, env=env))
    (work / "f").write_text("f")
    ok(run("add", "f", cwd=work, env=env))
    r = fails(run("commit", "-m", "x", cwd=work, env=env), 1)
    assert "git does not know who you are" in r.err
    assert "git config user.name" in r.err and "git config user.email" in r.err
    assert git(work, "log", "--oneline", "--all") == ""


def test_commit_uses_git_identity_from_environment(tmp_path, run):
    work = tmp_path / "envid"
    work.mkdir()
    git(work, "init", "-q")  # no user.name in any config; identity only from GIT_* env
    home = tmp_path / "emptyhome"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "GIT_AUTHOR_NAME": "Env Author", "GIT_AUTHOR_EMAIL": "author@example.com",
           "GIT_COMMITTER_NAME": "Env Committer", "GIT_COMMITTER_EMAIL": "c@example.com"}
    ok(run("init", cwd=work, env=env))
    (work / "f").write_text("f")
    ok(run("add", "f", cwd=work, env=env))
    ok(run("commit", "-m", "x", cwd=work, env=env))
    assert git(work, "log", "-1", "--format=%an <%ae>|%cn <%ce>").strip() == \
        "Env Author <author@example.com>|Env Committer <c@example.com>"
