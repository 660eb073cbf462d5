"""The user flow of the core issue, through the real CLI in a real git repository."""

from __future__ import annotations

import json

from tests.conftest import gen, git, read_tree


def test_add_commit_edit_status_commit_checkout(scm, run):
    assert run("init").code == 0
    gen(scm, {"data": {"a": {"1.txt": "one", "2.txt": "two"}, "b": {"3.bin": b"\0\1\2"}},
              "model.bin": b"weights" * 1000})
    v1 = read_tree(scm / "data")
    r = run("add", "data/", "model.bin")
    assert r.code == 0, r
    assert (scm / "data.datavc").exists() and (scm / "model.bin.datavc").exists()
    assert "/data" in (scm / ".gitignore").read_text().splitlines()
    r = run("commit", "-m", "v1")
    assert r.code == 0, r
    assert "data.datavc" in git(scm, "show", "--name-only", "HEAD")

    (scm / "data/a/1.txt").write_text("ONE")
    (scm / "data/b/3.bin").unlink()
    (scm / "data/a/new.txt").write_text("new")
    r = run("status", "--json")
    assert r.code == 0, r
    [st] = [s for s in json.loads(r.out) if s["path"] == "data"]
    assert st["state"] == "modified"
    assert {(c["path"], c["change"]) for c in st["changes"]} == {
        ("data/a/1.txt", "modified"), ("data/b/3.bin", "deleted"), ("data/a/new.txt", "added"),
        ("data/b", "added")}  # data/b stays, now empty: an empty directory came

    assert run("commit", "-m", "v2").code == 0
    v2 = read_tree(scm / "data")
    git(scm, "checkout", "HEAD~1", "--", "data.datavc")
    r = run("checkout")
    assert r.code == 0, r
    assert read_tree(scm / "data") == v1
    git(scm, "checkout", "HEAD", "--", "data.datavc")
    assert run("checkout").code == 0
    assert read_tree(scm / "data") == v2
    r = run("status")
    assert r.code == 0 and "up to date" in r.out


def test_not_a_repo_exits_10(tmp_path, run):
    r = run("status", cwd=tmp_path)
    assert r.code == 10
    assert "datavc init" in r.err and "Traceback" not in r.err
