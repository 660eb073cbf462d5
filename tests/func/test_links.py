"""`[cache] type`: hardlink and symlink workspaces (read-only, pointing into the cache).

Tests run as root, so read-only protection is asserted on mode bits, never by a failed write.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from tests.conftest import gen, read_tree
from tests.func.helpers import (
    age,
    corrupt,
    fails,
    modes,
    object_path,
    oid_of,
    ok,
    set_link_types,
)


@pytest.fixture(params=["hardlink", "symlink"])
def linked(request, root, run):
    set_link_types(root, [request.param])
    gen(root, {"data": {"a.txt": "alpha", "sub": {"b.txt": "beta"}}, "one.bin": b"one"})
    age(root / "data")
    ok(run("add", "data", "one.bin"))
    return request.param


def workspace_files(root):
    return [root / "data/a.txt", root / "data/sub/b.txt", root / "one.bin"]


def test_add_links_workspace_files_to_the_cache(root, run, linked):
    for path in workspace_files(root):
        obj = object_path(root, oid_of(path.read_bytes()))
        if linked == "hardlink":
            assert not path.is_symlink()
            assert os.path.samefile(path, obj)
            assert path.stat().st_nlink >= 2
            assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0  # read-only
        else:
            assert path.is_symlink()
            assert os.readlink(path) == str(obj)
    assert "up to date" in ok(run("status")).out


def test_readd_of_linked_files_hashes_nothing(root, run, linked):
    [res] = json.loads(ok(run("add", "--json", "data")).out)
    assert res["hashed"] == 0 and res["changed"] is False


def test_checkout_restores_links(root, run, linked):
    before = read_tree(root / "data")
    shutil.rmtree(root / "data")
    (root / "one.bin").unlink()
    ok(run("checkout"))
    assert read_tree(root / "data") == before
    for path in workspace_files(root):
        obj = object_path(root, oid_of(path.read_bytes()))
        assert os.path.samefile(path, obj)
        assert path.is_symlink() == (linked == "symlink")
    assert "up to date" in ok(run("status")).out


def test_replacing_a_linked_file_is_a_modification(root, run, linked):
    """The safe way to edit: remove the link, write a new file."""
    path = root / "data/a.txt"
    path.unlink()
    path.write_text("new content")
    [st] = json.loads(ok(run("status", "--json", "data")).out)
    assert st["state"] == "modified"
    assert [c["path"] for c in st["changes"]] == ["data/a.txt"]
    ok(run("commit", "data"))
    assert "up to date" in ok(run("status")).out
    assert object_path(root, oid_of(b"new content")).read_bytes() == b"new content"
    assert object_path(root, oid_of(b"alpha")).read_bytes() == b"alpha"


def test_commit_relinks_a_replaced_file(root, run, linked):
    path = root / "data/a.txt"
    path.unlink()
    path.write_text("new content")
    ok(run("commit", "data"))
    assert os.path.samefile(path, object_path(root, oid_of(b"new content")))
    assert path.is_symlink() == (linked == "symlink")


def test_commit_relinks_a_replaced_file_already_seen_by_status(root, run, linked):
    path = root / "data/a.txt"
    path.unlink()
    path.write_text("new content")
    age(path)  # old enough for status to remember its hash
    ok(run("status"))
    ok(run("commit", "data"))
    assert os.path.samefile(path, object_path(root, oid_of(b"new content")))


def test_status_detects_in_place_edit_of_hardlinked_file(root, run):
    set_link_types(root, ["hardlink"])
    gen(root, {"data": {"a.txt": "alpha", "b.txt": "beta"}})
    age(root / "data")
    ok(run("add", "data"))
    path = root / "data/a.txt"
    path.chmod(0o644)  # what a user has to do first
    with open(path, "a") as f:
        f.write(" edited")
    [st] = json.loads(ok(run("status", "--json")).out)
    assert st["state"] == "modified"
    assert [(c["path"], c["change"]) for c in st["changes"]] == [("data/a.txt", "modified")]
    r = fails(run("checkout"), 1)  # the edit is not in the cache: refuse
    assert "data/a.txt" in r.err
    assert path.read_text() == "alpha edited"


def test_force_checkout_after_in_place_edit_of_hardlink_exits_3(root, run):
    """The in-place edit also rewrote the shared cache object: --force must not link it back
    as if it were sound (it re-hashes the object first and refuses)."""
    set_link_types(root, ["hardlink"])
    gen(root, {"data": {"a.txt": "alpha"}})
    ok(run("add", "data"))
    path = root / "data/a.txt"
    path.chmod(0o644)
    with open(path, "a") as f:
        f.write(" edited")
    r = fails(run("checkout", "--force"), 3)
    assert oid_of(b"alpha") in r.err and "corrupt" in r.err
    assert path.read_text() == "alpha edited"
    assert "data: modified" in ok(run("status")).out


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_executable_file_in_linked_dataset_is_clean_after_add(root, run, kind):
    """Link caches cannot keep the executable bit (the file is the 0444 object, see
    docs/format.md); status must still not call the file modified."""
    set_link_types(root, [kind])
    gen(root, {"data": {"run.sh": "#!/bin/sh\n", "x": "x"}})
    os.chmod(root / "data/run.sh", 0o755)
    ok(run("add", "data"))
    [st] = json.loads(ok(run("status", "--json")).out)
    assert st["state"] == "clean", st
    shutil.rmtree(root / "data")
    ok(run("checkout"))
    [st] = json.loads(ok(run("status", "--json")).out)
    assert st["state"] == "clean", st


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_linked_checkout_of_a_corrupt_object_exits_3(root, run, kind):
    set_link_types(root, [kind])
    gen(root, {"data": {"a.txt": "alpha", "b.txt": "beta"}})
    ok(run("add", "data"))
    (root / "data/a.txt").unlink()
    corrupt(object_path(root, oid_of(b"alpha")))
    r = fails(run("checkout"), 3)
    assert oid_of(b"alpha") in r.err
    assert not os.path.lexists(root / "data/a.txt")  # never linked as if it were sound


def test_copy_mode_workspace_files_are_writable_and_independent(root, run):
    set_link_types(root, ["copy"])
    gen(root, {"data": {"a.txt": "alpha"}})
    ok(run("add", "data"))
    shutil.rmtree(root / "data")
    ok(run("checkout"))
    path = root / "data/a.txt"
    obj = object_path(root, oid_of(b"alpha"))
    assert not os.path.samefile(path, obj)
    assert modes(root / "data")["a.txt"] & 0o200
    path.write_text("edit")
    assert obj.read_bytes() == b"alpha"


def test_fallback_chain_reaches_copy(root, run):
    """reflink is not supported on every file system: the default falls back to copy."""
    set_link_types(root, ["reflink", "copy"])
    gen(root, {"data": {"a.txt": "alpha"}})
    ok(run("add", "data"))
    shutil.rmtree(root / "data")
    ok(run("checkout"))
    assert (root / "data/a.txt").read_text() == "alpha"


def test_unknown_link_type_is_a_config_error(root, run):
    set_link_types(root, ["teleport"])
    r = fails(run("status"), 6)
    assert "cache.type" in r.err and "config.toml" in r.err
