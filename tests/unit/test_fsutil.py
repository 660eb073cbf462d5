"""fsutil: atomic writes, read-only marking, symlink-proof directory fds."""

from __future__ import annotations

import os
import stat

import pytest

from datavc import fsutil
from datavc.errors import DatavcError, UnsafePathError


@pytest.fixture
def root_fd(tmp_path):
    (tmp_path / "root").mkdir()
    fd = os.open(tmp_path / "root", fsutil.O_DIR)
    yield fd
    os.close(fd)


@pytest.fixture
def wd(tmp_path):
    """An empty directory (tmp_path also holds the isolated HOME)."""
    (tmp_path / "w").mkdir()
    return tmp_path / "w"


def test_tmp_names_are_marked_and_unique():
    a, b = fsutil.tmp_name(), fsutil.tmp_name(".x")
    assert a.startswith(fsutil.TMP_MARK) and b.endswith(".x") and a != b
    assert str(os.getpid()) in a


def test_atomic_write_replaces_and_leaves_no_temp(wd):
    path = wd / "f"
    path.write_bytes(b"old")
    fsutil.atomic_write(str(path), b"new", mode=0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 & ~_umask()
    assert os.listdir(wd) == ["f"]


def test_atomic_write_failure_keeps_target_and_removes_temp(wd):
    target = wd / "d"
    target.mkdir()  # renaming a file over a directory fails
    with pytest.raises(DatavcError) as info:
        fsutil.atomic_write(str(target), b"data")
    assert str(target) in info.value.message
    assert os.listdir(wd) == ["d"] and target.is_dir()


def test_atomic_write_into_missing_directory_is_a_datavc_error(tmp_path):
    with pytest.raises(DatavcError):
        fsutil.atomic_write(str(tmp_path / "nope" / "f"), b"x")


def test_make_readonly_clears_every_write_bit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.chmod(path, 0o775)
    fsutil.make_readonly(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o555


def test_sync_barrier_and_fsync_dir_run(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    fsutil.sync_barrier(str(tmp_path))
    fsutil.fsync_dir(tmp_path)


def test_start_writeback_starts_it_where_the_kernel_can(tmp_path, monkeypatch):
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fsutil.write_all(fd, b"x" * 100_000)
        assert fsutil.start_writeback(fd) is (hasattr(fsutil.libc(), "sync_file_range"))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 100_000
    r, w = os.pipe()
    try:
        assert fsutil.start_writeback(w) is False  # ESPIPE: refused, not raised
    finally:
        os.close(r)
        os.close(w)
    monkeypatch.setattr(fsutil, "libc", lambda: None)  # no C library: nothing to call
    assert fsutil.start_writeback(0) is False


def test_write_all_writes_everything(tmp_path):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        fsutil.write_all(fd, memoryview(b"abc" * 100000))
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"abc" * 100000


def test_open_dir_creates_nested_directories(tmp_path, root_fd):
    with fsutil.open_dir(root_fd, ["a", "b", "c"], create=True) as fd:
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    assert (tmp_path / "root/a/b/c/f").is_file()


def test_open_dir_existing_without_create(tmp_path, root_fd):
    (tmp_path / "root/a").mkdir()
    with fsutil.open_dir(root_fd, ["a"], create=False) as fd:
        assert stat.S_ISDIR(os.fstat(fd).st_mode)
    with fsutil.open_dir(root_fd, [], create=False) as fd:
        assert os.path.samestat(os.fstat(fd), os.fstat(root_fd))


def _plant(tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    where = tmp_path / "root" / "a"
    if kind == "symlink":
        where.symlink_to(outside)
    elif kind == "dangling":
        where.symlink_to(outside / "missing")
    else:
        where.write_bytes(b"a file")
    return outside


@pytest.mark.parametrize("kind", ["symlink", "dangling", "file"])
def test_open_dir_never_writes_through_a_symlink_or_file(tmp_path, root_fd, kind):
    outside = _plant(tmp_path, kind)
    with pytest.raises((UnsafePathError, OSError)):
        with fsutil.open_dir(root_fd, ["a", "b"], create=True):
            pass
    assert list(outside.iterdir()) == []
    assert not (outside / "missing").exists()


def _fd_count():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["symlink", "dangling", "file"])
def test_open_dir_refuses_symlink_with_unsafe_path_error(tmp_path, root_fd, kind):
    _plant(tmp_path, kind)
    with pytest.raises(UnsafePathError) as info:
        with fsutil.open_dir(root_fd, ["a", "b"], create=True):
            pass
    assert info.value.exit_code == 6 and "'a'" in info.value.message


def test_open_dir_missing_without_create_raises_file_not_found(root_fd):
    with pytest.raises(FileNotFoundError):
        with fsutil.open_dir(root_fd, ["missing"], create=False):
            pass


def test_open_dir_closes_its_fds(tmp_path, root_fd):
    before = _fd_count()
    for _ in range(5):
        with fsutil.open_dir(root_fd, ["x", "y"], create=True):
            pass
    assert _fd_count() == before


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------ read_limited


def test_read_limited_reads_small_files_whole_without_a_limit_sized_buffer(tmp_path):
    import tracemalloc

    p = tmp_path / "small"
    p.write_bytes(b"x" * 1000)
    tracemalloc.start()
    try:
        with open(p, "rb") as f:
            data = fsutil.read_limited(f, 64 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == b"x" * 1000
    assert peak < 1 << 20  # f.read(limit + 1) would have allocated 64 MiB


def test_read_limited_stops_one_byte_past_the_limit(tmp_path):
    p = tmp_path / "big"
    p.write_bytes(b"y" * 5000)
    with open(p, "rb") as f:
        assert fsutil.read_limited(f, 4096) == b"y" * 4097
    with open(p, "rb") as f:
        assert fsutil.read_limited(f, 5000) == b"y" * 5000


def test_read_limited_reads_on_when_the_file_grew_or_is_not_regular(tmp_path, monkeypatch):
    import io

    p = tmp_path / "grows"
    p.write_bytes(b"z" * 3000)
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result(  # stat taken before growth
        (*real_fstat(fd)[:6], 10, *real_fstat(fd)[7:])))
    with open(p, "rb") as f:
        assert fsutil.read_limited(f, 1 << 20) == b"z" * 3000
    with open(p, "rb") as f:
        assert fsutil.read_limited(f, 2000) == b"z" * 2001
    monkeypatch.undo()
    assert fsutil.read_limited(io.BytesIO(b"q" * 70), 64) == b"q" * 65  # no fd: bounded
    r, w = os.pipe()
    os.write(w, b"pipe data")
    os.close(w)
    with os.fdopen(r, "rb") as f:
        assert fsutil.read_limited(f, 100) == b"pipe data"
