"""treediff: file-level changes between a stored tree and another, walking only what differs."""

from __future__ import annotations

import os
import time

from datavc import tree
from datavc.hashing import Oid, hash_bytes
from datavc.state import StatCache
from datavc.treediff import Change, Ref, diff
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
                           "new": str(hash_bytes(b"newer")), "old_size": 3, "new_size": 5}


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
