"""scm: .gitignore entries for tracked data, what git tracks, committing manifests."""

from __future__ import annotations

import subprocess

import pytest

from datavc.errors import DatavcError
from datavc.scm import Git, discover_worktree, ensure_ignored, gitignore_pattern, index_file
from tests.conftest import gen, git


@pytest.mark.parametrize(("name", "line"), [
    ("data", "/data"), ("a*b", "/a\\*b"), ("q?", "/q\\?"), ("[x]", "/\\[x\\]"),
    ("#hash", "/\\#hash"), ("!bang", "/\\!bang"), ("back\\slash", "/back\\\\slash"),
    ("trail ", "/trail\\ "), ("two  ", "/two \\ "), ("é", "/é"),
])
def test_gitignore_pattern_escapes(name, line):
    assert gitignore_pattern(name) == line


def _ignored(root, path) -> bool:
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=root)
    return proc.returncode == 0


@pytest.mark.parametrize(("name", "decoys"), [
    ("a*b", ["aXb", "ab"]), ("[x]", ["x", "[y]"]), ("#hash", ["hash"]), ("!bang", ["bang"]),
    ("q?", ["qq", "q"]), ("trail ", ["trail"]), ("plain", ["plainer", "sub/plain"]),
])
def test_git_ignores_exactly_that_name(scm, name, decoys):
    gen(scm, {"sub": {}})
    ensure_ignored(str(scm), name)
    assert _ignored(scm, name)
    for decoy in decoys:
        assert not _ignored(scm, decoy), decoy


def test_ensure_ignored_is_idempotent(tmp_path):
    assert ensure_ignored(str(tmp_path), "data") == ".gitignore"
    before = (tmp_path / ".gitignore").read_bytes()
    assert ensure_ignored(str(tmp_path), "data") is None
    assert (tmp_path / ".gitignore").read_bytes() == before == b"/data\n"


def test_ensure_ignored_nested_and_keeps_existing_lines(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / ".gitignore").write_bytes(b"*.log")  # no trailing newline
    assert ensure_ignored(str(tmp_path), "a/b/images") == "a/b/.gitignore"
    assert (tmp_path / "a/b/.gitignore").read_bytes() == b"*.log\n/images\n"
    assert ensure_ignored(str(tmp_path), "a/b/images") is None


def test_ensure_ignored_recognises_crlf_files(tmp_path):
    (tmp_path / ".gitignore").write_bytes(b"/x\r\n/data\r\n")
    assert ensure_ignored(str(tmp_path), "data") is None


def test_ensure_ignored_name_with_newline_cannot_inject_a_line(tmp_path):
    name = "x\ndata.datavc"  # the second line would hide every data.datavc from git
    try:
        ensure_ignored(str(tmp_path), name)
    except DatavcError:
        return
    assert "data.datavc" not in (tmp_path / ".gitignore").read_text().splitlines()
    assert ensure_ignored(str(tmp_path), name) is None


def test_discover_worktree(scm, tmp_path):
    (scm / "deep" / "er").mkdir(parents=True)
    assert discover_worktree(str(scm / "deep" / "er")) == str(scm)
    (tmp_path / "nogit").mkdir()
    assert discover_worktree(str(tmp_path / "nogit")) is None


def test_tracked_under(scm):
    gen(scm, {"data": {"a": "1", "s": {"b": "2"}}, "database": "x", "other": "y"})
    git(scm, "add", "data", "database", "other")
    g = Git(str(scm))
    assert sorted(g.tracked_under("data")) == ["data/a", "data/s/b"]
    assert g.tracked_under("data/s/b") == ["data/s/b"]
    assert g.tracked_under("dat") == [] and g.tracked_under("nothing") == []


def test_index_file_only_where_it_is_plain_to_see(scm, tmp_path, monkeypatch):
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_INDEX_FILE", raising=False)
    assert index_file(str(scm)) == str(scm / ".git" / "index")
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "elsewhere"))
    assert index_file(str(scm)) is None
    monkeypatch.delenv("GIT_INDEX_FILE")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".git").write_text(f"gitdir: {scm / '.git'}\n")  # a linked work tree's
    assert index_file(str(linked)) is None
    assert index_file(str(tmp_path)) is None  # no git at all


def test_commit_returns_none_when_nothing_changed(scm):
    gen(scm, {"data.datavc": "{}\n"})
    g = Git(str(scm))
    first = g.commit("first", ["data.datavc"])
    assert first and git(scm, "rev-parse", "HEAD").strip() == first
    assert g.commit("again", ["data.datavc"]) is None
    assert git(scm, "rev-parse", "HEAD").strip() == first
    (scm / "data.datavc").write_text('{"v": 2}\n')
    second = g.commit("second", ["data.datavc"])
    assert second and second != first
    assert git(scm, "log", "-1", "--format=%s%n%P").split() == ["second", first]


def test_commit_of_a_deleted_path_removes_it(scm):
    gen(scm, {"x.datavc": "1", "y.datavc": "2"})
    g = Git(str(scm))
    g.commit("both", ["x.datavc", "y.datavc"])
    (scm / "y.datavc").unlink()
    assert g.commit("drop y", ["y.datavc"])
    assert git(scm, "ls-tree", "--name-only", "HEAD").split() == ["x.datavc"]


def test_commit_without_identity_is_a_clear_error(scm, monkeypatch):
    git(scm, "config", "--unset", "user.name")
    git(scm, "config", "--unset", "user.email")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var)
    gen(scm, {"a": "1"})
    with pytest.raises(DatavcError) as info:
        Git(str(scm)).commit("m", ["a"])
    assert "git config user.name" in info.value.hint


# --- reading history straight from git objects --------------------------------------------


@pytest.fixture
def history(scm):
    """Two commits: a.txt v1 then v2, plus sub/b.datavc and a symlink in the second."""
    import os

    gen(scm, {"a.txt": "v1\n"})
    git(scm, "add", "-A")
    git(scm, "commit", "-qm", "one")
    gen(scm, {"a.txt": "v2\n", "sub": {"b.datavc": "{}\n"}, "big.bin": b"x" * 5000})
    os.symlink("a.txt", scm / "link.datavc")
    git(scm, "add", "-A")
    git(scm, "commit", "-qm", "two")
    return scm


def test_resolve_gives_the_commit_id(history):
    g = Git(str(history))
    assert g.resolve("HEAD") == git(history, "rev-parse", "HEAD").strip()
    assert g.resolve("HEAD~1") == git(history, "rev-parse", "HEAD~1").strip()
    assert g.resolve("main") == g.resolve("HEAD")


@pytest.mark.parametrize("rev", ["nope", "HEAD~5", "HEAD:a.txt", "..", "0" * 40, ""])
def test_resolve_unknown_revision_is_a_clear_error(history, rev):
    with pytest.raises(DatavcError) as info:
        Git(str(history)).resolve(rev)
    assert info.value.exit_code == 1
    assert f"'{rev}'" in info.value.message
    assert "git log --oneline" in (info.value.hint or "")


def test_read_file_at_any_revision_without_checking_out(history):
    g = Git(str(history))
    head = git(history, "rev-parse", "HEAD").strip()
    assert g.read_file("HEAD~1", "a.txt") == b"v1\n"
    assert g.read_file("HEAD", "a.txt") == b"v2\n"
    assert g.read_file("HEAD", "sub/b.datavc") == b"{}\n"
    assert (history / "a.txt").read_bytes() == b"v2\n"
    assert git(history, "rev-parse", "HEAD").strip() == head
    assert git(history, "status", "--porcelain") == ""


@pytest.mark.parametrize("path", ["missing", "sub/missing", "a.txt/x", "sub", "/a.txt",
                                  "link.datavc"])
def test_read_file_missing_path_is_none(history, path):
    assert Git(str(history)).read_file("HEAD", path) is None


def test_read_file_missing_in_older_revision(history):
    assert Git(str(history)).read_file("HEAD~1", "sub/b.datavc") is None


def test_read_file_refuses_a_big_blob(history):
    g = Git(str(history))
    with pytest.raises(DatavcError) as info:
        g.read_file("HEAD", "big.bin", max_bytes=4096)
    assert info.value.exit_code == 6
    assert "big.bin" in info.value.message
    assert g.read_file("HEAD", "big.bin", max_bytes=5000) == b"x" * 5000


def test_read_file_unknown_revision(history):
    with pytest.raises(DatavcError) as info:
        Git(str(history)).read_file("nope", "a.txt")
    assert "'nope'" in info.value.message


def test_files_lists_regular_files_by_suffix(history):
    gen(history, {".datavc": {"x.datavc": "{}"}})
    git(history, "add", "-f", "-A")
    git(history, "commit", "-qm", "three")
    g = Git(str(history))
    assert g.files("HEAD", suffix=".datavc") == ["sub/b.datavc"]  # not the symlink, not .datavc/
    assert g.files("HEAD~2", suffix=".datavc") == []
