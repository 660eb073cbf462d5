"""links: placing one cache object at one workspace path (reflink, hardlink, symlink, copy)."""

from __future__ import annotations

import errno
import fcntl
import os
import stat

import pytest

from datavc import fsutil, links
from datavc.errors import DatavcError, IntegrityError
from datavc.links import Linker

DATA = b"object content\n" * 100


@pytest.fixture
def oid(store):
    return store.add_bytes(DATA)


@pytest.fixture
def dfd(ws):
    fd = os.open(ws, fsutil.O_DIR)
    yield fd
    os.close(fd)


def place(store, oid, dfd, *types, name="f", executable=False):
    linker = Linker(store.objects_dir, types)
    st = linker.place(oid.digest, dfd, name, executable=executable)
    return linker, st


def test_copy_places_the_bytes_writable(store, oid, ws, dfd):
    _, st = place(store, oid, dfd, "copy")
    assert (ws / "f").read_bytes() == DATA
    assert st.st_ino == os.lstat(ws / "f").st_ino
    assert stat.S_IMODE(st.st_mode) & 0o200 and not stat.S_IMODE(st.st_mode) & 0o111
    assert os.listdir(ws) == ["f"]


def test_copy_executable(store, oid, ws, dfd):
    _, st = place(store, oid, dfd, "copy", executable=True)
    assert stat.S_IMODE(st.st_mode) & 0o100


def test_copy_replaces_an_existing_file(store, oid, ws, dfd):
    (ws / "f").write_bytes(b"old")
    place(store, oid, dfd, "copy")
    assert (ws / "f").read_bytes() == DATA and os.listdir(ws) == ["f"]


def _corrupt(store, oid):
    """Flip every bit of the first byte (writing a fixed byte is no change 1 time in 256)."""
    os.chmod(store.path(oid), 0o644)
    with open(store.path(oid), "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))


@pytest.mark.parametrize("size", [100, (4 << 20) + 1])
def test_copy_refuses_a_corrupt_object(store, ws, dfd, size):
    oid = store.add_bytes(os.urandom(size))
    _corrupt(store, oid)
    (ws / "f").write_bytes(b"user data")
    with pytest.raises(IntegrityError) as info:
        place(store, oid, dfd, "copy")
    assert info.value.exit_code == 3 and str(oid) in info.value.message
    assert (ws / "f").read_bytes() == b"user data"
    assert os.listdir(ws) == ["f"]  # the temp file was removed


def test_hardlink_is_the_read_only_object(store, oid, ws, dfd):
    _, st = place(store, oid, dfd, "hardlink")
    assert st.st_ino == os.stat(store.path(oid)).st_ino and st.st_nlink == 2
    assert stat.S_IMODE(st.st_mode) & 0o222 == 0
    assert (ws / "f").read_bytes() == DATA


def test_symlink_points_at_the_object(store, oid, ws, dfd):
    _, st = place(store, oid, dfd, "symlink")
    assert stat.S_ISLNK(st.st_mode)
    assert os.readlink(ws / "f") == os.path.abspath(store.path(oid))


def test_reflink_falls_back_to_copy_where_unsupported(store, oid, ws, dfd):
    linker, _ = place(store, oid, dfd, "reflink", "copy")
    assert (ws / "f").read_bytes() == DATA and os.listdir(ws) == ["f"]
    assert linker.current in ("reflink", "copy")  # ext4/tmpfs: copy; btrfs/xfs: reflink


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY])
def test_reflink_failure_falls_back_and_is_remembered(store, oid, ws, dfd, monkeypatch, code):
    def ioctl(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    linker, _ = place(store, oid, dfd, "reflink", "copy")
    assert linker.current == "copy" and (ws / "f").read_bytes() == DATA
    assert os.listdir(ws) == ["f"]
    linker.place(oid.digest, dfd, "g", executable=False)
    assert (ws / "g").read_bytes() == DATA


def test_hardlink_falls_back_to_copy_across_devices(store, oid, ws, dfd, monkeypatch):
    def link(*args, **kwargs):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", link)
    linker, st = place(store, oid, dfd, "hardlink", "copy")
    assert linker.current == "copy" and st.st_nlink == 1


def test_other_errors_do_not_fall_back(store, oid, dfd, monkeypatch):
    def ioctl(*args):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    with pytest.raises(OSError):
        place(store, oid, dfd, "reflink", "copy")


def test_last_strategy_failure_is_raised(store, oid, dfd, monkeypatch):
    def ioctl(*args):
        raise OSError(errno.EOPNOTSUPP, "no")

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    with pytest.raises(OSError):
        place(store, oid, dfd, "reflink")


@pytest.mark.parametrize("kind", ["copy", "reflink", "hardlink", "symlink"])
def test_vanished_object_is_a_datavc_error(store, dfd, ws, kind):
    from datavc.hashing import hash_bytes

    with pytest.raises(DatavcError):
        place(store, hash_bytes(b"not stored"), dfd, kind)
    assert os.listdir(ws) == []


def test_failed_copy_removes_its_temp_file(store, oid, ws, dfd, monkeypatch):
    def write_all(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil, "write_all", write_all)
    with pytest.raises(OSError):
        place(store, oid, dfd, "copy")
    assert os.listdir(ws) == []


def test_place_does_not_follow_a_symlink_at_the_target(store, oid, ws, dfd, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (ws / "f").symlink_to(victim)
    place(store, oid, dfd, "copy")
    assert victim.read_bytes() == b"keep me" and (ws / "f").read_bytes() == DATA
    assert not (ws / "f").is_symlink()


def test_reflink_probe_leaves_nothing(store, ws):
    before = (sorted(os.listdir(store.root)), sorted(os.listdir(ws)))
    assert links.reflink_probe(store.root, str(ws)) in (True, False)
    assert (sorted(os.listdir(store.root)), sorted(os.listdir(ws))) == before
    assert os.listdir(ws) == []
