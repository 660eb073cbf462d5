"""File-system primitives shared by every writer: atomic small-file writes, sync barriers,
symlink-proof directory walking with dir fds, and read-only marking.

The rule for durability (RELIABILITY.md §1): temp file in the same directory, write, fsync,
rename, fsync the directory. Bulk writers (the object store) skip the per-file fsync and call
:func:`sync_barrier` once before anything that names their files is written.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import signal
import stat
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from . import crash
from .errors import UnsafePathError, from_oserror

_counter = itertools.count()
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TMP_MARK = ".datavc-tmp-"


def tmp_name(base: str = "") -> str:
    """A name for a temp file unique to this process."""
    return f"{TMP_MARK}{os.getpid()}-{next(_counter)}{base}"


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, *, mode: int = 0o644, hook: str | None = None,
                 tmp_dir: str | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    With ``tmp_dir`` (on the same file system) the temp file lives there, so a crash leaves
    nothing beside ``path``; where that would cross file systems it is written beside.
    """
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(tmp_dir or directory, tmp_name())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if hook:
            crash.point(hook + "-tmp-written")
        try:
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno != errno.EXDEV or tmp_dir is None:
                raise
            os.unlink(tmp)  # tmp_dir is on another file system: write beside instead
            atomic_write(path, data, mode=mode, hook=hook)
            return
        fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise from_oserror(exc, path, "write") from exc
    if hook:
        crash.point(hook + "-written")


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


write_all = _write_all


def read_limited(f: BinaryIO, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of ``f`` (more than ``limit`` tells the caller the input
    is too long), without a ``limit``-sized buffer for a small file: ``f.read(limit + 1)``
    allocates all of it up front, 64 MiB for a 2 KiB listing. A regular file is read in one
    call of its size (plus one byte); one that grew meanwhile, or is not regular, is read
    on in pieces up to the limit."""
    size = limit
    with contextlib.suppress(OSError, ValueError, AttributeError):
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode):
            size = min(st.st_size, limit)
    data = f.read(size + 1)
    if len(data) <= size:
        return data
    parts, total = [data], len(data)
    while total <= limit and (more := f.read(min(_PIECE, limit + 1 - total))):
        parts.append(more)
        total += len(more)
    return b"".join(parts)


_PIECE = 1 << 20


def die_with_parent() -> None:
    """In a child process: be killed when the parent dies (Linux ``PR_SET_PDEATHSIG``; a
    no-op elsewhere). The caller checks ``os.getppid()`` afterwards: the parent may have
    died before this took effect."""
    with contextlib.suppress(Exception):
        libc().prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@functools.cache
def libc() -> Any:
    """The C library the interpreter runs on, through ctypes; None where it cannot be
    loaded. Loaded on first use (a command that needs none of it never imports ctypes), and
    not found with ``ctypes.util.find_library``, which runs ``ldconfig``."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def start_writeback(fd: int) -> bool:
    """Have the kernel start writing ``fd``'s dirty pages to disk, without waiting for it
    (Linux ``sync_file_range`` with ``SYNC_FILE_RANGE_WRITE``): the sync barrier that
    follows then waits for less (git's ``core.fsyncMethod=batch`` does the same). Whether
    the kernel took it; False, and nothing done, where there is no such call."""
    import ctypes

    call = getattr(libc(), "sync_file_range", None)
    if not callable(call):
        return False
    zero = ctypes.c_int64(0)  # from offset 0 to the end of the file
    return bool(call(fd, zero, zero, 2) == 0)  # SYNC_FILE_RANGE_WRITE


def sync_barrier(path: str) -> None:
    """Flush everything written to the file system holding ``path`` (one syncfs)."""
    syncfs = getattr(libc(), "syncfs", None)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if callable(syncfs) and syncfs(fd) == 0:
            return
        os.sync()
    finally:
        os.close(fd)


def make_readonly(path: str) -> None:
    mode = os.lstat(path).st_mode
    os.chmod(path, stat.S_IMODE(mode) & ~0o222)


@contextlib.contextmanager
def open_dir(root_fd: int, parts: Sequence[str], *, create: bool) -> Iterator[int]:
    """Open the directory ``parts`` below ``root_fd`` without following any symlink.

    With ``create``, missing directories are made. A symlink (or a file) where a directory
    is expected raises UnsafePathError: nothing is written through it.
    """
    fd = os.dup(root_fd)
    try:
        for part in parts:
            child = _step(fd, part, create=create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _step(parent: int, name: str, *, create: bool) -> int:
    """Open directory ``name`` below ``parent`` (the caller keeps owning ``parent``)."""
    try:
        try:
            return os.open(name, O_DIR, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=parent)
            return os.open(name, O_DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink or a file in the way
            raise UnsafePathError(
                f"refusing to write through '{name}': it is a symlink or not a directory",
                hint="move it away, then run the command again",
            ) from exc
        raise
