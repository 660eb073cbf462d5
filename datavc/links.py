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
from .objects import copy_and_hash, object_path
from .pack import PACK_SUFFIX, Packed

Span = tuple[int, int, int]
"""Where a packed object is: an open descriptor of its pack, the offset, the size."""

FICLONE = 0x40049409
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV,
               errno.EPERM, errno.ENOSYS}
_FALLBACK_ERRNOS = {errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EPERM,
                    errno.EMLINK, errno.ENOSYS, errno.EBADF}


class Linker:
    """Materialises objects with the first strategy of ``types`` that works here."""

    def __init__(self, objects_dir: str, types: tuple[str, ...], packs_dir: str = "") -> None:
        self.objects_dir = objects_dir
        self.packs_dir = packs_dir
        self.types = list(types)
        self.unnamed = hasattr(os, "O_TMPFILE")  # until the file system says otherwise
        self._packs: dict[str, int] = {}  # open pack files, by name

    def pack_fd(self, name: str) -> int:
        """A descriptor of pack ``name``, opened once per Linker (:meth:`close`)."""
        fd = self._packs.get(name)
        if fd is None:
            path = os.path.join(self.packs_dir, name + PACK_SUFFIX)
            fd = self._packs[name] = _open_object(path)
        return fd

    def close(self) -> None:
        for fd in self._packs.values():
            os.close(fd)
        self._packs.clear()

    def place(self, digest: bytes, dir_fd: int, name: str, *, executable: bool,
              at: Packed | None = None) -> os.stat_result:
        """Put object ``digest`` at ``name`` in ``dir_fd``; return the new file's lstat.
        ``at``: the object is in a pack, and is copied from there."""
        if at is None:
            src, span = object_path(self.objects_dir, digest), None
        else:
            src = os.path.join(self.packs_dir, at.pack + PACK_SUFFIX)
            span = (self.pack_fd(at.pack), at.offset, at.size)
        if (self.types[0] == "copy" or at is not None) and self.unnamed:
            st = self._copy_unnamed(src, digest, dir_fd, name, executable, span)
            if st is not None:
                return st
        while True:
            kind = "copy" if at is not None else self.types[0]
            tmp = fsutil.tmp_name()
            try:
                if span is not None:
                    _copy(src, digest, dir_fd, tmp, executable, span)
                else:
                    _MAKERS[kind](src, digest, dir_fd, tmp, executable)
            except OSError as exc:
                if exc.errno in _FALLBACK_ERRNOS and len(self.types) > 1:
                    self.types.pop(0)
                    continue
                raise
            crash.point("workspace-tmp-written")
            _rename_in(dir_fd, tmp, name)
            if kind == "hardlink":  # rename(2) between two links to one inode does nothing
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dir_fd)
            crash.point("workspace-replaced")
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)

    @property
    def current(self) -> str:
        return self.types[0]

    def _copy_unnamed(self, src: str, digest: bytes, dir_fd: int, name: str,
                      executable: bool, span: Span | None = None
                      ) -> os.stat_result | None:
        """Copy into an unnamed O_TMPFILE and link it in once verified: as atomic as
        temp+rename, one directory operation cheaper. None where unsupported."""
        flags = os.O_RDWR | getattr(os, "O_TMPFILE", 0) | os.O_CLOEXEC
        try:
            dfd = os.open(".", flags, 0o777 if executable else 0o666, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in _NO_TMPFILE:
                self.unnamed = False
                return None
            raise
        try:
            _copy_verified(src, digest, dfd, span)
            crash.point("workspace-tmp-written")
            if not self._link_in(dfd, dir_fd, name):
                return None
            st = os.fstat(dfd)  # the inode now at ``name``, its ctime past the link/rename
        finally:
            os.close(dfd)
        crash.point("workspace-replaced")
        return st

    def _link_in(self, fd: int, dir_fd: int, name: str) -> bool:
        proc = f"/proc/self/fd/{fd}"
        try:
            os.link(proc, name, dst_dir_fd=dir_fd, follow_symlinks=True)
            return True
        except FileExistsError:
            tmp = fsutil.tmp_name()
            os.link(proc, tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
            _rename_in(dir_fd, tmp, name)
            return True
        except OSError as exc:
            if exc.errno in _NO_TMPFILE:  # no /proc, or linking unnamed files refused
                self.unnamed = False
                return False
            raise


def _copy(src: str, digest: bytes, dir_fd: int, tmp: str, executable: bool,
          span: Span | None = None) -> None:
    dfd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o777 if executable else 0o666, dir_fd=dir_fd)
    try:
        _copy_verified(src, digest, dfd, span)
    except BaseException:
        os.close(dfd)
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(dfd)


def _copy_verified(src: str, digest: bytes, dfd: int, span: Span | None = None) -> None:
    """Copy object ``src`` (or the ``span`` of pack ``src``: its open descriptor, the
    offset and the size) into ``dfd``, hashing as it goes; IntegrityError on a mismatch
    (the caller discards what was written)."""
    if span is None:
        sfd = _open_object(src)
        try:
            got = _copy_hashing(sfd, dfd)
        finally:
            os.close(sfd)
    else:
        data = os.pread(span[0], span[2], span[1])
        fsutil.write_all(dfd, data)
        got = xxhash.xxh3_128_digest(data) if len(data) == span[2] else b""
    if got != digest:
        raise IntegrityError(
            f"cache object {Oid(digest)} is corrupt: its content does not match its id ({src})",
            hint="delete it and re-add or re-fetch the data that produced it" if span is None
            else "`datavc fsck --repair --remote NAME` fetches a good copy; or, with a good "
                 "copy of the file, `datavc hash-object -w FILE` stores it loose (read first)")


def _copy_hashing(sfd: int, dfd: int) -> bytes:
    """Copy and return the digest of what was written: small objects in one read, big ones
    by the kernel, hashed as read back from the destination."""
    size = os.fstat(sfd).st_size
    if size > CHUNK:
        return copy_and_hash(sfd, dfd)
    data = os.read(sfd, size + 1)  # a longer object fails the hash check
    fsutil.write_all(dfd, data)
    return xxhash.xxh3_128_digest(data)


def _rename_in(dir_fd: int, tmp: str, name: str) -> None:
    """Rename ``tmp`` over ``name`` in one directory; on failure remove ``tmp``."""
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def reflink_probe(src_dir: str, dst_dir: str) -> bool:
    """Whether files in ``src_dir`` can be reflinked into ``dst_dir``: one clone between two
    unnamed O_TMPFILEs, so the probe leaves nothing behind, even if killed."""
    flags = os.O_RDWR | getattr(os, "O_TMPFILE", 0) | os.O_CLOEXEC
    try:
        src = os.open(src_dir, flags, 0o600)
    except OSError:
        return False
    try:
        os.write(src, b"reflink probe")
        dst = os.open(dst_dir, flags, 0o600)
        try:
            fcntl.ioctl(dst, FICLONE, src)
            return True
        finally:
            os.close(dst)
    except OSError:
        return False
    finally:
        os.close(src)


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
