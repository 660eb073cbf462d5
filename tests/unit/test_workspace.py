"""workspace: the checkout plan (never lose data) and running it on disk."""

from __future__ import annotations

import os
import shutil

import pytest

from datavc.errors import CheckoutConflictError, UnsafePathError
from datavc.tree import DirNode, FileNode
from datavc.workspace import Plan, make_plan, refuse_conflicts
from tests.conftest import gen, read_tree

F1, F2, F3, F4 = (bytes([i]) * 16 for i in range(1, 5))


def f(digest, executable=False):
    return FileNode(digest, 1, executable)


def d(**children):
    return DirNode(children=children)


def plan(want, have, *, present=(F1, F2, F3), skipped=(), check_mode=True) -> Plan:
    return make_plan("d", want, have, present=set(present), skipped=set(skipped),
                     check_mode=check_mode)


def writes(p):
    return [rel for rel, _ in p.writes]


def test_fresh_checkout_makes_dirs_and_writes_files():
    p = plan(d(a=f(F1), s=d(b=f(F2))), None)
    assert p.mkdirs == ["d", "d/s"] and writes(p) == ["d/a", "d/s/b"]
    assert p.deletes == p.rmdirs == p.conflicts == p.missing == []


def test_identical_workspace_needs_nothing():
    p = plan(d(a=f(F1), s=d(b=f(F2))), d(a=f(F1), s=d(b=f(F2))))
    assert p == Plan()


def test_objects_missing_from_the_cache_are_listed_not_written():
    p = plan(d(a=f(F4), b=f(F1)), None)
    assert p.missing == ["d/a"] and writes(p) == ["d/b"]


def test_missing_object_already_in_place_is_fine():
    assert plan(d(a=f(F4)), d(a=f(F4))) == Plan()


def test_modified_file_not_in_cache_is_a_conflict():
    p = plan(d(a=f(F1)), d(a=f(F4)))
    assert p.conflicts == ["d/a"] and writes(p) == ["d/a"]


def test_modified_file_in_cache_is_replaced_without_conflict():
    p = plan(d(a=f(F1)), d(a=f(F2)))
    assert p.conflicts == [] and writes(p) == ["d/a"]


def test_extra_files_are_deleted_and_uncached_ones_are_conflicts():
    p = plan(d(a=f(F1)), d(a=f(F1), x=f(F2), y=f(F4)))
    assert sorted(p.deletes) == ["d/x", "d/y"] and p.conflicts == ["d/y"]
    assert p.writes == []


def test_extra_directories_are_removed_deepest_first():
    p = plan(d(a=f(F1)), d(a=f(F1), x=d(y=d(z=f(F2)))))
    assert p.deletes == ["d/x/y/z"] and p.rmdirs == ["d/x/y", "d/x"]


def test_directory_replaced_by_file():
    p = plan(d(x=f(F1)), d(x=d(a=f(F2), b=f(F4))))
    assert sorted(p.deletes) == ["d/x/a", "d/x/b"] and p.rmdirs == ["d/x"]
    assert p.conflicts == ["d/x/b"] and writes(p) == ["d/x"]


def test_file_replaced_by_directory():
    p = plan(d(x=d(a=f(F1))), d(x=f(F2)))
    assert p.deletes == ["d/x"] and p.mkdirs == ["d/x"] and writes(p) == ["d/x/a"]
    assert p.conflicts == []
    assert plan(d(x=d(a=f(F1))), d(x=f(F4))).conflicts == ["d/x"]


def test_whole_target_file_to_dir_and_back():
    p = make_plan("d", d(a=f(F1)), f(F2), present={F1, F2}, skipped=set(), check_mode=True)
    assert p.deletes == ["d"] and p.mkdirs == ["d"] and writes(p) == ["d/a"]
    p = make_plan("d", f(F1), d(a=f(F2)), present={F1, F2}, skipped=set(), check_mode=True)
    assert p.deletes == ["d/a"] and p.rmdirs == ["d"] and writes(p) == ["d"]


def test_unreadable_things_in_the_way_are_conflicts():
    assert plan(d(a=f(F1)), d(), skipped=["d/a"]).conflicts == ["d/a"]
    assert plan(d(s=d(b=f(F1))), d(), skipped=["d/s"]).conflicts == ["d/s"]
    assert plan(d(a=f(F1)), d(a=f(F1)), skipped=["d/link"]).conflicts == ["d/link"]


def test_only_writes_over_unreadable_things_are_unknown():
    # the plan saw every other write's path empty or holding a file: nothing to look at again
    assert plan(d(a=f(F1), b=f(F2), c=f(F3)), d(b=f(F1), c=d(x=f(F1))),
                skipped=["d/a"]).unknown == {"d/a"}
    assert plan(d(a=f(F1), s=d(b=f(F2))), None).unknown == set()


def test_skipped_paths_inside_a_removed_directory_are_conflicts():
    p = plan(d(), d(x=d(a=f(F1))), skipped=["d/x/fifo"])
    assert p.conflicts == ["d/x/fifo"]


def test_executable_bit_counts_only_with_check_mode():
    want, have = d(a=f(F1, executable=True)), d(a=f(F1))
    assert writes(plan(want, have)) == ["d/a"] and plan(want, have).conflicts == []
    assert plan(want, have, check_mode=False) == Plan()


def test_refuse_conflicts():
    refuse_conflicts(Plan())
    with pytest.raises(CheckoutConflictError) as info:
        refuse_conflicts(Plan(conflicts=["d/b", "d/a", "d/b"]))
    assert info.value.paths == ["d/a", "d/b"] and info.value.exit_code == 1
    assert "d/a" in info.value.message and "--force" in info.value.hint


def test_refuse_conflicts_truncates_long_lists():
    with pytest.raises(CheckoutConflictError) as info:
        refuse_conflicts(Plan(conflicts=[f"p{i:03}" for i in range(50)]))
    assert "and 30 more" in info.value.message and len(info.value.paths) == 50


# ------------------------------------------------------- running plans on disk


def _snapshot(scm, rel):
    return (scm / f"{rel}.datavc").read_bytes(), read_tree(scm / rel)


def test_checkout_switches_directory_and_file_both_ways(repo, scm):
    gen(scm, {"data": {"x": {"in": "inside"}, "keep": "k"}})
    repo.add(["data"])
    v1 = _snapshot(scm, "data")
    shutil.rmtree(scm / "data/x")
    (scm / "data/x").write_text("now a file")
    repo.commit(["data"])
    v2 = _snapshot(scm, "data")
    for pointer, tree in (v1, v2, v1):
        (scm / "data.datavc").write_bytes(pointer)
        repo.checkout(["data"])
        assert read_tree(scm / "data") == tree


def test_checkout_refuses_to_lose_uncached_edits(repo, scm):
    gen(scm, {"data": {"a": "one", "b": "two"}})
    repo.add(["data"])
    (scm / "data/a").write_text("precious edit")
    (scm / "data/new").write_text("precious new")
    with pytest.raises(CheckoutConflictError) as info:
        repo.checkout(["data"])
    assert info.value.paths == ["data/a", "data/new"]
    assert (scm / "data/a").read_text() == "precious edit"
    assert (scm / "data/new").exists()
    repo.checkout(["data"], force=True)
    assert read_tree(scm / "data") == {"a": b"one", "b": b"two"}


def test_forced_checkout_replaces_a_fifo_and_records_what_lstat_sees(repo, scm):
    from datavc.objects import stat_key

    gen(scm, {"data": {"a": "one", "s": {"b": "two"}}})
    repo.add(["data"])
    shutil.rmtree(scm / "data")
    (scm / "data").mkdir()
    os.mkfifo(scm / "data/a")
    with pytest.raises(CheckoutConflictError):
        repo.checkout(["data"])
    repo.checkout(["data"], force=True)
    assert read_tree(scm / "data") == {"a": b"one", "s": {"b": b"two"}}
    state = repo._state()
    for rel in ("data/a", "data/s/b"):  # the key taken from the open file, after its link
        assert state.get(rel, stat_key(os.lstat(scm / rel))) is not None


def test_read_ahead_runs_merge_neighbours_of_one_pack_only():
    from datavc.workspace import RUN_GAP, _runs

    spans = sorted([("p", 0, 10), ("p", 10, 20), ("p", 5, 8), ("p", 20 + RUN_GAP, 30 + RUN_GAP),
                    ("p", 31 + 2 * RUN_GAP, 40 + 2 * RUN_GAP), ("q", 40, 50)])
    assert _runs(spans) == [("p", 0, 30 + RUN_GAP), ("p", 31 + 2 * RUN_GAP, 40 + 2 * RUN_GAP),
                            ("q", 40, 50)]
    assert _runs([]) == []


def _plant_symlink(repo, scm, tmp_path):
    gen(scm, {"data": {"sub": {"f": "x"}, "g": "g"}})
    repo.add(["data"])
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(scm / "data/sub")
    (scm / "data/sub").symlink_to(outside)
    return outside


def test_checkout_never_writes_through_a_planted_symlink(repo, scm, tmp_path):
    outside = _plant_symlink(repo, scm, tmp_path)
    with pytest.raises(CheckoutConflictError):
        repo.checkout(["data"])
    with pytest.raises((UnsafePathError, OSError)):
        repo.checkout(["data"], force=True)
    assert os.listdir(outside) == []


def test_forced_checkout_through_a_planted_symlink_is_unsafe_path_error(repo, scm, tmp_path):
    _plant_symlink(repo, scm, tmp_path)
    with pytest.raises(UnsafePathError):
        repo.checkout(["data"], force=True)
