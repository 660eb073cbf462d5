"""`datavc diff` and `datavc log` over real multi-commit git histories."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import gen, git
from tests.func import test_history
from tests.func.helpers import fails, object_path, oid_of, ok, write_pointer

hist = test_history.hist  # the fixture: data/ committed as V1, V2, V3

CHANGE_KEYS = {"path", "change", "kind", "old", "new", "old_size", "new_size", "old_path"}


def changes(run, *args) -> list[tuple[str, str]]:
    doc = json.loads(ok(run("diff", *args, "--json")).out)
    for c in doc["changes"]:
        assert set(c) == CHANGE_KEYS
    return [(c["path"], c["change"]) for c in doc["changes"]]


# ------------------------------------------------------------------ diff

def test_diff_between_two_revisions(hist, run):
    assert changes(run, "HEAD~2", "HEAD~1") == [
        ("data/a", "modified"), ("data/b", "deleted"), ("data/d", "added")]
    assert changes(run, "HEAD~1", "HEAD") == [
        ("data/empty", "deleted"), ("data/sub/c", "modified"), ("data/sub/e", "added")]


def test_diff_json_names_both_commits_ids_sizes_and_totals(hist, run):
    doc = json.loads(ok(run("diff", "HEAD~2", "HEAD~1", "--json")).out)
    assert doc["a"] == git(hist, "rev-parse", "HEAD~2").strip()
    assert doc["b"] == git(hist, "rev-parse", "HEAD~1").strip()
    assert doc["workspace"] is False
    a = next(c for c in doc["changes"] if c["path"] == "data/a")
    assert (a["old"], a["new"]) == (oid_of(b"a one\n"), oid_of(b"a two\n"))
    assert (a["old_size"], a["new_size"]) == (6, 6)
    assert doc["stat"] == {"added": 1, "modified": 1, "deleted": 1, "renamed": 0,
                           "size_delta": 0}


def test_diff_of_a_revision_with_itself_is_empty(hist, run):
    assert changes(run, "HEAD~1", "HEAD~1") == []
    assert "No data changes." in ok(run("diff", "HEAD", "HEAD")).out


def test_diff_defaults_to_head_against_the_workspace_data(hist, run):
    assert changes(run) == []
    (hist / "data/a").chmod(0o644)
    (hist / "data/a").write_text("edited\n")
    (hist / "data/new").write_text("new\n")
    doc = json.loads(ok(run("diff", "--json")).out)
    assert doc["workspace"] is True and doc["b"] is None
    assert [(c["path"], c["change"]) for c in doc["changes"]] == [
        ("data/a", "modified"), ("data/new", "added")]
    # one revision: that revision against the workspace
    assert ("data/b", "added") not in changes(run, "HEAD~2")
    assert ("data/b", "deleted") in changes(run, "HEAD~2")


def test_diff_reports_a_moved_file_as_renamed(hist, run):
    (hist / "data/sub/c").rename(hist / "data/moved-c")
    doc = json.loads(ok(run("diff", "--json")).out)
    [c] = doc["changes"]
    assert (c["change"], c["old_path"], c["path"]) == ("renamed", "data/sub/c", "data/moved-c")
    assert c["old"] == c["new"] == oid_of(b"c three\n")
    assert doc["stat"]["renamed"] == 1
    assert "renamed:   data/sub/c -> data/moved-c" in ok(run("diff")).out


def test_diff_stat_prints_totals_only(hist, run):
    out = ok(run("diff", "HEAD~2", "HEAD", "--stat")).out
    assert out.strip().splitlines() == ["2 added, 2 modified, 1 deleted, +10 B"]


def test_diff_restricted_to_a_path_inside_a_target(hist, run):
    assert changes(run, "HEAD~2", "HEAD", "data/sub") == [
        ("data/sub/c", "modified"), ("data/sub/e", "added")]
    assert changes(run, "HEAD~2", "HEAD", "data/sub/c") == [("data/sub/c", "modified")]
    assert changes(run, "HEAD~2", "HEAD", "data/a", "data/b") == [
        ("data/a", "modified"), ("data/b", "deleted")]


def test_diff_of_a_directory_holding_several_targets(root, run):
    gen(root, {"sets": {"x": {"1": "1"}, "y": {"2": "2"}}})
    ok(run("add", "sets/x", "sets/y"))
    ok(run("commit", "-m", "one"))
    (root / "sets/y/3").write_text("3")
    assert changes(run, "HEAD", "sets") == [("sets/y/3", "added")]


def test_diff_of_a_target_added_or_removed_between_revisions(hist, run):
    gen(hist, {"more": {"m": "m"}})
    ok(run("add", "more"))
    ok(run("commit", "-m", "more"))
    assert changes(run, "HEAD~1", "HEAD") == [("more/m", "added")]
    assert changes(run, "HEAD", "HEAD~1") == [("more/m", "deleted")]


def test_diff_before_the_first_commit_shows_everything_added(root, run):
    gen(root, {"data": {"f": "f"}})
    ok(run("add", "data"))
    assert changes(run) == [("data/f", "added")]


def test_diff_reads_only_the_differing_subtrees(hist, run):
    """Listings of unchanged subtrees may be absent from the cache: diff never needs them."""
    doc = json.loads(ok(run("ls-manifest", "data.datavc", "--json")).out)
    sub = next(e for e in doc if e["path"] == "data/sub")
    os.chmod(object_path(hist, sub["oid"]), 0o644)
    object_path(hist, sub["oid"]).unlink()
    (hist / "data/a").chmod(0o644)
    (hist / "data/a").write_text("changed\n")
    ok(run("add", "data"))
    ok(run("commit", "-m", "v4"))
    assert changes(run, "HEAD~1", "HEAD") == [("data/a", "modified")]


def test_diff_needing_a_missing_listing_fails_with_exit_1(hist, run):
    doc = json.loads(ok(run("ls-manifest", "data.datavc", "--json")).out)
    sub = next(e for e in doc if e["path"] == "data/sub")
    os.chmod(object_path(hist, sub["oid"]), 0o644)
    object_path(hist, sub["oid"]).unlink()
    r = fails(run("diff", "HEAD~1", "HEAD"), 1)
    assert "cannot diff 'data'" in r.err and "not in the cache" in r.err


def test_diff_unknown_revision_or_untracked_path(hist, run):
    # an argument that is not a revision is a target, and an unknown target is an error
    r = fails(run("diff", "no-such-rev"), 1)
    assert "'no-such-rev' is not tracked" in r.err
    fails(run("diff", "HEAD", "HEAD~1", "nothing-here"), 1)


def test_diff_path_that_is_also_a_revision_name_is_ambiguous(hist, run):
    git(hist, "branch", "data")
    r = fails(run("diff", "data"), 2)
    assert "both a git revision and a path" in r.err and "./data" in r.err
    assert changes(run, "HEAD~1", "HEAD", "./data/sub") == [
        ("data/sub/c", "modified"), ("data/sub/e", "added")]


def test_diff_takes_at_most_two_revisions(hist, run):
    r = fails(run("diff", "HEAD~2", "HEAD~1", "HEAD"), 2)
    assert "third revision" in r.err


def test_diff_refuses_an_invalid_manifest_in_history(hist, run):
    write_pointer(hist, "data", {"datavc": 99, "kind": "dir"})
    git(hist, "commit", "-qam", "hostile")
    r = fails(run("diff", "HEAD~1", "HEAD"), 6)
    assert "data.datavc" in r.err


def test_diff_outside_git_is_a_clear_error(tmp_path, run, monkeypatch):
    plain = tmp_path / "plain"
    plain.mkdir()
    ok(run("init", "--no-scm", cwd=plain))
    r = fails(run("diff", cwd=plain), 1)
    assert "git" in r.err


# ------------------------------------------------------------------- log

def test_log_lists_each_commit_that_changed_the_data(hist, run):
    entries = json.loads(ok(run("log", "data", "--json")).out)
    assert [e["message"] for e in entries] == ["v3", "v2", "v1"]
    assert [e["change"] for e in entries] == ["modified", "modified", "added"]
    assert [e["nfiles"] for e in entries] == [4, 3, 3]
    assert entries[-1]["commit"] == git(hist, "rev-list", "--max-parents=0", "HEAD").strip()
    assert set(entries[0]) == {"commit", "author", "email", "date", "message", "change", "oid",
                               "size", "nfiles", "error"}
    assert entries[0]["author"] == "Test" and entries[0]["email"] == "test@example.com"
    assert entries[0]["oid"] == json.loads((hist / "data.datavc").read_text())["oid"]


def test_log_skips_commits_that_did_not_change_the_target(hist, run):
    (hist / "README").write_text("docs\n")
    git(hist, "add", "README")
    git(hist, "commit", "-qm", "docs only")
    # a manifest rewritten with the same id (metadata only) is no data change
    doc = json.loads((hist / "data.datavc").read_text())
    doc["meta"] = {"note": "relabelled"}
    write_pointer(hist, "data", doc)
    git(hist, "commit", "-qam", "meta only")
    assert [e["message"] for e in json.loads(ok(run("log", "data", "--json")).out)] == [
        "v3", "v2", "v1"]


def test_log_reports_deletion_and_readdition(hist, run):
    git(hist, "rm", "-q", "data.datavc")
    git(hist, "commit", "-qm", "drop")
    ok(run("add", "data"))
    ok(run("commit", "-m", "back"))
    entries = json.loads(ok(run("log", "data", "--json")).out)
    assert [(e["message"], e["change"]) for e in entries[:2]] == [
        ("back", "added"), ("drop", "deleted")]
    assert entries[1]["oid"] is None and entries[1]["nfiles"] is None


def test_log_text_output(hist, run):
    out = ok(run("log", "data")).out
    head = git(hist, "rev-parse", "HEAD").strip()
    assert out.startswith(head[:12])
    assert "modified: 4 file(s)" in out and "    v3" in out


def test_log_rev_starts_from_an_older_commit(hist, run):
    entries = json.loads(ok(run("log", "data", "--rev", "HEAD~1", "--json")).out)
    assert [e["message"] for e in entries] == ["v2", "v1"]


def test_log_reports_an_invalid_manifest_and_reads_nothing_of_it(hist, run):
    write_pointer(hist, "data", {"datavc": 1, "kind": "dir", "oid": "../../etc/passwd",
                                 "size": 1, "nfiles": 1})
    git(hist, "commit", "-qam", "hostile")
    r = ok(run("log", "data", "--json"))
    top = json.loads(r.out)[0]
    assert top["message"] == "hostile" and top["error"] and top["oid"] is None
    assert "invalid" in r.err


def test_log_of_something_never_tracked_is_an_error(hist, run):
    r = fails(run("log", "nothing"), 1)
    assert "no history" in r.err


def test_log_before_the_first_commit_is_empty(root, run):
    assert json.loads(ok(run("log", "data", "--json")).out) == []


@pytest.mark.parametrize("cmd", ["diff", "log"])
def test_help_has_examples(run, cmd):
    assert "Example" in ok(run(cmd, "--help")).out

