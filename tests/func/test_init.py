"""`datavc init`: in git, twice, outside git, --no-scm, from a subdirectory. (The merge
driver it sets up is tested in test_merge.py.)"""

from __future__ import annotations

from tests.conftest import git
from tests.func.helpers import fails, ok


def test_init_in_git_creates_layout_and_stages_config(scm, run):
    r = ok(run("init"))
    assert "Initialized datavc repository" in r.out
    assert (scm / ".datavc/config.toml").is_file()
    assert (scm / ".datavc/cache/objects").is_dir()
    ignored = (scm / ".datavc/.gitignore").read_text().splitlines()
    assert {"/cache/", "/tmp/", "/state/", "/config.local.toml"} <= set(ignored)
    staged = git(scm, "diff", "--cached", "--name-only").split()
    assert staged == [".datavc/.gitignore", ".datavc/config.toml", ".gitattributes"]
    assert "format = 1" in (scm / ".datavc/config.toml").read_text()


def test_init_twice_reinitializes_and_keeps_the_repo(scm, run):
    ok(run("init"))
    (scm / "f").write_text("x")
    ok(run("add", "f"))
    (scm / ".datavc/config.toml").write_text("[core]\nformat = 1\n\n[cache]\njobs = 2\n")
    before = sorted(p.name for p in (scm / ".datavc").iterdir())
    staged = git(scm, "diff", "--cached", "--name-only")
    r = ok(run("init"))
    assert "Reinitialized existing datavc repository" in r.out and "Staged" not in r.out
    assert sorted(p.name for p in (scm / ".datavc").iterdir()) == before
    assert "jobs = 2" in (scm / ".datavc/config.toml").read_text()  # left as it was
    assert git(scm, "diff", "--cached", "--name-only") == staged
    ok(run("status"))


def test_init_outside_git_fails_with_hint(tmp_path, run):
    bare = tmp_path / "plain"
    bare.mkdir()
    r = fails(run("init", cwd=bare), 1)
    assert "not inside a git work tree" in r.err
    assert "git init" in r.err and "--no-scm" in r.err
    assert not (bare / ".datavc").exists()


def test_init_no_scm_outside_git(tmp_path, run):
    bare = tmp_path / "plain"
    bare.mkdir()
    r = ok(run("init", "--no-scm", cwd=bare))
    assert "Staged" not in r.out
    (bare / "f").write_text("data")
    r = ok(run("add", "f", cwd=bare))
    assert (bare / "f.datavc").is_file()
    assert not (bare / ".gitignore").exists()  # nothing to ignore without git
    ok(run("status", cwd=bare))
    ok(run("commit", cwd=bare))
    r = fails(run("commit", "-m", "x", cwd=bare), 1)
    assert "not in a git work tree" in r.err and "git init" in r.err


def test_init_from_a_subdirectory_uses_the_work_tree_root(scm, run):
    sub = scm / "a" / "b"
    sub.mkdir(parents=True)
    r = ok(run("init", cwd=sub))
    assert (scm / ".datavc").is_dir()
    assert not (sub / ".datavc").exists()
    assert str(scm / ".datavc") in r.out
    assert "Reinitialized" in ok(run("init", cwd=sub)).out
    assert not (sub / ".datavc").exists()


def test_commands_in_a_subdirectory_find_the_repo(root, run):
    sub = root / "deep" / "er"
    sub.mkdir(parents=True)
    r = ok(run("status", cwd=sub))
    assert "Nothing is tracked yet" in r.out
