"""treediff: file-level changes between a stored tree and another, walking only what differs."""

from __future__ import annotations

import os
import time

import pytest

from datavc import tree
from datavc.hashing import Oid, hash_bytes
from datavc.state import StatCache
from datavc.treediff import Change, Ref, diff, lookup, with_renames
from tests.conftest import gen

SPEC = {"a.txt": "A", "s": {"b": "B", "deep": {"c": "C"}}, "t": {"d": "D"}}


def build(ws, rel, store=None):
    state = StatCache("")
    scan = tree.scan(str(ws), rel, state, "")
    tree.resolve(scan, store=store, state=state, started_ns=time.time_ns(), jobs=1)
    tree.finish(scan.root, store=store, where=rel)
    return scan.root


def stored(ws, store, spec) -> Ref:
    gen(ws, {"d": spec})
    root = build(ws, "d", store)
    return Ref(tree.root_kind(root), root.digest, root.size)


def changes(store, old, new):
    return [(c.path, c.change) for c in diff(store, "d", old, new)]


def test_equal_trees_have_no_changes(ws, store):
    old = stored(ws, store, SPEC)
    assert changes(store, old, build(ws, "d")) == []


def test_added_modified_deleted_in_path_order(ws, store):
    old = stored(ws, store, SPEC)
    (ws / "d/a.txt").write_text("A2")
    (ws / "d/s/deep/c").unlink()
    (ws / "d/s/new").write_text("N")
    assert changes(store, old, build(ws, "d")) == [
        ("d/a.txt", "modified"), ("d/s/deep/c", "deleted"), ("d/s/new", "added")]


def test_change_carries_ids_and_sizes(ws, store):
    old = stored(ws, store, {"f": "old"})
    (ws / "d/f").write_text("newer")
    [c] = diff(store, "d", old, build(ws, "d"))
    assert c == Change("d/f", "modified", hash_bytes(b"old"), hash_bytes(b"newer"), 3, 5)
    assert c.to_dict() == {"path": "d/f", "change": "modified", "kind": "file",
                           "old": str(hash_bytes(b"old")),
                           "new": str(hash_bytes(b"newer")), "old_size": 3, "new_size": 5,
                           "old_path": None}


def test_unchanged_subtrees_are_not_read(ws, store):
    old = stored(ws, store, SPEC)
    first = build(ws, "d")
    os.chmod(store.path(Oid(first.children["s"].digest)), 0o644)
    os.unlink(store.path(Oid(first.children["s"].digest)))  # never needed
    (ws / "d/t/d").write_text("D2")
    assert changes(store, old, build(ws, "d")) == [("d/t/d", "modified")]


def test_file_replaced_by_directory_and_back(ws, store):
    old = stored(ws, store, {"x": "file"})
    (ws / "d/x").unlink()
    gen(ws, {"d": {"x": {"in": "1"}}})
    assert changes(store, old, build(ws, "d")) == [("d/x", "deleted"), ("d/x/in", "added")]
    old = Ref("dir", build(ws, "d", store).digest)
    (ws / "d/x/in").unlink()
    (ws / "d/x").rmdir()
    (ws / "d/x").write_text("file")
    assert changes(store, old, build(ws, "d")) == [("d/x/in", "deleted"), ("d/x", "added")]


def test_executable_bit_change_is_a_modification(ws, store):
    old = stored(ws, store, {"run": "x"})
    os.chmod(ws / "d/run", 0o755)
    assert changes(store, old, build(ws, "d")) == [("d/run", "modified")]


def test_everything_added_or_deleted(ws, store):
    old = stored(ws, store, {"a": "1", "s": {"b": "2"}})
    new = build(ws, "d")
    assert changes(store, None, new) == [("d/a", "added"), ("d/s/b", "added")]
    assert changes(store, old, None) == [("d/a", "deleted"), ("d/s/b", "deleted")]
    assert changes(store, None, None) == []


def test_stored_file_against_workspace_file(ws, store):
    gen(ws, {"f": "one"})
    old = Ref("file", hash_bytes(b"one").digest, 3)
    assert list(diff(store, "f", old, build(ws, "f"))) == []
    (ws / "f").write_text("two")
    assert [c.change for c in diff(store, "f", old, build(ws, "f"))] == ["modified"]


# --- both sides stored: revisions against revisions ---

def test_stored_against_stored_reads_only_differing_subtrees(ws, store):
    old = stored(ws, store, SPEC)
    first = build(ws, "d")
    (ws / "d/t/d").write_text("D2")
    new_root = build(ws, "d", store)
    new = Ref("dir", new_root.digest, new_root.size)
    s = Oid(first.children["s"].digest)
    os.chmod(store.path(s), 0o644)
    os.unlink(store.path(s))  # the unchanged subtree is never read on either side
    assert changes(store, old, new) == [("d/t/d", "modified")]
    assert changes(store, new, old) == [("d/t/d", "modified")]
    assert changes(store, old, old) == []


def test_stored_sides_added_and_deleted_wholesale(ws, store):
    old = stored(ws, store, {"a": "1", "s": {"b": "2"}, "e": {}})
    assert changes(store, None, old) == [("d/a", "added"), ("d/e", "added"), ("d/s/b", "added")]
    assert [c.kind for c in diff(store, "d", old, None)] == ["file", "dir", "file"]


def test_lookup_walks_one_path(ws, store):
    root = stored(ws, store, SPEC)
    ref = lookup(store, root, ["s", "deep", "c"])
    assert ref is not None and ref.kind == "file" and ref.digest == hash_bytes(b"C").digest
    assert lookup(store, root, ["s", "nope"]) is None
    assert lookup(store, root, ["a.txt", "below-a-file"]) is None
    assert lookup(store, root, []) == root


def test_renames_pair_deleted_and_added_files_with_the_same_id(ws, store):
    old = stored(ws, store, {"x": "same", "y": "other", "z": ""})
    (ws / "d/x").rename(ws / "d/moved")
    (ws / "d/z").rename(ws / "d/z2")  # empty files are never paired
    out = with_renames(diff(store, "d", old, build(ws, "d")))
    assert [(c.path, c.change, c.old_path) for c in out] == [
        ("d/moved", "renamed", "d/x"), ("d/z", "deleted", None), ("d/z2", "added", None)]
    [r] = [c for c in out if c.change == "renamed"]
    assert r.old == r.new == hash_bytes(b"same") and r.old_size == r.new_size == 4


def test_renames_pair_in_path_order_and_leave_the_rest(ws, store):
    old = stored(ws, store, {"a": "dup", "b": "dup"})
    (ws / "d/a").unlink()
    gen(ws, {"d": {"c": "dup", "e": "dup"}})
    out = with_renames(diff(store, "d", old, build(ws, "d")))
    assert [(c.path, c.change, c.old_path) for c in out] == [
        ("d/c", "renamed", "d/a"), ("d/e", "added", None)]


def test_a_hostile_deep_tree_is_refused(store):
    """A chain of listings deeper than MAX_DEPTH fails cleanly, not with RecursionError."""
    from datavc import listing
    from datavc.errors import InvalidInputError
    from datavc.tree import MAX_DEPTH

    oid = store.add_bytes(listing.encode([]))
    for _ in range(MAX_DEPTH + 2):
        oid = store.add_bytes(listing.encode([[b"x", "dir", oid.digest, 1, 0o755, 1]]))
    with pytest.raises(InvalidInputError, match="deeper"):
        list(diff(store, "d", Ref("dir", oid.digest), None))
    with pytest.raises(InvalidInputError, match="deeper"):
        list(diff(store, "d", None, Ref("dir", oid.digest)))
