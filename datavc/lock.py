"""The repository lock: one writer at a time (exit 4 when busy).

``flock`` on ``.datavc/tmp/lock``, released by the kernel when the holder dies, with the
holder's pid written inside. A pid left in the file by a process that died without
releasing is reported as a broken stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator

from .errors import LockedError, from_oserror

HELD: set[int] = set()  # lock fds this process holds; forked workers close them


def close_inherited() -> None:
    """In a forked child: drop the inherited lock fds, so the lock lives and dies with the
    process that took it (flock belongs to the open file, which children share)."""
    for fd in list(HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    HELD.clear()


@contextlib.contextmanager
def repo_lock(path: str, *, what: str = "") -> Iterator[None]:
    """Hold the exclusive repository lock for the body, or raise LockedError at once."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise from_oserror(exc, path, "open the lock") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            raise LockedError(
                f"another datavc process{f' (pid {holder})' if holder else ''} holds the "
                f"repository lock {path}",
                hint="wait for it to finish, then run the command again") from None
        HELD.add(fd)
        _note_stale(fd, path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        HELD.discard(fd)
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 64, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _note_stale(fd: int, path: str) -> None:
    pid = _read_pid(fd)
    if pid and pid != os.getpid():
        print(f"datavc: warning: took over the stale lock {path} of pid {pid}, which did not "
              f"finish cleanly (killed or crashed)", file=sys.stderr)
