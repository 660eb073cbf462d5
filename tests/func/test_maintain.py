"""check, level, install/uninstall, gc and fsck through the CLI in real git repositories."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import gen, git
from tests.func.helpers import cache_objects, fails, object_path, oid_of, ok

DATA = {"a": "alpha\n", "sub": {"b": "beta\n"}}


def committed(root, run, spec=DATA, message="v1"):
    gen(root, {"data": spec})
    ok(run("add", "data"))
    ok(run("commit", "-m", message))


def with_remote(root, run, tmp_path):
    ok(run("remote", "add", "storage", str(tmp_path / "remote"), "--default"))
    git(root, "add", ".datavc/config.toml")
    git(root, "commit", "-qm", "remote")


def edit(root, rel, text):
    p = root / rel
    p.chmod(0o644)
    p.write_text(text)


# ------------------------------------------------------------------ check

def problems(run, *args):
    r = run("check", "--json", *args)
    doc = json.loads(r.out)
    assert set(doc) == {"pinned", "targets", "remote", "problems"}
    return r.code, {(p["path"], p["problem"]) for p in doc["problems"]}


def test_check_passes_when_everything_is_pinned(root, run, tmp_path):
    committed(root, run)
    with_remote(root, run, tmp_path)
    ok(run("push"))
    assert problems(run) == (0, set())
    assert "Pinned: 1 dataset(s), all on remote storage." in ok(run("check")).out


def test_check_names_each_kind_of_problem(root, run, tmp_path):
    committed(root, run)
    with_remote(root, run, tmp_path)
    assert problems(run) == (1, {("data", "not-on-remote")})
    ok(run("push"))
    edit(root, "data/a", "edited\n")
    assert problems(run) == (1, {("data", "workspace-modified")})
    ok(run("add", "data"))
    code, found = problems(run)
    assert code == 1 and found == {("data", "uncommitted-manifest"), ("data", "not-on-remote")}
    assert problems(run, "--no-remote")[1] == {("data", "uncommitted-manifest")}
    git(root, "add", "data.datavc")
    assert problems(run, "--no-remote", "--staged") == (0, set())
    r = fails(run("check"), 1)
    assert "data: uncommitted-manifest:" in r.out and "not pinned" in r.err


def test_check_flags_a_path_git_also_tracks(root, run):
    committed(root, run)
    (root / "data/extra").write_text("x")
    git(root, "add", "-f", "data/extra")
    git(root, "commit", "-qm", "oops")
    assert ("data", "tracked-by-git") in problems(run)[1]


def test_check_deleted_workspace_data_is_still_pinned(root, run):
    committed(root, run)
    for p in sorted((root / "data").rglob("*"), reverse=True):
        p.chmod(0o755)
        p.rmdir() if p.is_dir() else p.unlink()
    (root / "data").rmdir()
    assert problems(run) == (0, set())


def test_check_in_a_fresh_clone_reads_listings_from_the_remote(root, run, tmp_path):
    committed(root, run)
    with_remote(root, run, tmp_path)
    ok(run("push"))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    r = run("check", "--json", cwd=clone)
    assert r.code == 0, r
    assert json.loads(r.out)["pinned"] is True


# ------------------------------------------------------------------ level

def test_level_climbs_with_the_repository(root, run, tmp_path):
    def level():
        return json.loads(ok(run("level", "--json")).out)

    doc = level()
    assert doc["level"] == 0 and set(doc) == {"level", "summary", "next_step", "targets",
                                              "remote", "unversioned", "unversioned_cut"}
    imgs = root / "raw"
    imgs.mkdir()
    for i in range(100):
        (imgs / f"{i}.png").write_bytes(b"p")
    assert [e["path"] for e in level()["unversioned"]] == ["raw"]
    assert "datavc add raw" in level()["next_step"]
    committed(root, run)
    assert level()["level"] == 1
    with_remote(root, run, tmp_path)
    assert level()["level"] == 2
    assert "level 2" in ok(run("level")).out


# ---------------------------------------------------------- install hooks

def test_install_chains_an_existing_hook_and_the_hook_runs(root, run):
    hooks = root / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\necho theirs > theirs.log\n")
    (hooks / "pre-commit").chmod(0o755)
    changes = {c["hook"]: c["action"] for c in json.loads(ok(run("install", "--json")).out)}
    assert changes == {"pre-commit": "chained", "pre-push": "installed",
                       "post-checkout": "installed"}
    committed(root, run)  # datavc commit: git runs no hooks for it
    edit(root, "data/a", "edited\n")
    ok(run("add", "data"))
    (root / "note").write_text("n")
    git(root, "add", "note")
    # the pre-commit hook: theirs runs, then `datavc check --no-remote --staged`
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + ":" + os.environ["PATH"]}

    def commit(*paths):
        return subprocess.run(["git", "commit", "-qm", "v2", *paths], cwd=root,
                              capture_output=True, text=True, env=env)

    r = commit()  # data.datavc changed but not staged: refused
    assert r.returncode == 1 and "uncommitted-manifest" in r.stdout + r.stderr
    assert (root / "theirs.log").exists()
    git(root, "add", "data.datavc")
    r = commit()
    assert r.returncode == 0, r.stderr
    ok(run("uninstall"))
    assert "theirs" in (hooks / "pre-commit").read_text()


def test_install_twice_changes_nothing(root, run):
    ok(run("install"))
    doc = json.loads(ok(run("install", "--json")).out)
    assert {c["action"] for c in doc} == {"unchanged"}


# --------------------------------------------------------------------- gc

def gc(run, *args):
    r = ok(run("gc", "--json", *args))
    return {d["where"]: d for d in json.loads(r.out)}


def test_gc_needs_a_scope(root, run):
    fails(run("gc"), 2)


def test_gc_keeps_what_kept_revisions_name(root, run):
    committed(root, run, message="v1")
    git(root, "tag", "v1")
    edit(root, "data/a", "two\n")
    ok(run("commit", "-m", "v2"))
    old = object_path(root, oid_of(b"alpha\n"))
    assert gc(run, "--all-tags", "--grace", "0")["cache"]["deleted"] == 0
    dry = gc(run, "--workspace", "--dry-run", "--grace", "0")["cache"]
    assert dry["dry_run"] and dry["deleted"] >= 1 and old.exists()
    done = gc(run, "--workspace", "--grace", "0")["cache"]
    assert done["deleted"] == dry["deleted"] and not old.exists()
    assert object_path(root, oid_of(b"two\n")).exists()


def test_gc_grace_period_keeps_recent_unreferenced_objects(root, run):
    committed(root, run)
    ok(run("hash-object", "-w", "data/a"))  # referenced anyway
    (root / "loose").write_text("loose object\n")
    ok(run("hash-object", "-w", "loose"))
    doc = gc(run, "--workspace")["cache"]  # default grace: 1h
    assert doc["deleted"] == 0 and doc["recent"] == 1
    assert object_path(root, oid_of(b"loose object\n")).exists()


def test_gc_keeps_the_objects_of_an_add_killed_before_its_manifest(root, run):
    committed(root, run)
    (root / "data/new").write_text("new data\n")
    r = run("add", "data", env={"DATAVC_CRASH_AT": "manifest-tmp-written"})
    assert r.code != 0
    gc(run, "--workspace")
    assert object_path(root, oid_of(b"new data\n")).exists()


def test_gc_fails_closed_when_a_kept_revision_cannot_be_read(root, run):
    committed(root, run, message="v1")
    edit(root, "data/a", "two\n")
    ok(run("commit", "-m", "v2"))
    first_top = json.loads(git(root, "show", "HEAD~1:data.datavc"))["oid"]
    path = object_path(root, first_top)
    path.chmod(0o644)
    path.unlink()
    before = len(cache_objects(root))
    r = fails(run("gc", "--all-commits", "--grace", "0"), 1)
    assert "nothing was deleted" in r.err
    assert len(cache_objects(root)) == before


def two_versions_pushed(root, run, tmp_path):
    """v1 and v2 (data/a rewritten) committed and both pushed to the remote 'storage'."""
    committed(root, run, message="v1")
    with_remote(root, run, tmp_path)
    ok(run("push"))
    edit(root, "data/a", "two\n")
    ok(run("commit", "-m", "v2"))
    ok(run("push"))


def remote_object(tmp_path, content):
    oid = oid_of(content)
    return tmp_path / "remote/objects" / oid[7:9] / oid[9:]


def test_gc_on_a_remote_needs_confirmation_and_keeps_what_is_named(root, run, tmp_path):
    two_versions_pushed(root, run, tmp_path)
    fails(run("gc", "--workspace", "--remote", "storage"), 2)  # no tty, no --yes
    doc = gc(run, "--workspace", "--remote", "storage", "--yes", "--grace", "0")
    assert doc["remote storage"]["deleted"] >= 2  # v1's copy of a and its listing
    assert remote_object(tmp_path, b"two\n").exists()


def test_gc_on_a_remote_keeps_what_was_pushed_within_the_grace_period(root, run, tmp_path):
    """A teammate's fresh push whose commit this clone has not seen yet must survive."""
    two_versions_pushed(root, run, tmp_path)
    doc = gc(run, "--workspace", "--remote", "storage", "--yes")  # grace: 1 hour
    assert doc["remote storage"]["deleted"] == 0 and doc["remote storage"]["recent"] >= 2
    old_a = remote_object(tmp_path, b"alpha\n")
    assert old_a.exists()
    doc = gc(run, "--workspace", "--remote", "storage", "--dry-run", "--grace", "0")
    assert doc["remote storage"]["deleted"] >= 2 and doc["remote storage"]["bytes"] > 0
    assert doc["remote storage"]["recent"] == 0 and old_a.exists()


# ------------------------------------------------------------------- fsck

@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "misname", "missing"])
def test_fsck_finds_each_corruption_and_checkout_refuses_it(root, run, damage):
    committed(root, run)
    oid = oid_of(b"beta\n")
    path = object_path(root, oid)
    path.chmod(0o644)
    if damage == "flip":
        path.write_bytes(b"Beta\n")
    elif damage == "truncate":
        path.write_bytes(b"be")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "misname":
        path.write_bytes(b"alpha\n")
    else:
        path.unlink()
    r = run("fsck", "--read-data", "--json")
    doc = json.loads(r.out)
    [p] = doc["problems"]
    assert p["oid"] == oid and p["paths"] == ["data/sub/b"]
    assert r.code == (1 if damage == "missing" else 3)
    (root / "data/sub/b").chmod(0o644)
    (root / "data/sub/b").unlink()
    r = run("checkout", "data")
    assert r.code in (1, 3) and not (root / "data/sub/b").exists()


def test_fsck_repair_refetches_from_the_remote(root, run, tmp_path):
    committed(root, run)
    with_remote(root, run, tmp_path)
    ok(run("push"))
    path = object_path(root, oid_of(b"beta\n"))
    path.chmod(0o644)
    path.write_bytes(b"BETA\n")
    fails(run("fsck", "--read-data"), 3)
    doc = json.loads(ok(run("fsck", "--read-data", "--repair", "--json")).out)
    assert doc["repaired"] == [oid_of(b"beta\n")] and doc["problems"] == []
    assert path.read_bytes() == b"beta\n"


def test_fsck_checks_the_remote(root, run, tmp_path):
    committed(root, run)
    with_remote(root, run, tmp_path)
    fails(run("fsck", "--remote", "storage"), 1)  # nothing pushed yet
    ok(run("push"))
    ok(run("fsck", "--read-data", "--remote", "storage"))


@pytest.mark.parametrize("cmd", ["check", "level", "install", "uninstall", "gc", "fsck"])
def test_help_has_examples(run, cmd):
    assert "Example" in ok(run(cmd, "--help")).out


def test_gc_never_races_a_writer_holding_the_lock(root, run):
    """An add in progress (holding the lock, objects written, manifest not yet) blocks gc:
    exit 4, nothing deleted."""
    from tests.func.test_exit_codes import lock_held

    committed(root, run)
    (root / "loose").write_text("being added\n")
    ok(run("hash-object", "-w", "loose"))
    with lock_held(root):
        fails(run("gc", "--workspace", "--grace", "0"), 4)
    assert object_path(root, oid_of(b"being added\n")).exists()


def test_check_reports_an_invalid_manifest(root, run):
    committed(root, run)
    (root / "data.datavc").write_text('{"datavc": 99}')
    code, found = problems(run, "--no-remote")
    assert code == 1 and ("", "invalid") in found | {("", p) for _, p in found}


# ------------------------------------------------------- with a pipeline

def copy_stage(root, run):
    (root / "src.txt").write_text("input\n")
    code = "import shutil; shutil.copy('src.txt', 'out.txt')"
    ok(run("stage", "add", "-n", "copy", "-d", "src.txt", "-o", "out.txt", "--",
           sys.executable, "-c", code))


def test_check_names_a_stale_stage_and_level_3_needs_an_up_to_date_pipeline(root, run,
                                                                            tmp_path):
    committed(root, run)
    with_remote(root, run, tmp_path)
    ok(run("push"))
    copy_stage(root, run)
    code, found = problems(run, "--no-remote")
    assert code == 1 and found == {("stage copy", "stage-stale")}
    assert json.loads(ok(run("level", "--json")).out)["level"] == 2
    ok(run("repro"))
    assert problems(run, "--no-remote") == (0, set())
    doc = json.loads(ok(run("level", "--json")).out)
    assert doc["level"] == 3, doc
    # data/ was added by hand and no stage reads or writes it
    assert [(e["kind"], e["path"]) for e in doc["unversioned"]] == [("outside-pipeline",
                                                                     "data")]
    assert "tracked by hand, no stage reads or writes it: data" in ok(run("level")).out
    (root / "src.txt").write_text("changed\n")
    assert ("stage copy", "stage-stale") in problems(run, "--no-remote")[1]


def test_gc_and_fsck_keep_and_check_stage_outputs(root, run):
    copy_stage(root, run)
    ok(run("repro"))
    out = object_path(root, oid_of(b"input\n"))
    assert out.exists()
    gc(run, "--workspace", "--grace", "0")
    assert out.exists()  # a stage output is data a revision names
    doc = json.loads(ok(run("fsck", "--read-data", "--json")).out)
    assert doc["checked"] >= 1 and doc["problems"] == []
    out.chmod(0o644)
    out.write_bytes(b"damaged\n")
    r = run("fsck", "--read-data", "--json")
    assert r.code == 3 and json.loads(r.out)["problems"][0]["paths"] == ["out.txt"]
