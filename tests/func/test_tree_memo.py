"""The tree memo (``.datavc/state/trees``, docs/format.md "State"): a no-op ``status`` or
re-``add`` of a walked tree whose every name and stat are as remembered takes the tree's id
from the memo, without reading the per-file stat cache or building the tree. Every change a
user can make to the data must still be seen. Real git repositories, the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgpack
import pytest

from tests.conftest import gen
from tests.func.helpers import STATE, age, fails, ok

TREES = Path(".datavc/state/trees")


def memo_rows(root: Path) -> dict:
    return msgpack.unpackb((root / TREES).read_bytes(), raw=False)["trees"]


def status_of(run, target: str = "data") -> dict:
    rows = {s["path"]: s for s in json.loads(ok(run("status", "--json")).out)}
    return rows[target]


def added(run, *args: str) -> dict:
    return json.loads(ok(run("add", "--json", *args)).out)[0]


@pytest.fixture
def remembered(root, run):
    """A tracked tree of two levels, old enough to be remembered, and its first status."""
    gen(root, {"data": {"a.txt": "alpha", "b.txt": "beta", "sub": {"c.txt": "gamma",
                                                                   "deep": {"d.txt": "delta"}}}})
    age(root / "data")
    ok(run("add", "data"))
    assert status_of(run)["state"] == "clean"
    assert set(memo_rows(root)) == {"data"}
    return root


def test_clean_status_answers_from_the_memo(remembered, run):
    before = (remembered / STATE).read_bytes()
    r = ok(run("status"))
    assert "up to date" in r.out and r.err == ""
    assert added(run, "data")["hashed"] == 0  # the re-add takes the same path
    assert (remembered / STATE).read_bytes() == before


@pytest.mark.parametrize("change", ["delete", "damage"])
def test_losing_the_stat_cache_makes_everything_looked_at_again(remembered, run, change):
    if change == "delete":
        (remembered / STATE).unlink()
    else:
        (remembered / STATE).write_bytes(b"\xc1 not msgpack")
    r = ok(run("add", "--json", "data"))
    assert ("ignoring unreadable stat cache" in r.err) == (change == "damage")
    assert json.loads(r.out)[0]["hashed"] == 4  # hashed again, as documented
    assert added(run, "data")["hashed"] == 0
    assert status_of(run)["state"] == "clean"


@pytest.mark.parametrize("change", [
    "same-size-rewrite", "append", "delete", "new-file", "new-dir", "empty-dir", "rename",
    "chmod-x", "replace-by-symlink", "move-between-dirs", "same-mtime-rewrite",
])
def test_every_change_is_seen_after_the_memo(remembered, run, change):
    data = remembered / "data"
    a = data / "a.txt"
    if change == "same-size-rewrite":
        a.write_text("ALPHA")
    elif change == "append":
        with a.open("a") as f:
            f.write("!")
    elif change == "delete":
        (data / "sub/deep/d.txt").unlink()
    elif change == "new-file":
        (data / "sub/deep/e.txt").write_text("epsilon")
    elif change == "new-dir":
        (data / "sub/new").mkdir()
        (data / "sub/new/f.txt").write_text("phi")
    elif change == "empty-dir":
        (data / "sub/deep/d.txt").unlink()
        (data / "sub/deep/e.txt").write_text("epsilon")  # same count, other name
    elif change == "rename":
        a.rename(data / "z.txt")
    elif change == "chmod-x":
        a.chmod(0o755)
    elif change == "replace-by-symlink":
        a.unlink()
        a.symlink_to("b.txt")
    elif change == "move-between-dirs":
        a.rename(data / "sub/a.txt")
    elif change == "same-mtime-rewrite":  # size and mtime put back: only the ctime moved
        st = a.stat()
        a.write_text("ALPHA")
        os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    status = status_of(run)
    assert status["state"] == "modified", (change, status)
    assert status["changes"], change


def test_a_quick_re_add_keeps_the_stat_cache(remembered, run):
    """The memo's re-add builds no tree, so it must not prune the per-file entries: after
    it, one edit means one file hashed."""
    assert added(run, "data")["hashed"] == 0
    (remembered / "data/b.txt").write_text("BETA!")
    age(remembered / "data/b.txt")
    res = added(run, "data")
    assert res["hashed"] == 1 and res["changed"] is True
    assert status_of(run)["state"] == "clean"


def test_racily_new_files_are_not_remembered(root, run):
    gen(root, {"data": {"a.txt": "alpha", "b.txt": "beta"}})
    age(root / "data/a.txt")
    b = root / "data/b.txt"  # stamped ahead of the clock: as new as a file can be
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 30 * 10**9))
    ok(run("add", "data"))
    assert not (root / TREES).exists() or "data" not in memo_rows(root)
    age(root / "data/b.txt")
    assert status_of(run)["state"] == "clean"
    assert "data" in memo_rows(root)


def test_trees_with_set_aside_entries_are_not_remembered(root, run):
    gen(root, {"data": {"a.txt": "alpha", ".git": "not a repository"}})
    age(root / "data")
    r = ok(run("add", "data"))
    assert "not tracked" in r.err
    assert not (root / TREES).exists() or "data" not in memo_rows(root)
    r = ok(run("add", "data"))
    assert "not tracked" in r.err  # the warning is given every time, never memoised


def test_a_remembered_tree_missing_from_the_cache_is_still_reported(remembered, run):
    for p in sorted((remembered / ".datavc/cache/objects").rglob("*")):
        if p.is_file():
            p.chmod(0o644)
            p.unlink()
    status = status_of(run)
    assert status["state"] == "clean" and status["not_in_cache"] > 0
    r = added(run, "data")  # the quick re-add must not skip restoring them
    assert r["hashed"] == 0
    assert status_of(run)["not_in_cache"] == 0


def test_a_hostile_memo_is_ignored(remembered, run):
    rows = memo_rows(remembered)
    fp, kind, _, size, nfiles = rows["data"]
    forged = {"v": 1, "trees": {"data": [fp, kind, b"\0" * 16, size, nfiles],
                                "x": [b"short", "dir", b"", -1, 0], "y": "junk"}}
    (remembered / TREES).write_bytes(msgpack.packb(forged, use_bin_type=True))
    # the forged id differs from the manifest's: status builds the tree and sees it clean
    assert status_of(run)["state"] == "clean"
    (remembered / TREES).write_bytes(b"\xff" * 100)
    assert status_of(run)["state"] == "clean"
    (remembered / TREES).write_bytes(msgpack.packb({"v": 99, "trees": {}}))
    assert status_of(run)["state"] == "clean"


def test_checkout_of_an_older_version_is_seen(remembered, run):
    """Checkout rewrites files (new stats), so the memo of the newer tree no longer fits."""
    ok(run("commit", "-m", "v1"))
    (remembered / "data/a.txt").write_text("v2 alpha")
    age(remembered / "data")
    ok(run("commit", "-m", "v2"))
    assert status_of(run)["state"] == "clean"
    ok(run("checkout", "--rev", "HEAD~1"))
    assert (remembered / "data/a.txt").read_text() == "alpha"
    assert status_of(run)["state"] == "modified"  # the manifest still names v2
    ok(run("checkout"))
    assert status_of(run)["state"] == "clean"


def test_a_single_file_target_is_remembered_too(root, run):
    gen(root, {"model.bin": b"\1\2\3"})
    age(root / "model.bin")
    ok(run("add", "model.bin"))
    assert status_of(run, "model.bin")["state"] == "clean"
    assert "model.bin" in memo_rows(root)
    (root / "model.bin").write_bytes(b"\1\2\4")
    assert status_of(run, "model.bin")["state"] == "modified"


def test_an_unreadable_directory_is_still_an_error(remembered, run):
    (remembered / "data/sub").chmod(0)
    try:
        if os.access(remembered / "data/sub", os.R_OK):
            pytest.skip("running as a user who reads every directory")
        fails(run("status"), 7)
    finally:
        (remembered / "data/sub").chmod(0o755)


def test_repro_sees_a_dependency_changed_after_its_id_was_remembered(root, run):
    """repro takes a dependency's id from the tree memo too: a rewrite that keeps its size
    and mtime must still rerun the stage."""
    from tests.func.test_pipeline import CAT, runs, stage

    gen(root, {"cat.py": CAT, "raw": {"x": "x1", "y": "y1"}})
    age(root / "raw")
    age(root / "cat.py")
    (root / "datavc.toml").write_text(stage("a", ["raw"], "data/a"))
    ok(run("trust"))
    ok(run("repro"))
    assert runs(root) == ["a"]
    assert "raw" in memo_rows(root)
    assert "up to date" in ok(run("repro")).out and runs(root) == []
    x = root / "raw/x"
    st = x.stat()
    x.write_text("X1")
    os.utime(x, ns=(st.st_atime_ns, st.st_mtime_ns))
    ok(run("repro"))
    assert runs(root) == ["a"] and (root / "data/a").read_bytes() == b"X1Y1"
