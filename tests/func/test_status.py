"""`datavc status`: the four states, --json shape, targets, and that a no-op costs nothing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import pytest

from datavc.state import LOCAL_FILE_SYSTEMS, file_system_type
from tests.conftest import gen
from tests.func.helpers import STATE, age, fails, object_path, oid_of, ok, wipe_cache

STATUS_KEYS = {"path", "pointer", "state", "changes", "not_in_cache", "remote", "not_on_remote"}
CHANGE_KEYS = {"path", "change", "kind", "old", "new", "old_size", "new_size",
               "old_path"}


def status_json(run, *targets):
    return {s["path"]: s for s in json.loads(ok(run("status", "--json", *targets)).out)}


@pytest.fixture
def tracked(root, run):
    gen(root, {"data": {"a.txt": "alpha", "sub": {"b.txt": "beta"}}, "model.bin": b"\1\2\3"})
    age(root / "data")
    age(root / "model.bin")
    ok(run("add", "data", "model.bin"))
    return root


def test_status_with_nothing_tracked(root, run):
    r = ok(run("status"))
    assert "Nothing is tracked yet" in r.out and "datavc add" in r.out
    assert json.loads(ok(run("status", "--json")).out) == []


def test_status_clean(tracked, run):
    assert "Data and manifests are up to date." in ok(run("status")).out
    st = status_json(run)
    assert set(st) == {"data", "model.bin"}
    for s in st.values():
        assert set(s) == STATUS_KEYS
        assert s["state"] == "clean" and s["changes"] == [] and s["not_in_cache"] == 0
    assert st["data"]["pointer"] == "data.datavc"


def test_status_modified_lists_each_change_with_ids_and_sizes(tracked, run):
    root = tracked
    (root / "data/a.txt").write_text("ALPHA!")
    (root / "data/sub/b.txt").unlink()
    (root / "data/sub/new.txt").write_text("new")
    st = status_json(run)
    assert st["model.bin"]["state"] == "clean"
    data = st["data"]
    assert data["state"] == "modified"
    changes = {c["path"]: c for c in data["changes"]}
    for c in changes.values():
        assert set(c) == CHANGE_KEYS
    assert changes["data/a.txt"] == {
        "path": "data/a.txt", "change": "modified", "kind": "file", "old": oid_of(b"alpha"),
        "new": oid_of(b"ALPHA!"), "old_size": 5, "new_size": 6, "old_path": None}
    assert changes["data/sub/b.txt"] == {
        "path": "data/sub/b.txt", "change": "deleted", "kind": "file",
        "old": oid_of(b"beta"), "new": None,
        "old_size": 4, "new_size": None, "old_path": None}
    assert changes["data/sub/new.txt"] == {
        "path": "data/sub/new.txt", "change": "added", "kind": "file",
        "old": None, "new": oid_of(b"new"),
        "old_size": None, "new_size": 3, "old_path": None}
    text = ok(run("status")).out
    assert "data: modified" in text
    assert "modified:  data/a.txt" in text and "deleted:   data/sub/b.txt" in text
    assert "added:     data/sub/new.txt" in text
    assert "model.bin" not in text  # clean targets are not listed


def test_status_single_file_modified(tracked, run):
    (tracked / "model.bin").write_bytes(b"\1\2\3\4")
    st = status_json(run, "model.bin")
    assert list(st) == ["model.bin"]
    assert st["model.bin"]["state"] == "modified"
    [c] = st["model.bin"]["changes"]
    assert c["path"] == "model.bin" and c["change"] == "modified"


def test_status_file_replaced_by_directory(tracked, run):
    root = tracked
    (root / "model.bin").unlink()
    gen(root, {"model.bin": {"inner": "x"}})
    st = status_json(run, "model.bin")["model.bin"]
    assert st["state"] == "modified"
    assert {(c["path"], c["change"]) for c in st["changes"]} == {
        ("model.bin", "deleted"), ("model.bin/inner", "added")}


def test_status_deleted_workspace(tracked, run):
    shutil.rmtree(tracked / "data")
    st = status_json(run)
    assert st["data"]["state"] == "deleted" and st["data"]["changes"] == []
    assert "data: deleted" in ok(run("status")).out


def test_status_not_in_cache(tracked, run):
    wipe_cache(tracked)
    (tracked / "data/a.txt").write_text("changed")
    st = status_json(run, "data")
    assert st["data"]["state"] == "not-in-cache"
    assert "data: not-in-cache" in ok(run("status")).out


def test_status_counts_objects_missing_from_the_cache_when_workspace_is_clean(tracked, run):
    wipe_cache(tracked)
    st = status_json(run)
    # data: two files and two listings (data/ and data/sub/); model.bin: one file
    assert st["data"]["state"] == "clean" and st["data"]["not_in_cache"] == 4
    assert st["model.bin"]["not_in_cache"] == 1
    r = ok(run("status"))
    assert "data: 4 object(s) not in the cache" in r.out and "datavc commit data" in r.out
    ok(run("commit"))  # stores them again
    assert all(s["not_in_cache"] == 0 for s in status_json(run).values())


def test_status_reports_a_missing_listing_object(tracked, run):
    pointer = json.loads((tracked / "data.datavc").read_text())
    object_path(tracked, pointer["oid"]).unlink()
    st = status_json(run, "data")["data"]
    assert st["state"] == "clean" and st["not_in_cache"] == 1, st


def test_status_of_named_targets_only(tracked, run):
    (tracked / "data/a.txt").write_text("x")
    assert list(status_json(run, "model.bin")) == ["model.bin"]
    assert list(status_json(run, "data.datavc")) == ["data"]
    sub = tracked / "data/sub"
    r = ok(run("status", "--json", "../../model.bin", cwd=sub))
    assert [s["path"] for s in json.loads(r.out)] == ["model.bin"]


def test_status_of_untracked_target_fails_with_hint(tracked, run):
    (tracked / "other").write_text("o")
    r = fails(run("status", "other"), 1)
    assert "not tracked by datavc" in r.err and "datavc add other" in r.err


def test_noop_status_after_add_hashes_nothing(tracked, run):
    state = tracked / STATE
    before = (state.stat().st_mtime_ns, state.stat().st_ino, state.read_bytes())
    for _ in range(2):
        ok(run("status"))
        ok(run("status", "--json", "data"))
    after = (state.stat().st_mtime_ns, state.stat().st_ino, state.read_bytes())
    assert after == before


def test_status_rehashes_only_after_a_change(tracked, run):
    state = tracked / STATE
    before = state.stat().st_ino
    (tracked / "data/a.txt").write_text("edited")
    age(tracked / "data/a.txt")
    ok(run("status"))
    after_first = state.stat().st_ino
    assert after_first != before  # the edited file was hashed and remembered
    ok(run("status"))
    assert state.stat().st_ino == after_first  # second status found everything cached


def test_status_detects_same_size_same_mtime_edit(tracked, run):
    """An edit that keeps size and mtime still changes ctime: it must be seen."""
    path = tracked / "data/a.txt"
    st = path.stat()
    path.write_text("ALPHA")  # same length
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert status_json(run, "data")["data"]["state"] == "modified"


def test_status_of_corrupt_state_file_is_a_warning(tracked, run):
    (tracked / STATE).write_bytes(b"\xc1garbage")
    (tracked / STATE).with_name("trees").unlink(missing_ok=True)  # else the memo answers
    r = ok(run("status"))
    assert "up to date" in r.out
    assert "ignoring unreadable stat cache" in r.err


def _age_cache(root):
    objs = root / ".datavc/cache/objects"
    old = time.time_ns() - 3600 * 10**9  # each call another past moment, as real changes
    for d in objs.iterdir():
        os.utime(d, ns=(old, old))


@pytest.mark.skipif(file_system_type(tempfile.gettempdir()) not in LOCAL_FILE_SYSTEMS,
                    reason="the presence memo is used on local file systems only")
def test_a_clean_status_remembers_the_cache_holds_everything_until_objects_come_or_go(
        tracked, run):
    """The second no-op status trusts .datavc/state/present instead of listing the cache,
    and only while no object has come or gone since (the fan-out directories' stamp)."""
    _age_cache(tracked)
    assert status_json(run)["data"]["not_in_cache"] == 0
    memo = tracked / ".datavc/state/present"
    assert memo.exists()
    # the memo is what the next status reads: a doctored count (same stamp) shows through
    import msgpack

    doc = msgpack.unpackb(memo.read_bytes(), strict_map_key=False)
    doc["roots"] = {k: 7 for k in doc["roots"]}
    memo.write_bytes(msgpack.packb(doc, use_bin_type=True))
    assert status_json(run)["data"]["not_in_cache"] == 7
    # an object going away changes the stamp: the cache is listed again, truthfully
    pointer = json.loads((tracked / "data.datavc").read_text())
    object_path(tracked, pointer["oid"].split(":")[1]).unlink()
    _age_cache(tracked)
    assert status_json(run)["data"]["not_in_cache"] == 1
    wipe_cache(tracked)  # and right after a change (a racy stamp), nothing is trusted
    assert status_json(run)["data"]["not_in_cache"] == 4
