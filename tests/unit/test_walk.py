"""datavc.walk: one lstat pass over a work-tree path, its fingerprint, and the two-process
walk of big trees (which must see exactly what one process sees)."""

from __future__ import annotations

import marshal
import os
import stat
from pathlib import Path

import pytest

from datavc import walk as walk_mod
from datavc.errors import DatavcError
from datavc.fsutil import TMP_MARK
from datavc.walk import PARALLEL_MIN_DIRS, PARALLEL_MIN_FILES, walk

SALT = b"test"


def flat(w: walk_mod.Walk) -> dict[str, tuple]:
    """Every row of a walk by relative path (directories too), order aside."""
    out: dict[str, tuple] = {}
    stack = [w.top] if w.top else []
    while stack:
        d = stack.pop()
        out[d.rel] = ("dir", d.dev)
        for row in d.rows:
            out[f"{d.rel}/{row[0]}"] = row
        stack.extend(d.dirs)
    return out


def make(tmp_path: Path) -> Path:
    for rel in ["d/a.txt", "d/s1/b.txt", "d/s1/deep/c.txt", "d/s2/e.txt", "d/s3/f.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    return tmp_path


def test_walk_sees_every_entry_with_its_stat(tmp_path):
    make(tmp_path)
    os.symlink("a.txt", tmp_path / "d/link")
    w = walk(str(tmp_path), "d")
    rows = flat(w)
    assert set(rows) == {"d", "d/a.txt", "d/link", "d/s1", "d/s1/b.txt", "d/s1/deep",
                         "d/s1/deep/c.txt", "d/s2", "d/s2/e.txt", "d/s3", "d/s3/f.txt"}
    st = os.lstat(tmp_path / "d/s1/b.txt")
    assert rows["d/s1/b.txt"] == ("b.txt", st.st_mode, st.st_dev, st.st_ino, st.st_size,
                                  st.st_mtime_ns, st.st_ctime_ns)
    assert stat.S_ISLNK(rows["d/link"][1])  # a symlink is a row, never followed
    assert w.plain and w.file is None


def test_walk_of_a_file_and_of_nothing(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"xyz")
    w = walk(str(tmp_path), "m.bin")
    assert w.top is None and w.file is not None and w.file[0] == "m.bin"
    assert w.file[4] == 3
    gone = walk(str(tmp_path), "absent")
    assert gone.top is None and gone.file is None


def test_walk_sets_aside_litter_and_reserved_names_without_going_in(tmp_path):
    make(tmp_path)
    (tmp_path / f"d/{TMP_MARK}123").write_text("half")
    (tmp_path / "d/s2/.git").mkdir()
    (tmp_path / "d/s2/.git/huge").write_text("never listed")
    w = walk(str(tmp_path), "d")
    assert w.litter == [f"{tmp_path}/d/{TMP_MARK}123"]
    assert w.skipped == [("d/s2/.git", "reserved or unportable name")]
    assert not w.plain
    assert "d/s2/.git/huge" not in flat(w)


def test_fingerprint_is_stable_and_moves_with_every_change(tmp_path):
    make(tmp_path)
    first = walk(str(tmp_path), "d").fingerprint(SALT)
    assert walk(str(tmp_path), "d").fingerprint(SALT) == first
    assert walk(str(tmp_path), "d").fingerprint(b"other") != first
    seen = {first}
    changes = [
        lambda: (tmp_path / "d/a.txt").write_text("d/a.tx!"),  # same size
        lambda: (tmp_path / "d/s1/deep/c.txt").chmod(0o755),
        lambda: (tmp_path / "d/s1/deep/new").write_text(""),
        lambda: (tmp_path / "d/s3/empty").mkdir(),
        lambda: (tmp_path / "d/s2/e.txt").rename(tmp_path / "d/s3/e.txt"),
        lambda: (tmp_path / "d/s1/b.txt").unlink(),
    ]
    for change in changes:
        change()
        fp = walk(str(tmp_path), "d").fingerprint(SALT)
        assert fp not in seen
        seen.add(fp)


def test_fingerprint_sees_a_rewrite_that_keeps_size_and_mtime(tmp_path):
    make(tmp_path)
    a = tmp_path / "d/a.txt"
    before = walk(str(tmp_path), "d").fingerprint(SALT)
    st = a.stat()
    a.write_text("D/A.TXT")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert walk(str(tmp_path), "d").fingerprint(SALT) != before  # the ctime moved


def big_tree(tmp_path: Path) -> Path:
    # one directory on top (the split goes down to the first level with several), uneven
    for i in range(7):
        for j in range(i + 1):
            p = tmp_path / f"top/only/s{i}/f{j}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(str(j))
    (tmp_path / "top/only/s3/inner").mkdir()
    (tmp_path / "top/only/s3/inner/x").write_text("x")
    (tmp_path / "top/rootfile").write_text("r")
    return tmp_path


def test_two_processes_see_what_one_sees(tmp_path):
    big_tree(tmp_path)
    (tmp_path / f"top/only/s5/{TMP_MARK}9").write_text("litter in the child's share")
    one = walk(str(tmp_path), "top")
    two = walk(str(tmp_path), "top", jobs=2, expect_files=PARALLEL_MIN_FILES)
    assert flat(one) == flat(two)
    assert sorted(one.litter) == sorted(two.litter) and len(two.litter) == 1
    assert one.fingerprint(SALT) == two.fingerprint(SALT)


def test_the_childs_share_comes_back_whole(tmp_path):
    """Nested directories, a symlink, a name that is not UTF-8, a skipped name and litter
    (in every first-level directory, so in both shares) arrive as one process sees them."""
    big_tree(tmp_path)
    for i in range(7):
        share = tmp_path / f"top/only/s{i}"
        (share / "deeper/deepest").mkdir(parents=True)
        (share / "deeper/deepest/z").write_text("z")
        os.symlink("z", share / "deeper/deepest/link")
        with open(os.path.join(os.fsencode(share / "deeper"), b"caf\xe9.bin"), "wb") as f:
            f.write(b"latin-1 name")
        (share / "deeper/.datavc").mkdir()
        (share / f"deeper/{TMP_MARK}7").write_text("litter")
    one = walk(str(tmp_path), "top")
    two = walk(str(tmp_path), "top", jobs=2, expect_files=PARALLEL_MIN_FILES)
    assert flat(one) == flat(two)
    for i in range(7):
        assert f"top/only/s{i}/deeper/caf\udce9.bin" in flat(two)
        assert f"top/only/s{i}/deeper/deepest/link" in flat(two)
        deepest = next(d for d in two.directories()
                       if d.rel == f"top/only/s{i}/deeper/deepest")
        assert (deepest.name, deepest.path) == ("deepest", f"{tmp_path}/top/only/s{i}"
                                                "/deeper/deepest")
    assert sorted(one.skipped) == sorted(two.skipped) and len(two.skipped) == 7
    assert sorted(one.litter) == sorted(two.litter) and len(two.litter) == 7
    assert one.fingerprint(SALT) == two.fingerprint(SALT)


def test_a_failing_child_leaves_the_walk_to_the_parent(tmp_path, monkeypatch):
    big_tree(tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("the child cannot send")

    monkeypatch.setattr(marshal, "dumps", broken)  # the child's copy fails; the parent's unused
    one = walk(str(tmp_path), "top")
    two = walk(str(tmp_path), "top", jobs=2, expect_files=PARALLEL_MIN_FILES)
    assert flat(one) == flat(two)


def test_an_error_in_the_childs_share_reaches_the_caller(tmp_path, monkeypatch):
    big_tree(tmp_path)
    real_open = os.open

    def no_s1(path, *args, **kwargs):
        if str(path).endswith("/s1"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_s1)
    with pytest.raises(DatavcError, match="top/only/s1"):
        walk(str(tmp_path), "top", jobs=2, expect_files=PARALLEL_MIN_FILES)
    with pytest.raises(DatavcError, match="top/only/s1"):
        walk(str(tmp_path), "top")


def test_small_trees_and_threads_stay_in_one_process(tmp_path, monkeypatch):
    big_tree(tmp_path)

    def no_fork() -> int:
        raise AssertionError("forked")

    monkeypatch.setattr(os, "fork", no_fork)
    walk(str(tmp_path), "top", jobs=2, expect_files=PARALLEL_MIN_FILES - 1)
    walk(str(tmp_path), "top", jobs=2)  # size unknown, and 7 directories to share
    walk(str(tmp_path), "top", jobs=1, expect_files=PARALLEL_MIN_FILES)
    monkeypatch.setattr(walk_mod.threading, "active_count", lambda: 2)
    walk(str(tmp_path), "top", jobs=2, expect_files=PARALLEL_MIN_FILES)


def test_a_tree_of_unknown_size_is_shared_when_it_has_many_directories(tmp_path, monkeypatch):
    for i in range(PARALLEL_MIN_DIRS):
        (tmp_path / f"top/s{i:02d}").mkdir(parents=True)
        (tmp_path / f"top/s{i:02d}/f").write_text(str(i))
    forks = []
    real_fork = os.fork

    def counting_fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counting_fork)
    two = walk(str(tmp_path), "top", jobs=2)
    assert forks == [1]
    assert flat(two) == flat(walk(str(tmp_path), "top"))


def test_no_fork_means_one_process(tmp_path, monkeypatch):
    big_tree(tmp_path)
    fds_before = len(os.listdir("/proc/self/fd"))

    def no_fork() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    two = walk(str(tmp_path), "top", jobs=2, expect_files=PARALLEL_MIN_FILES)
    assert flat(two) == flat(walk(str(tmp_path), "top"))
    assert len(os.listdir("/proc/self/fd")) == fds_before  # the pipe was closed


def test_the_answer_arrives_when_sigchld_is_ignored(tmp_path):
    """Started by a parent that ignores SIGCHLD, the child is reaped by the kernel and
    waitpid has no status to give: the answer's own length tells it is whole."""
    import signal

    big_tree(tmp_path)
    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        two = walk(str(tmp_path), "top", jobs=2, expect_files=PARALLEL_MIN_FILES)
    finally:
        signal.signal(signal.SIGCHLD, old)
    assert flat(two) == flat(walk(str(tmp_path), "top"))


def test_the_child_drops_the_repository_lock(tmp_path, monkeypatch):
    """A forked walker must not keep the lock alive: it closes the inherited lock fds."""
    from datavc import lock

    big_tree(tmp_path)
    read_end, write_end = os.pipe()
    monkeypatch.setattr(lock, "close_inherited",
                        lambda: os.write(write_end, str(os.getpid()).encode()))
    walk(str(tmp_path), "top", jobs=2, expect_files=PARALLEL_MIN_FILES)
    os.close(write_end)
    child = os.read(read_end, 100).decode()
    os.close(read_end)
    assert child and int(child) != os.getpid()


def test_feed_gets_each_directorys_regular_files_as_listed(tmp_path, monkeypatch):
    root = make(tmp_path)
    os.symlink("a.txt", root / "d/link")
    os.mkfifo(root / "d/s2/fifo")
    (root / f"d/s3/{TMP_MARK}x").write_text("litter")
    monkeypatch.setattr(walk_mod, "_can_fork", lambda: True)
    fed: list[list[tuple[str, int]]] = []
    w = walk(str(root), "d", jobs=2, expect_files=None, feed=fed.append)
    assert all(len({os.path.dirname(p) for p, _ in batch}) == 1 for batch in fed)  # per dir
    assert all(size == os.path.getsize(p) for batch in fed for p, size in batch)
    got = sorted(p for batch in fed for p, _ in batch)
    assert got == sorted(str(root / r) for r in ["d/a.txt", "d/s1/b.txt", "d/s1/deep/c.txt",
                                                 "d/s2/e.txt", "d/s3/f.txt"])
    assert flat(w) == flat(walk(str(root), "d"))  # the same walk, in this process
