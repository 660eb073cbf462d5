"""Putting one cache object at one workspace path, by the configured link strategies.

Every strategy writes a temp name in the destination directory (opened without following
symlinks) and renames it over the target, so a reader sees the old or the new file and a
crash leaves at most a ``.datavc-tmp-*`` file, never a torn one. ``copy`` hashes the bytes as
it copies them and refuses a mismatch, so a corrupt cache object is never checked out.
Hardlinked and symlinked files are read-only, so an in-place edit cannot corrupt the cache.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

import xxhash

from . import crash, fsutil
from .errors import DatavcError, IntegrityError
from .hashing import CHUNK, Oid
from .objects import object_path

FICLONE = 0x40049409
_FALLBACK_ERRNOS = {errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EPERM,
                    errno.EMLINK, errno.ENOSYS, errno.EBADF}


class Linker:
    """Materialises objects with the first strategy of ``types`` that works here."""

    def __init__(self, objects_dir: str, types: tuple[str, ...]) -> None:
        self.objects_dir = objects_dir
        self.types = list(types)

    def place(self, digest: bytes, dir_fd: int, name: str, *, executable: bool) -> os.stat_result:
        """Put object ``digest`` at ``name`` in ``dir_fd``; return the new file's lstat."""
        src = object_path(self.objects_dir, digest)
        while True:
            kind = self.types[0]
            tmp = fsutil.tmp_name()
            try:
                _MAKERS[kind](src, digest, dir_fd, tmp, executable)
            except OSError as exc:
                if exc.errno in _FALLBACK_ERRNOS and len(self.types) > 1:
                    self.types.pop(0)
                    continue
                raise
            crash.point("workspace-tmp-written")
            try:
                os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
            crash.point("workspace-replaced")
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)

    @property
    def current(self) -> str:
        return self.types[0]


def _copy(src: str, digest: bytes, dir_fd: int, tmp: str, executable: bool) -> None:
    sfd = _open_object(src)
    try:
        dfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o777 if executable else 0o666, dir_fd=dir_fd)
        try:
            got = _copy_hashing(sfd, dfd)
        except BaseException:
            os.close(dfd)
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.close(dfd)
    finally:
        os.close(sfd)
    if got != digest:
        os.unlink(tmp, dir_fd=dir_fd)
        oid = Oid(digest)
        raise IntegrityError(
            f"cache object {oid} is corrupt: its content does not match its id ({src})",
            hint="run `datavc fsck`, then re-fetch or re-add the data")


def _copy_hashing(sfd: int, dfd: int) -> bytes:
    hasher = xxhash.xxh3_128()
    size = os.fstat(sfd).st_size
    if size <= CHUNK:
        data = os.read(sfd, size + 1)  # a longer object fails the hash check below
        hasher.update(data)
        fsutil.write_all(dfd, data)
        return hasher.digest()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := os.readv(sfd, [buf]):
        hasher.update(view[:n])
        fsutil.write_all(dfd, view[:n])
    return hasher.digest()


def reflink_works(src: str, dst_dir: str) -> bool:
    """Whether ``src`` can be reflinked into ``dst_dir`` (one probe clone, then removed)."""
    root_fd = os.open(dst_dir, fsutil.O_DIR)
    tmp = fsutil.tmp_name()
    try:
        _reflink(src, b"", root_fd, tmp, False)
    except OSError:
        return False
    else:
        os.unlink(tmp, dir_fd=root_fd)
        return True
    finally:
        os.close(root_fd)


def _reflink(src: str, digest: bytes, dir_fd: int, tmp: str, executable: bool) -> None:
    sfd = _open_object(src)
    try:
        dfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o777 if executable else 0o666, dir_fd=dir_fd)
        try:
            fcntl.ioctl(dfd, FICLONE, sfd)
        except OSError:
            os.close(dfd)
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.close(dfd)
    finally:
        os.close(sfd)


def _hardlink(src: str, digest: bytes, dir_fd: int, tmp: str, executable: bool) -> None:
    _require(src)
    os.link(src, tmp, dst_dir_fd=dir_fd, follow_symlinks=False)


def _symlink(src: str, digest: bytes, dir_fd: int, tmp: str, executable: bool) -> None:
    _require(src)
    os.symlink(os.path.abspath(src), tmp, dir_fd=dir_fd)


def _open_object(src: str) -> int:
    try:
        return os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DatavcError(f"object {src} vanished from the cache during checkout") from None


def _require(src: str) -> None:
    if not os.path.isfile(src):
        raise DatavcError(f"object {src} vanished from the cache during checkout")


_MAKERS = {"copy": _copy, "reflink": _reflink, "hardlink": _hardlink, "symlink": _symlink}
