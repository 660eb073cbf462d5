"""merge: three-way merges of stored trees and pointers, reading only the listings that
differ, and refusing to guess."""

from __future__ import annotations

import os

import pytest

from datavc import listing
from datavc.errors import IntegrityError, InvalidInputError
from datavc.hashing import Oid, hash_bytes
from datavc.manifest import Pointer
from datavc.merge import Conflict, merge_pointers, merge_trees, read_side
from datavc.tree import Budget
from datavc.treediff import Ref
from tests.unit.stores import PublishingStore
from tests.unit.trees import Exec, spec_of, stored

BASE = {"a": "A", "keep": {"k": "K"}, "s": {"b": "B", "deep": {"c": "C"}}, "t": {"d": "D"}}


def merged(store: PublishingStore, base, ours, theirs):
    """Merge three specs (None: absent); store the new listings; the result."""
    refs = [None if s is None else stored(store, s) for s in (base, ours, theirs)]
    result = merge_trees(store, *refs, rel="d")
    for data in result.listings.values():
        store.add_bytes(data)
    return result


def assert_merges_to(store, result, expected) -> None:
    assert result.conflicts == []
    want = stored(store, expected)
    assert spec_of(store, result.root) == spec_of(store, want)
    assert result.root == want  # same id, size and file count


def edit(spec: dict, path: str, value) -> dict:
    """A copy of ``spec`` with ``path`` set to ``value`` (None deletes it)."""
    out = dict(spec)
    head, _, rest = path.partition("/")
    if rest:
        out[head] = edit(out.get(head, {}), rest, value)
    elif value is None:
        del out[head]
    else:
        out[head] = value
    return out


def test_disjoint_changes_merge_to_their_union(store):
    ours = edit(edit(BASE, "a", "A2"), "s/deep/new", "N")
    theirs = edit(edit(BASE, "t/d", None), "s/b", "B3")
    result = merged(store, BASE, ours, theirs)
    union = edit(edit(ours, "t/d", None), "s/b", "B3")
    assert_merges_to(store, result, union)
    assert (result.root.size, result.root.nfiles) == (len("A2NKB3C"), 5)


def test_same_change_on_both_sides_is_taken_without_new_listings(store):
    both = edit(BASE, "s/deep/c", "C2")
    result = merged(store, BASE, both, both)
    assert_merges_to(store, result, both)
    assert result.listings == {}


def test_one_side_unchanged_takes_the_other_whole(store):
    theirs = edit(BASE, "t", {"x": "X"})
    assert_merges_to(store, merged(store, BASE, BASE, theirs), theirs)
    assert_merges_to(store, merged(store, BASE, theirs, BASE), theirs)
    assert merged(store, BASE, BASE, theirs).listings == {}


def test_add_add_of_different_files_merges_and_of_one_file_conflicts(store):
    assert_merges_to(store, merged(store, None, {"x": "1", "s": {"p": "P"}},
                                   {"y": "2", "s": {"q": "Q"}}),
                     {"x": "1", "y": "2", "s": {"p": "P", "q": "Q"}})
    result = merged(store, None, {"x": "1"}, {"x": "2"})
    assert result.conflicts == [Conflict("d/x", "added on both sides with different content")]
    assert merged(store, None, {"x": "1"}, {"x": "1"}).conflicts == []


def test_delete_versus_modify_is_a_conflict(store):
    result = merged(store, BASE, edit(BASE, "s/b", None), edit(BASE, "s/b", "B2"))
    assert result.conflicts == [Conflict("d/s/b", "deleted on one side, changed on the other")]
    assert result.listings == {}
    result = merged(store, BASE, edit(BASE, "t/d", "D2"), edit(BASE, "t", None))
    assert [c.path for c in result.conflicts] == ["d/t"]


def test_deleted_on_both_sides_or_deleted_and_unchanged_is_gone(store):
    gone = edit(BASE, "s", None)
    assert_merges_to(store, merged(store, BASE, gone, edit(gone, "a", "A2")),
                     edit(gone, "a", "A2"))
    assert_merges_to(store, merged(store, BASE, edit(BASE, "a", None), edit(BASE, "t/d", "x")),
                     edit(edit(BASE, "a", None), "t/d", "x"))


def test_file_versus_directory_is_a_conflict(store):
    result = merged(store, BASE, edit(BASE, "a", {"in": "1"}), edit(BASE, "a", "A2"))
    assert result.conflicts == [Conflict("d/a", "a file on one side, a directory on the other")]


def test_both_changed_one_file_differently_is_a_conflict_others_are_still_listed(store):
    ours = edit(edit(BASE, "a", "A2"), "s/deep/c", "C2")
    theirs = edit(edit(BASE, "a", "A3"), "t/d", "D3")
    result = merged(store, BASE, ours, theirs)
    assert result.conflicts == [Conflict("d/a", "changed on both sides")]
    assert result.listings == {}


def test_nested_directories_merge_at_every_depth(store):
    base = {"x": {"y": {"z": {"f": "F", "g": "G"}, "w": {}}}}
    ours = edit(edit(base, "x/y/z/f", "F2"), "x/y/w/new", "N")
    theirs = edit(edit(base, "x/y/z/g", None), "x/y/z/h", {"i": "I"})
    assert_merges_to(store, merged(store, base, ours, theirs),
                     {"x": {"y": {"z": {"f": "F2", "h": {"i": "I"}}, "w": {"new": "N"}}}})


def test_empty_directories_are_kept_and_merged(store):
    base = {"e": {}, "f": "F"}
    assert_merges_to(store, merged(store, base, edit(base, "e2", {}), edit(base, "f", "F2")),
                     {"e": {}, "e2": {}, "f": "F2"})


def test_executable_bit_is_part_of_a_files_identity(store):
    base = {"run": "echo", "other": "o"}
    ours = edit(base, "run", Exec("echo"))
    assert_merges_to(store, merged(store, base, ours, edit(base, "other", "o2")),
                     {"run": Exec("echo"), "other": "o2"})
    result = merged(store, base, ours, edit(base, "run", "echo hi"))
    assert [c.path for c in result.conflicts] == ["d/run"]
    assert merged(store, base, ours, ours).conflicts == []


def test_names_colliding_after_case_folding_are_a_conflict(store):
    result = merged(store, {}, {"A.png": "1"}, {"a.png": "2"})
    assert [c.path for c in result.conflicts] == ["d/a.png"]
    assert "case-insensitive" in result.conflicts[0].reason


def test_subtrees_equal_on_two_sides_are_never_read(store):
    ours, theirs = edit(BASE, "a", "A2"), edit(BASE, "t/d", "D2")
    refs = [stored(store, s) for s in (BASE, ours, theirs)]
    for sub in (BASE["keep"], BASE["s"], BASE["s"]["deep"], BASE["t"], theirs["t"]):
        _drop(store, sub)  # only the three roots differ on all sides
    result = merge_trees(store, *refs, rel="d", budget=Budget(3))
    assert result.conflicts == []
    assert result.root == stored(None, edit(ours, "t/d", "D2"))


def _drop(store, spec) -> None:
    path = store.path(Oid(stored(store, spec).digest))
    os.chmod(path, 0o644)
    os.unlink(path)


def test_a_missing_listing_is_a_conflict_that_says_to_fetch_the_data(store):
    ours, theirs = edit(BASE, "t/d", "D2"), edit(BASE, "t/e", "E")
    refs = [stored(store, s) for s in (BASE, ours, theirs)]
    _drop(store, theirs["t"])
    result = merge_trees(store, *refs, rel="d")
    [conflict] = result.conflicts
    assert conflict.path == "d/t"
    assert "listing is missing" in conflict.reason and "fetch" in conflict.reason
    assert str(Oid(stored(store, theirs["t"]).digest)) in conflict.reason


def test_a_corrupt_or_hostile_listing_is_refused(store):
    ours, theirs = edit(BASE, "t/d", "D2"), edit(BASE, "t/e", "E")
    refs = [stored(store, s) for s in (BASE, ours, theirs)]
    path = store.path(Oid(refs[2].digest))
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"\x00")
    with pytest.raises(IntegrityError):
        merge_trees(store, *refs, rel="d")
    hostile = listing.encode([[b"..", "file", hash_bytes(b"x").digest, 1, 0o644, 1]])
    bad = store.add_bytes(hostile)
    with pytest.raises(InvalidInputError, match="listing"):
        merge_trees(store, refs[0], refs[1], Ref("dir", bad.digest, 1, False, 1), rel="d")


def test_listing_reads_are_bounded_by_the_budget(store):
    ours, theirs = edit(BASE, "s/deep/c", "C2"), edit(BASE, "s/deep/e", "E")
    refs = [stored(store, s) for s in (BASE, ours, theirs)]
    assert merge_trees(store, *refs, rel="d", budget=Budget(9)).conflicts == []
    with pytest.raises(InvalidInputError, match="names more directories"):
        merge_trees(store, *refs, rel="d", budget=Budget(8))


# --- pointers ------------------------------------------------------------------------------


def pointer(store, spec, **meta) -> Pointer:
    ref = stored(store, spec)
    nfiles = ref.nfiles if ref.kind == "dir" else 1
    return Pointer(ref.kind, Oid(ref.digest), ref.size, nfiles, meta)  # type: ignore[arg-type]


def test_merge_pointers_of_a_directory_target(store):
    ours, theirs = edit(BASE, "a", "A2"), edit(BASE, "new", "NEW")
    result = merge_pointers(store, pointer(store, BASE), pointer(store, ours),
                            pointer(store, theirs), target="data")
    assert result.clean and result.target == "data"
    assert result.pointer == pointer(store, edit(ours, "new", "NEW"))
    assert result.to_dict()["pointer"]["nfiles"] == 6


def test_merge_pointers_of_a_file_target(store):
    b, o = pointer(store, "v1"), pointer(store, "v2")
    assert merge_pointers(store, b, o, b, target="m.bin").pointer == o
    result = merge_pointers(store, b, o, pointer(store, "v3"), target="m.bin")
    assert result.conflicts == [Conflict("m.bin", "changed on both sides")]
    assert result.pointer is None
    assert merge_pointers(store, None, o, o, target="m.bin").pointer == o


def test_merge_pointers_merges_meta_key_by_key(store):
    b = pointer(store, BASE, owner="ann", source="s3://a")
    o = pointer(store, BASE, owner="bob", source="s3://a")
    t = pointer(store, BASE, owner="ann", license="cc0")
    result = merge_pointers(store, b, o, t, target="data")
    assert result.pointer.meta == {"owner": "bob", "license": "cc0"}
    result = merge_pointers(store, b, o, pointer(store, BASE, owner="cy"), target="data")
    assert result.conflicts == [Conflict("data", "meta 'owner' changed on both sides")]


def test_read_side(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert read_side(tmp_path / "empty", where="x") is None
    assert read_side(tmp_path / "absent", where="x") is None
    p = Pointer("file", hash_bytes(b"x"), 1, 1)
    (tmp_path / "p").write_bytes(p.dumps())
    assert read_side(tmp_path / "p", where="x") == p
    (tmp_path / "bad").write_bytes(b"<<<<<<< HEAD\n")
    with pytest.raises(InvalidInputError, match="x: not valid JSON"):
        read_side(tmp_path / "bad", where="x")
