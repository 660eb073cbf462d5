"""state: the stat cache and git's racy-clean rule."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgpack
import pytest

from datavc import state
from datavc.errors import DatavcError
from datavc.objects import StatKey, stat_key
from datavc.state import COARSE_WINDOW_NS, FINE_WINDOW_NS, StatCache, racy_window

STARTED = 1_700_000_000_123_456_789
D = b"\x07" * 16


FIELDS = ("dev", "ino", "size", "mtime_ns", "ctime_ns")


def key(mtime_ns: int = STARTED - 10 * COARSE_WINDOW_NS - 1, **kw) -> StatKey:
    fields = {"dev": 1, "ino": 2, "size": 3, "mtime_ns": mtime_ns, "ctime_ns": mtime_ns} | kw
    return tuple(fields[f] for f in FIELDS)  # type: ignore[return-value]


def test_stat_key_order(tmp_path):
    st = os.stat(tmp_path)
    assert stat_key(st) == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@pytest.fixture
def cache(tmp_path):
    return StatCache(str(tmp_path / "state" / "stat"))


def test_racy_window_depends_on_timestamp_granularity():
    assert racy_window(1_000_000_000) == COARSE_WINDOW_NS  # whole milliseconds
    assert racy_window(1_000_000_001) == FINE_WINDOW_NS


def test_old_entry_is_recorded(cache):
    cache.put("a", key(), D, STARTED)
    assert cache.get("a", key()) == D


@pytest.mark.parametrize("age", [0, 1, FINE_WINDOW_NS // 2, FINE_WINDOW_NS - 1, FINE_WINDOW_NS])
def test_racily_new_entry_is_not_recorded(cache, age):
    k = key(STARTED - age)
    assert k[3] % 1_000_000  # a fine-grained stamp
    cache.put("a", k, D, STARTED)
    assert cache.get("a", k) is None


def test_just_outside_the_fine_window_is_recorded(cache):
    k = key(STARTED - FINE_WINDOW_NS - 1)
    cache.put("a", k, D, STARTED)
    assert cache.get("a", k) == D


def test_coarse_stamps_need_the_coarse_window(cache):
    recent = key(1_700_000_000_000_000_000)  # whole milliseconds: maybe a 2 s file system
    cache.put("a", recent, D, recent[3] + COARSE_WINDOW_NS // 2)
    assert cache.get("a", recent) is None
    cache.put("a", recent, D, recent[3] + COARSE_WINDOW_NS + 1)
    assert cache.get("a", recent) == D


def test_future_mtime_is_not_recorded(cache):
    k = key(STARTED + 10**9 + 1)
    cache.put("a", k, D, STARTED)
    assert cache.get("a", k) is None


def test_racy_put_drops_an_older_entry(cache):
    cache.put("a", key(), D, STARTED)
    cache.put("a", key(STARTED - 1), b"\x08" * 16, STARTED)
    assert cache.get("a", key()) is None


@pytest.mark.parametrize("field", FIELDS)
def test_any_stat_field_mismatch_is_a_miss(cache, field):
    k = key()
    cache.put("a", k, D, STARTED)
    assert cache.get("a", key(**{field: k[FIELDS.index(field)] + 1})) is None
    assert cache.get("b", k) is None


def test_put_written_records_even_racy_files(cache):
    k = key(STARTED)
    cache.put_written("a", k, D)
    assert cache.get("a", k) == D


def test_forget_and_retain_under(cache):
    for p in ("d/a", "d/b", "d/sub/c", "dd/x", "d"):
        cache.put(p, key(), D, STARTED)
    cache.forget("d/a")
    cache.retain_under("d", {"d/b"})
    assert [p for p in ("d/a", "d/b", "d/sub/c", "dd/x", "d") if cache.get(p, key())] == [
        "d/b", "dd/x"]


def test_save_load_round_trip(cache):
    names = ["a", "dir/b", os.fsdecode(b"caf\xe9")]
    for i, p in enumerate(names):
        cache.put(p, key(size=i), D, STARTED)
    cache.save()
    back = StatCache.load(cache.path)
    assert all(back.get(p, key(size=i)) == D for i, p in enumerate(names))


def test_save_without_changes_writes_nothing(cache):
    cache.save()
    assert not os.path.exists(cache.path)


def test_save_leaves_no_temp_files(cache):
    cache.put("a", key(), D, STARTED)
    cache.save()
    assert os.listdir(os.path.dirname(cache.path)) == ["stat"]


def test_failed_save_keeps_the_old_file(cache, monkeypatch):
    cache.put("a", key(), D, STARTED)
    cache.save()
    old = Path(cache.path).read_bytes()
    cache.put("b", key(), D, STARTED)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(DatavcError):
        cache.save()
    monkeypatch.undo()
    assert Path(cache.path).read_bytes() == old
    assert os.listdir(os.path.dirname(cache.path)) == ["stat"]


def test_missing_file_is_an_empty_cache_without_warning(cache, capsys):
    assert StatCache.load(cache.path).get("a", key()) is None
    assert capsys.readouterr().err == ""


def _write(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("data", [
    b"", b"garbage", b"\xc1\xc1", msgpack.packb([1, 2]), msgpack.packb({"v": 2, "entries": {}}),
    msgpack.packb({"v": 1}), msgpack.packb({"v": 1, "entries": [1]}),
])
def test_unreadable_state_is_a_warning_and_an_empty_cache(cache, capsys, data):
    _write(cache.path, data)
    loaded = StatCache.load(cache.path)
    assert loaded._entries == {}
    err = capsys.readouterr().err
    assert "warning" in err and cache.path in err
    loaded.save()  # the broken file is replaced
    assert StatCache.load(cache.path)._entries == {}
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("rows", [{b"a": [1, 2]}, {"a": [*key(), D, 7]}, {"a": 5},
                                  {"a": [*key(), b"short"]}, {"a": [*key()[:4], "x", D]}])
def test_malformed_rows_are_never_hits(cache, rows):
    _write(cache.path, msgpack.packb({"v": 1, "entries": rows}, use_bin_type=True))
    assert StatCache.load(cache.path).get("a", key()) is None


def test_a_directory_in_place_of_the_state_file_is_a_warning(cache, capsys):
    os.makedirs(cache.path)
    assert StatCache.load(cache.path)._entries == {}
    assert "warning" in capsys.readouterr().err


@pytest.mark.parametrize("digest", [b"short", "a string", 7])
def test_entries_with_bad_digests_are_dropped(cache, digest):
    doc = {"v": 1, "entries": {b"a": [*key(), digest]}}
    _write(cache.path, msgpack.packb(doc, use_bin_type=True))
    assert StatCache.load(cache.path).get("a", key()) is None


def test_now_ns_is_wall_clock():
    assert abs(state.now_ns() - time.time_ns()) < 10**9


# ------------------------------------------------------------ presence memo


def _objects(tmp_path: Path, age_s: int = 3600) -> Path:
    objs = tmp_path / "objects"
    for i in range(256):
        (objs / f"{i:02x}").mkdir(parents=True, exist_ok=True)
    _age_dirs(objs, age_s)
    return objs


def _age_dirs(objs: Path, age_s: int = 3600) -> None:
    old = time.time_ns() - age_s * 10**9
    for d in objs.iterdir():
        os.utime(d, ns=(old, old))


@pytest.fixture(autouse=False)
def local_fs(monkeypatch):
    monkeypatch.setattr(state, "file_system_type", lambda path: "ext4")


def test_fanout_stamp_changes_when_an_object_comes_or_goes(tmp_path, local_fs):
    objs = _objects(tmp_path)
    now = time.time_ns()
    first = state.fanout_stamp(str(objs), now)
    assert first is not None and state.fanout_stamp(str(objs), now) == first
    obj = objs / "ab" / ("c" * 30)
    obj.write_bytes(b"x")
    _age_dirs(objs, 1800)
    added = state.fanout_stamp(str(objs), now)
    assert added not in (None, first)
    obj.unlink()
    _age_dirs(objs, 1200)
    assert state.fanout_stamp(str(objs), now) not in (None, first, added)


def test_fanout_stamp_is_none_while_a_directory_changed_too_recently(tmp_path, local_fs):
    objs = _objects(tmp_path)
    (objs / "07" / ("d" * 30)).write_bytes(b"new")  # its directory's mtime is now
    assert state.fanout_stamp(str(objs), time.time_ns()) is None


def test_settled_fanout_stamp_waits_out_a_recent_change(tmp_path, local_fs):
    objs = _objects(tmp_path)
    (objs / "07" / ("d" * 30)).write_bytes(b"new")  # its directory's mtime is now
    assert state.settled_fanout_stamp(str(objs), 0) is None  # not willing to wait
    stamp = state.settled_fanout_stamp(str(objs))
    assert stamp is not None and stamp == state.fanout_stamp(str(objs), time.time_ns())
    old = state.fanout_stamp(str(objs), time.time_ns())
    assert state.settled_fanout_stamp(str(objs), 0) == old  # settled already: no wait


def test_settled_fanout_stamp_does_not_wait_for_a_coarse_file_system(tmp_path, local_fs):
    objs = _objects(tmp_path)
    now_ms = time.time_ns() // 1_000_000 * 1_000_000  # whole milliseconds: a 2 s window
    os.utime(objs / "07", ns=(now_ms, now_ms))
    assert state.settled_fanout_stamp(str(objs)) is None


def test_presence_memo_renew_forgets_what_it_counted_before(tmp_path):
    path = str(tmp_path / "present")
    memo = state.PresenceMemo.load(path, b"S" * 16)
    memo.put(D + b"d", 3)
    memo.save()
    memo.renew(b"T" * 16)
    assert memo.get(D + b"d") is None and memo.dirty
    memo.put(D + b"f", 0)
    memo.save()
    again = state.PresenceMemo.load(path, b"T" * 16)
    assert again.get(D + b"f") == 0 and again.get(D + b"d") is None
    again.renew(None)  # no trusted stamp: nothing is kept, and the file is left alone
    again.put(D + b"e", 0)
    assert again.get(D + b"e") is None and not again.dirty
    assert state.PresenceMemo.load(path, b"T" * 16).get(D + b"f") == 0


def test_presence_memo_round_trip_and_stamp_check(tmp_path):
    path = str(tmp_path / "present")
    memo = state.PresenceMemo.load(path, b"S" * 16)
    assert memo.get(D + b"d") is None
    memo.put(D + b"d", 3)
    memo.save()
    assert state.PresenceMemo.load(path, b"S" * 16).get(D + b"d") == 3
    assert state.PresenceMemo.load(path, b"T" * 16).get(D + b"d") is None  # cache changed
    racy = state.PresenceMemo.load(path, None)
    racy.put(D + b"d", 5)  # nothing is remembered without a trusted stamp
    assert racy.get(D + b"d") is None
    racy.save()
    assert state.PresenceMemo.load(path, b"S" * 16).get(D + b"d") == 3


@pytest.mark.parametrize("content", [
    b"", b"\xc1garbage", msgpack.packb([1, 2]),
    msgpack.packb({"v": 99, "stamp": b"S" * 16, "roots": {D: 0}}),
    msgpack.packb({"v": 1, "stamp": b"S" * 16, "roots": [D]}),
    msgpack.packb({"v": 1, "stamp": b"S" * 16, "roots": {D: -1, "x": 0, D * 2: "0"}}),
])
def test_presence_memo_ignores_hostile_files(tmp_path, content):
    path = tmp_path / "present"
    path.write_bytes(content)
    memo = state.PresenceMemo.load(str(path), b"S" * 16)
    assert memo.get(D) is None and memo.get(D * 2) is None and memo.get("x") is None  # type: ignore[arg-type]


def test_presence_memo_keeps_a_bounded_number_of_roots(tmp_path):
    memo = state.PresenceMemo.load(str(tmp_path / "present"), b"S" * 16)
    for i in range(200):
        memo.put(i.to_bytes(16, "big"), i)
    memo.save()
    again = state.PresenceMemo.load(str(tmp_path / "present"), b"S" * 16)
    assert again.get((199).to_bytes(16, "big")) == 199 and again.get(bytes(16)) is None


def test_file_system_type_names_the_mount_holding_a_path(tmp_path):
    kind = state.file_system_type(str(tmp_path))
    if not os.path.exists("/proc/self/mountinfo"):
        assert kind is None
        return
    assert kind and state.file_system_type("/proc/self") == "proc"


def test_no_stamp_on_a_file_system_that_may_not_keep_directory_mtimes(tmp_path, monkeypatch):
    objs = _objects(tmp_path)
    monkeypatch.setattr(state, "file_system_type", lambda path: "nfs4")
    assert state.fanout_stamp(str(objs), time.time_ns()) is None
    monkeypatch.setattr(state, "file_system_type", lambda path: "ext4")
    assert state.fanout_stamp(str(objs), time.time_ns()) is not None


FP = b"\x01" * 16


def test_tree_memo_round_trip(cache):
    assert cache.known_tree("data", FP) is None and cache.last_files("data") is None
    cache.remember_tree("data", FP, "dir", D, 123, 4)
    assert cache.known_tree("data", FP) == ("dir", D, 123, 4)
    assert cache.known_tree("data", b"\x02" * 16) is None  # another walk
    assert cache.known_tree("other", FP) is None
    cache.save()
    loaded = StatCache.load(cache.path)
    assert loaded.known_tree("data", FP) == ("dir", D, 123, 4)
    assert loaded.last_files("data") == 4
    assert not loaded.dirty
    loaded.remember_tree("data", FP, "dir", D, 123, 4)  # the same row: nothing to write
    assert not loaded.dirty


def test_the_tree_memo_does_not_read_the_per_file_entries(cache, monkeypatch):
    cache.put("a", key(), D, STARTED)
    cache.remember_tree("data", FP, "file", D, 1, 1)
    cache.save()

    def no_read(self):
        raise AssertionError("the per-file entries were read")

    monkeypatch.setattr(StatCache, "_read", no_read)
    loaded = StatCache.load(cache.path)
    assert loaded.known_tree("data", FP) == ("file", D, 1, 1)
    loaded.save()


@pytest.mark.parametrize("change", ["delete", "damage", "rewrite"])
def test_the_tree_memo_goes_with_its_stat_file(cache, capsys, change):
    """Deleting, damaging or replacing the stat cache makes every tree be looked at again:
    the memo names the stat file it was saved with."""
    cache.put("a", key(), D, STARTED)
    cache.remember_tree("data", FP, "dir", D, 1, 1)
    cache.save()
    if change == "delete":
        os.unlink(cache.path)
    elif change == "damage":
        _write(cache.path, b"garbage")
    else:
        other = StatCache(cache.path)
        other.put("b", key(), D, STARTED)
        other.save()
    loaded = StatCache.load(cache.path)
    assert loaded.known_tree("data", FP) is None
    loaded.remember_tree("data", FP, "dir", D, 1, 1)
    loaded.put("c", key(), D, STARTED)
    loaded.save()  # the stat file rewritten, and the memo with it
    assert StatCache.load(cache.path).known_tree("data", FP) == ("dir", D, 1, 1)


def test_a_memo_saved_alone_names_the_stat_file_as_it_is(cache):
    cache.put("a", key(), D, STARTED)
    cache.save()
    again = StatCache.load(cache.path)
    again.remember_tree("data", FP, "dir", D, 1, 1)  # only the memo changes
    again.save()
    assert StatCache.load(cache.path).known_tree("data", FP) == ("dir", D, 1, 1)


def test_the_tree_memo_keeps_a_bounded_number_of_trees(cache, monkeypatch):
    monkeypatch.setattr(state, "MAX_TREES", 3)
    for i in range(5):
        cache.remember_tree(f"t{i}", FP, "dir", D, i, i)
    cache.remember_tree("t2", FP, "dir", D, 2, 2)  # unchanged: keeps its place
    cache.remember_tree("t3", FP, "dir", D, 9, 9)  # changed: becomes the newest
    cache.save()
    loaded = StatCache.load(cache.path)
    assert [t for t in ("t0", "t1", "t2", "t3", "t4") if loaded.last_files(t)] == ["t2", "t3",
                                                                                     "t4"]


@pytest.mark.parametrize("content", [
    b"", b"\xff\xff", msgpack.packb([1]), msgpack.packb({"v": 2, "trees": {}}),
    msgpack.packb({"v": 1, "trees": [1]}),
    msgpack.packb({"v": 1, "trees": {"data": [FP, "dir", D, 1]}}),  # too short
    msgpack.packb({"v": 1, "trees": {"data": [b"short", "dir", D, 1, 1]}}, use_bin_type=True),
    msgpack.packb({"v": 1, "trees": {"data": [FP, "link", D, 1, 1]}}, use_bin_type=True),
    msgpack.packb({"v": 1, "trees": {"data": [FP, "dir", b"x", 1, 1]}}, use_bin_type=True),
    msgpack.packb({"v": 1, "trees": {"data": [FP, "dir", D, -1, 1]}}, use_bin_type=True),
    msgpack.packb({"v": 1, "trees": {"data": [FP, "dir", D, 1, "1"]}}, use_bin_type=True),
    msgpack.packb({"v": 1, "trees": {7: [FP, "dir", D, 1, 1]}}, use_bin_type=True),
])
def test_a_hostile_tree_memo_is_never_trusted(cache, content):
    _write(cache.trees_path, content)
    loaded = StatCache.load(cache.path)
    assert loaded.known_tree("data", FP) is None
    loaded.remember_tree("data", FP, "dir", D, 5, 5)
    loaded.save()  # and is replaced by a sound one
    assert StatCache.load(cache.path).known_tree("data", FP) == ("dir", D, 5, 5)


def test_tree_memo_keeps_paths_that_are_not_utf8(cache):
    rel = os.fsdecode(b"data/\xff")
    cache.remember_tree(rel, FP, "dir", D, 1, 1)
    cache.save()
    assert StatCache.load(cache.path).known_tree(rel, FP) == ("dir", D, 1, 1)


def _index(tmp_path: Path, body: bytes = b"DIRC index", age_s: int = 3600) -> Path:
    """A git index written as git writes one (a new file renamed over the old)."""
    index = tmp_path / "index"
    new = tmp_path / "index.lock"
    new.write_bytes(body)
    if age_s:
        old = time.time_ns() - age_s * 10**9
        os.utime(new, ns=(old, old))
    new.rename(index)
    return index


def test_git_index_memo_holds_while_the_index_is_unchanged(tmp_path, local_fs):
    path = str(tmp_path / "gitindex")
    index = _index(tmp_path)
    memo = state.GitIndexMemo.load(path, str(index))
    assert not memo.untracked("data")
    memo.put("data")
    memo.save()
    assert state.GitIndexMemo.load(path, str(index)).untracked("data")
    assert not state.GitIndexMemo.load(path, str(index)).untracked("other")
    _index(tmp_path, b"DIRC index")  # written again, same bytes: another inode and mtime
    assert not state.GitIndexMemo.load(path, str(index)).untracked("data")


def test_git_index_memo_trusts_no_index_written_just_now(tmp_path, local_fs):
    path = str(tmp_path / "gitindex")
    index = _index(tmp_path, age_s=0)  # git could write it again within the same tick
    memo = state.GitIndexMemo.load(path, str(index))
    memo.put("data")
    memo.save()
    assert not memo.untracked("data") and not os.path.exists(path)
    missing = state.GitIndexMemo.load(path, str(tmp_path / "absent"))
    missing.put("data")
    assert not missing.untracked("data")
    assert not state.GitIndexMemo.load(path, None).untracked("data")


def test_git_index_memo_needs_a_local_file_system(tmp_path, monkeypatch):
    index = _index(tmp_path)
    monkeypatch.setattr(state, "file_system_type", lambda path: "nfs4")
    memo = state.GitIndexMemo.load(str(tmp_path / "gitindex"), str(index))
    memo.put("data")
    assert not memo.untracked("data")


@pytest.mark.parametrize("content", [
    b"", b"\xc1garbage", msgpack.packb([1]),
    msgpack.packb({"v": 2, "index": "KEY", "clear": ["data"]}),  # another version
    msgpack.packb({"v": 1, "index": [1, 2, 3, 4], "clear": ["data"]}),  # another index
    msgpack.packb({"v": 1, "index": "KEY", "clear": "data"}),
    msgpack.packb({"v": 1, "index": "KEY", "clear": [7, None, ["data"]]}),
])
def test_git_index_memo_ignores_hostile_or_foreign_files(tmp_path, local_fs, content):
    index = _index(tmp_path)
    if content.startswith(b"\x83"):  # a map: point it at this index where it says KEY
        st = os.stat(index)
        key = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        doc = msgpack.unpackb(content)
        if doc["index"] == "KEY":
            doc["index"] = key
        content = msgpack.packb(doc)
    (tmp_path / "gitindex").write_bytes(content)
    memo = state.GitIndexMemo.load(str(tmp_path / "gitindex"), str(index))
    assert not memo.untracked("data") and not memo.untracked("d")


def test_git_index_memo_keeps_a_bounded_number_of_paths(tmp_path, local_fs):
    index = _index(tmp_path)
    memo = state.GitIndexMemo.load(str(tmp_path / "gitindex"), str(index))
    for i in range(1000):
        memo.put(f"p{i}")
    memo.save()
    again = state.GitIndexMemo.load(str(tmp_path / "gitindex"), str(index))
    assert again.untracked("p999") and sum(again.untracked(f"p{i}") for i in range(1000)) <= 256


def test_git_index_memo_keeps_names_that_are_not_utf8(tmp_path, local_fs):
    index = _index(tmp_path)
    name = os.fsdecode(b"raw\xfe")
    memo = state.GitIndexMemo.load(str(tmp_path / "gitindex"), str(index))
    memo.put(name)
    memo.put("data")
    memo.save()  # stored as raw bytes, as the stat cache stores such paths
    again = state.GitIndexMemo.load(str(tmp_path / "gitindex"), str(index))
    assert again.untracked(name) and again.untracked("data")
