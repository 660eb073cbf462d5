"""`datavc checkout`: restoring data, never losing what is not in the cache, --force."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from tests.conftest import gen, git, read_tree
from tests.func.helpers import fails, object_path, oid_of, ok, snapshot

CHECKOUT_KEYS = {"path", "written", "deleted", "missing", "forced"}
V1 = {"a.txt": "alpha", "empty.txt": "", "sub": {"b.txt": "beta", "deeper": {"c.bin": b"\0c"}},
      "hollow": {}}


@pytest.fixture
def data(root, run):
    gen(root, {"data": V1, "model.bin": b"weights"})
    os.chmod(root / "data/sub/b.txt", 0o755)
    ok(run("add", "data", "model.bin"))
    return root


def checkout_json(run, *args):
    return {r["path"]: r for r in json.loads(ok(run("checkout", "--json", *args)).out)}


def test_checkout_restores_a_deleted_dataset(data, run):
    before = read_tree(data / "data")
    shutil.rmtree(data / "data")
    (data / "model.bin").unlink()
    res = checkout_json(run)
    assert set(res) == {"data", "model.bin"}
    assert all(set(r) == CHECKOUT_KEYS for r in res.values())
    assert res["data"]["written"] == 4 and res["data"]["deleted"] == 0
    assert res["model.bin"]["written"] == 1
    assert read_tree(data / "data") == before
    assert (data / "data/hollow").is_dir()
    assert stat.S_IMODE((data / "data/sub/b.txt").stat().st_mode) & 0o111
    assert not stat.S_IMODE((data / "data/a.txt").stat().st_mode) & 0o111
    assert (data / "model.bin").read_bytes() == b"weights"
    assert "up to date" in ok(run("status")).out


def test_checkout_restores_single_deleted_files(data, run):
    (data / "data/sub/deeper/c.bin").unlink()
    (data / "data/empty.txt").unlink()
    r = ok(run("checkout"))
    assert "data: 2 written, 0 deleted" in r.out
    assert "model.bin: 0 written, 0 deleted" in r.out
    assert (data / "data/sub/deeper/c.bin").read_bytes() == b"\0c"
    assert (data / "data/empty.txt").read_bytes() == b""


def test_checkout_when_everything_matches_writes_nothing(data, run):
    ino = (data / "data/a.txt").stat().st_ino
    res = checkout_json(run)
    assert all(r["written"] == 0 and r["deleted"] == 0 for r in res.values())
    assert (data / "data/a.txt").stat().st_ino == ino


def test_checkout_restores_the_executable_bit(data, run):
    os.chmod(data / "data/sub/b.txt", 0o644)
    ok(run("checkout", "data"))
    assert stat.S_IMODE((data / "data/sub/b.txt").stat().st_mode) & 0o100


def test_checkout_refuses_to_overwrite_uncached_modification(data, run):
    path = data / "data/a.txt"
    path.write_text("precious local edit")
    (data / "data/sub/b.txt").unlink()  # would be restored, but nothing runs on conflict
    r = fails(run("checkout"), 1)
    assert "would overwrite or delete 1 file(s)" in r.err
    assert "  data/a.txt" in r.err
    assert "--force" in r.err and "datavc add" in r.err
    assert path.read_text() == "precious local edit"
    assert not (data / "data/sub/b.txt").exists()
    res = checkout_json(run, "--force")
    assert res["data"]["forced"] == ["data/a.txt"]
    assert path.read_text() == "alpha"
    assert (data / "data/sub/b.txt").read_text() == "beta"


def test_checkout_overwrites_a_modification_whose_content_is_cached(data, run):
    (data / "data/a.txt").write_text("beta")  # the content of another tracked file
    ok(run("checkout"))
    assert (data / "data/a.txt").read_text() == "alpha"


def test_checkout_refuses_to_delete_an_untracked_file(data, run):
    extra = data / "data/sub/extra.txt"
    extra.write_text("mine")
    r = fails(run("checkout"), 1)
    assert "data/sub/extra.txt" in r.err
    assert extra.read_text() == "mine"
    ok(run("checkout", "--force"))
    assert not extra.exists()
    assert "up to date" in ok(run("status")).out


def test_checkout_deletes_an_extra_file_whose_content_is_cached(data, run):
    (data / "data/copy_of_a.txt").write_text("alpha")
    res = checkout_json(run, "data")
    assert res["data"]["deleted"] == 1
    assert not (data / "data/copy_of_a.txt").exists()


def test_checkout_refuses_to_delete_an_untracked_directory_tree(data, run):
    gen(data, {"data": {"newdir": {"x": "x", "y": {"z": "z"}}}})
    r = fails(run("checkout"), 1)
    assert "data/newdir/x" in r.err and "data/newdir/y/z" in r.err
    assert (data / "data/newdir/y/z").read_text() == "z"
    ok(run("checkout", "-f"))
    assert not (data / "data/newdir").exists()


def test_checkout_file_where_a_directory_stands(data, run):
    shutil.rmtree(data / "data/sub")
    (data / "data/sub").write_text("a file now")
    r = fails(run("checkout"), 1)
    assert "data/sub" in r.err
    assert (data / "data/sub").read_text() == "a file now"
    ok(run("checkout", "--force"))
    assert (data / "data/sub/deeper/c.bin").read_bytes() == b"\0c"


def test_checkout_directory_where_a_file_stands(data, run):
    (data / "data/a.txt").unlink()
    gen(data, {"data": {"a.txt": {"inside": "local"}}})
    r = fails(run("checkout"), 1)
    assert "data/a.txt/inside" in r.err
    assert (data / "data/a.txt/inside").read_text() == "local"
    res = checkout_json(run, "--force")
    assert res["data"]["deleted"] == 1 and res["data"]["forced"] == ["data/a.txt/inside"]
    assert (data / "data/a.txt").read_text() == "alpha"


def test_checkout_replaces_a_directory_of_cached_files_without_force(data, run):
    (data / "model.bin").unlink()
    gen(data, {"model.bin": {"copy": "alpha", "empty": {}}})
    ok(run("checkout", "model.bin"))
    assert (data / "model.bin").read_bytes() == b"weights"


def test_checkout_whole_target_replaced_by_a_file(data, run):
    shutil.rmtree(data / "data")
    (data / "data").write_text("oops")
    fails(run("checkout", "data"), 1)
    assert (data / "data").read_text() == "oops"
    ok(run("checkout", "data", "--force"))
    assert (data / "data/a.txt").read_text() == "alpha"


def test_checkout_touches_only_named_targets(data, run):
    shutil.rmtree(data / "data")
    (data / "model.bin").unlink()
    res = checkout_json(run, "model.bin.datavc")
    assert list(res) == ["model.bin"]
    assert (data / "model.bin").exists() and not (data / "data").exists()
    sub = data / "elsewhere"
    sub.mkdir()
    ok(run("checkout", "../data", cwd=sub))
    assert (data / "data/a.txt").exists()


def test_checkout_of_untracked_target(data, run):
    r = fails(run("checkout", "nope"), 1)
    assert "not tracked by datavc" in r.err and "datavc add nope" in r.err


def test_checkout_an_older_version_from_git(data, run):
    ok(run("commit", "-m", "v1"))
    v1 = read_tree(data / "data")
    (data / "data/a.txt").write_text("alpha v2")
    (data / "data/sub/new").write_text("new in v2")
    ok(run("commit", "-m", "v2"))
    v2 = read_tree(data / "data")
    git(data, "checkout", "-q", "HEAD~1", "--", "data.datavc")
    ok(run("checkout", "data"))
    assert read_tree(data / "data") == v1
    git(data, "checkout", "-q", "HEAD", "--", "data.datavc")
    ok(run("checkout", "data"))
    assert read_tree(data / "data") == v2


def test_checkout_with_a_missing_listing_object(data, run):
    pointer = json.loads((data / "data.datavc").read_text())
    object_path(data, pointer["oid"]).unlink()
    shutil.rmtree(data / "data")
    r = fails(run("checkout", "data"), 1)
    assert pointer["oid"] in r.err and "not in the cache" in r.err
    assert "hint:" in r.err
    assert not (data / "data").exists()


def test_checkout_with_a_missing_file_object_restores_the_rest(data, run):
    object_path(data, oid_of(b"alpha")).unlink()
    shutil.rmtree(data / "data")
    r = fails(run("checkout", "--json", "data"), 1)
    [res] = json.loads(r.out)
    assert res["missing"] == ["data/a.txt"] and res["written"] == 3
    assert "not in the cache, left as it is: 'data/a.txt'" in r.err
    assert (data / "data/sub/b.txt").read_text() == "beta"
    assert not (data / "data/a.txt").exists()


def test_checkout_leaves_no_temp_files(data, run):
    shutil.rmtree(data / "data")
    ok(run("checkout"))
    assert [p for p in data.rglob("*") if ".datavc-tmp-" in p.name] == []


# --- symlinks planted in the work tree must never redirect a write outside it -------------


def test_symlinked_directory_inside_dataset_is_a_conflict(data, run, outside):
    before = snapshot(outside)
    shutil.rmtree(data / "data/sub")
    os.symlink(outside, data / "data/sub")
    r = fails(run("checkout"), 1)
    assert "data/sub" in r.err
    assert snapshot(outside) == before
    assert os.path.islink(data / "data/sub")


def test_force_checkout_never_writes_through_a_symlinked_directory(data, run, outside):
    before = snapshot(outside)
    shutil.rmtree(data / "data/sub")
    os.symlink(outside, data / "data/sub")
    r = fails(run("checkout", "--force"), 6)
    assert "refusing to write through 'sub'" in r.err and "symlink" in r.err
    assert snapshot(outside) == before
    assert os.path.islink(data / "data/sub")  # left for the user to move away
    os.unlink(data / "data/sub")
    ok(run("checkout"))
    assert (data / "data/sub/b.txt").read_text() == "beta"


def test_force_checkout_when_the_target_itself_is_a_symlink(data, run, outside):
    before = snapshot(outside)
    shutil.rmtree(data / "data")
    os.symlink(outside, data / "data")
    fails(run("checkout", "data"), 1)
    r = fails(run("checkout", "data", "--force"), 6)
    assert "symlink" in r.err
    assert snapshot(outside) == before


def test_symlinked_file_is_replaced_not_written_through(data, run, outside):
    before = snapshot(outside)
    (data / "data/a.txt").unlink()
    os.symlink(outside / "x", data / "data/a.txt")
    r = fails(run("checkout"), 1)
    assert "data/a.txt" in r.err
    ok(run("checkout", "--force"))
    assert snapshot(outside) == before
    assert not os.path.islink(data / "data/a.txt")
    assert (data / "data/a.txt").read_text() == "alpha"


def test_checkout_of_a_path_inside_a_target(root, run):
    gen(root, {"data": {"a": "1", "sub": {"b": "2", "c": "3"}}})
    ok(run("add", "data"))
    for p in (root / "data").rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (root / "data/sub/b").unlink()
    (root / "data/sub/c").write_text("local edit")
    (root / "data/a").unlink()
    r = fails(run("checkout", "data/sub"), 1)  # the uncached edit is protected
    assert "data/sub/c" in r.err
    ok(run("checkout", "data/sub", "--force"))
    assert (root / "data/sub/b").read_text() == "2" and (root / "data/sub/c").read_text() == "3"
    assert not (root / "data/a").exists()  # outside the path: untouched
    ok(run("checkout", "data/a"))
    assert (root / "data/a").read_text() == "1"
    r = fails(run("checkout", "data/missing"), 1)
    assert "not in the data of 'data'" in r.err
