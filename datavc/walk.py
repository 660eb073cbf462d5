"""One pass of ``lstat`` over a work-tree path: the raw stat rows that the stat cache and the
tree memo are matched against, before any per-file Python work.

A walk lists each directory once through an open descriptor (``fstatat`` per entry rather
than a lookup of the full path), sets aside the temp files of interrupted writers and the
names datavc never tracks, and does not go into directories with such names. Its
:meth:`Walk.fingerprint` digests every row, so two walks with the same fingerprint saw the
same names with the same (dev, inode, mode, size, mtime, ctime): what the tree memo of
``datavc.state`` keys on.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgpack
import xxhash

from . import lock
from .errors import from_oserror
from .fsutil import O_DIR, TMP_MARK, die_with_parent
from .paths import check_name_problem

Row = tuple[str, int, int, int, int, int, int]  # name, mode, then the stat key:
# dev, inode, size, mtime_ns, ctime_ns (row[2:], as the stat cache keys files)


@dataclass(slots=True)
class WalkDir:
    """One directory: the rows of its non-directory entries and its subdirectories."""

    name: str
    path: str  # absolute
    rel: str  # work-tree relative
    dev: int
    rows: list[Row] = field(default_factory=list)
    dirs: list[WalkDir] = field(default_factory=list)

    def child(self, name: str, dev: int) -> WalkDir:
        """The subdirectory ``name`` (on device ``dev``), not yet walked."""
        return WalkDir(name, f"{self.path}/{name}", f"{self.rel}/{name}", dev)


@dataclass(slots=True)
class Walk:
    """What one walk of a work-tree path saw: a directory (``top``), a single non-directory
    (``file``: its row), or nothing (``top`` and ``file`` both None)."""

    rel: str
    path: str  # absolute
    top: WalkDir | None = None
    file: Row | None = None
    litter: list[str] = field(default_factory=list)  # temp files of interrupted writers
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    started_ns: int = 0  # the wall clock when the walk began: the racy-clean rule's origin
    _fingerprints: dict[bytes, bytes] = field(default_factory=dict)  # salt -> fingerprint

    @property
    def plain(self) -> bool:
        """Nothing set aside: no temp files to clear, no names to warn about."""
        return not self.litter and not self.skipped

    def directories(self) -> Iterator[WalkDir]:
        """Every directory walked: the top one first, then always the one pushed last
        (the order :meth:`fingerprint` digests them in)."""
        stack = [self.top] if self.top is not None else []
        while stack:
            d = stack.pop()
            yield d
            stack.extend(d.dirs)

    def paths_ending(self, suffix: str) -> list[str]:
        """The work-tree paths of the non-directory entries below the walked directory
        whose names end with ``suffix``."""
        return sorted(f"{d.rel}/{row[0]}" for d in self.directories() for row in d.rows
                      if row[0].endswith(suffix))

    def fingerprint(self, salt: bytes) -> bytes:
        """A digest of every row, directory by directory, of what was set aside (in any
        order: a two-process walk collects it in another), and of ``salt`` (whatever else
        the tree's id depends on). Computed once per salt."""
        known = self._fingerprints.get(salt)
        if known is not None:
            return known
        h = xxhash.xxh3_128(salt)
        pack = msgpack.Packer(unicode_errors="surrogateescape").pack
        h.update(pack((self.rel, self.file, sorted(self.litter), sorted(self.skipped))))
        for d in self.directories():
            h.update(pack((d.rel, d.dev, d.rows, [s.name for s in d.dirs])))
        self._fingerprints[salt] = digest = h.digest()
        return digest


PARALLEL_MIN_FILES = 20_000  # below this, a second process costs more than it saves
PARALLEL_MIN_DIRS = 16  # for a tree of unknown size: enough directories to share


def walk(root: str, rel: str, *, jobs: int = 1, expect_files: int | None = None,
         feed: Callable[[list[tuple[str, int]]], None] | None = None) -> Walk:
    """Walk work-tree path ``rel`` below ``root``: one ``lstat`` per entry.

    With ``feed``, the walk stays in this process and hands ``feed`` the absolute path and
    size of each directory's regular files as soon as it has listed them (so hashing can
    start while the walk goes on).

    With ``jobs`` > 1, a forked process walks half of the subdirectories (on a warm cache
    the ``lstat`` calls are most of the time, and two processes halve it; threads do not,
    as the per-entry Python work holds the GIL; cold, the two overlap their reads) when
    ``expect_files`` (how many files the tree held last time) is at least
    PARALLEL_MIN_FILES or, unknown (None), when the first level with several
    subdirectories has PARALLEL_MIN_DIRS of them."""
    path = os.path.join(root, rel)
    out = Walk(rel, path, started_ns=time.time_ns())
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise from_oserror(exc, rel, "read") from exc
    if stat.S_ISDIR(st.st_mode):
        out.top = WalkDir(os.path.basename(rel), path, rel, st.st_dev)
        if feed is not None or jobs < 2 or not _can_fork() or (
                expect_files is not None and expect_files < PARALLEL_MIN_FILES):
            _walk_dir(out.top, out, feed)
        else:
            _walk_split(out.top, out, 2 if expect_files is not None else PARALLEL_MIN_DIRS)
    else:
        out.file = (os.path.basename(rel), st.st_mode, st.st_dev, st.st_ino, st.st_size,
                    st.st_mtime_ns, st.st_ctime_ns)
    return out


def _walk_dir(node: WalkDir, out: Walk,
              feed: Callable[[list[tuple[str, int]]], None] | None = None) -> None:
    children = _list_dir(node, out)  # one descriptor open at a time, however deep
    if feed is not None:
        files = [(f"{node.path}/{row[0]}", row[4]) for row in node.rows
                 if stat.S_ISREG(row[1])]
        if files:
            feed(files)
    for child in children:
        _walk_dir(child, out, feed)


def _list_dir(node: WalkDir, out: Walk) -> list[WalkDir]:
    """Fill ``node.rows`` and ``node.dirs`` (the subdirectories not yet walked)."""
    rows, subdirs = node.rows, []
    try:
        fd = os.open(node.path, O_DIR)
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(TMP_MARK):
                        out.litter.append(f"{node.path}/{name}")
                    elif (name[0] == "." or "~" in name or "\\" in name or "\n" in name
                          or "\r" in name) and check_name_problem(name):
                        out.skipped.append((f"{node.rel}/{name}", "reserved or unportable name"))
                    else:
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:  # gone since it was listed
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            subdirs.append((name, st.st_dev))
                        else:
                            rows.append((name, st.st_mode, st.st_dev, st.st_ino, st.st_size,
                                         st.st_mtime_ns, st.st_ctime_ns))
        finally:
            os.close(fd)
    except OSError as exc:
        raise from_oserror(exc, node.rel, "list directory") from exc
    node.dirs = [node.child(name, dev) for name, dev in subdirs]
    return node.dirs


def _can_fork() -> bool:
    """Forking is safe here: Linux, and no other thread that could hold a lock the child
    would need."""
    return sys.platform == "linux" and threading.active_count() == 1


def _walk_split(top: WalkDir, out: Walk, min_dirs: int) -> None:
    """Walk ``top`` in two processes: down to the first level with two or more
    subdirectories and, if it has ``min_dirs`` or more, every other one of those in a
    forked child, which sends back its rows. Whatever goes wrong with the child (no fork,
    a crash, a short or garbled answer), the parent walks its share itself and meets the
    same error, if any."""
    level = _list_dir(top, out)
    while len(level) == 1:
        level = _list_dir(level[0], out)
    if len(level) < min_dirs:
        for node in level:
            _walk_dir(node, out)
        return
    mine, theirs = level[0::2], level[1::2]
    got = _walk_forked(mine, theirs, out)
    if got is None:
        for node in theirs:
            _walk_dir(node, out)
        return
    done, litter, skipped = got
    for node, answer in zip(theirs, done, strict=True):
        _unpack(node, answer)
    out.litter += litter
    out.skipped += skipped


_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _walk_forked(mine: list[WalkDir], theirs: list[WalkDir], out: Walk) -> Any:
    """Walk ``mine`` here and ``theirs`` in a forked child; the child's decoded answer, or
    None (``theirs`` is then still to walk). Signals are blocked across the fork, so an
    interrupt cannot reach the child before it has dropped the parent's handlers (the
    parent's cleanup, such as releasing the lock, must never run in the child)."""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        pid = os.fork()
    except OSError:  # no process to spare: this one walks both shares
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(read_end)
        os.close(write_end)
        for node in mine:
            _walk_dir(node, out)
        return None
    if pid == 0:
        _child(read_end, write_end, parent, theirs, out)  # never returns
    data = b""
    finished = False
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(write_end)
        write_end = -1
        for node in mine:
            _walk_dir(node, out)
        data = _read_all(read_end)
        finished = True
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if not finished:  # the caller's error comes first: the child's walk is moot
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # SIGCHLD may be ignored: no status
            os.waitpid(pid, 0)
    return _decode(data, len(theirs))


def _child(read_end: int, write_end: int, parent: int, theirs: list[WalkDir],
           out: Walk) -> NoReturn:
    code = 1
    try:
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        lock.close_inherited()  # the lock lives and dies with the parent alone
        die_with_parent()
        if os.getppid() == parent:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            os.close(read_end)
            part = Walk(out.rel, out.path)
            for node in theirs:
                _walk_dir(node, part)
            data = marshal.dumps(([_pack(n) for n in theirs], part.litter, part.skipped))
            with os.fdopen(write_end, "wb") as f:
                f.write(len(data).to_bytes(8, "big") + data)
            code = 0
    finally:
        os._exit(code)


def _pack(node: WalkDir) -> tuple[Any, ...]:
    """A walked directory as plain lists and tuples, which ``marshal`` writes and reads
    several times faster than ``pickle`` does the dataclasses (the child's rows are half of
    a big tree's walk: 50,000 rows went from 31 ms to 13 ms, both ways together)."""
    return node.rows, [(d.name, d.dev, _pack(d)) for d in node.dirs]


def _unpack(node: WalkDir, answer: Any) -> None:
    """Fill ``node`` from its :func:`_pack`; the rest of a directory's fields follow from
    its parent's."""
    rows, dirs = answer
    node.rows = rows
    node.dirs = []
    for name, dev, sub in dirs:
        child = node.child(name, dev)
        _unpack(child, sub)
        node.dirs.append(child)


def _read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _decode(data: bytes, count: int) -> Any:
    """The child's answer, if complete and of the expected shape; else None."""
    if len(data) < 8 or int.from_bytes(data[:8], "big") != len(data) - 8:
        return None
    try:
        done, litter, skipped = marshal.loads(data[8:])  # from our own child, never a file
    except Exception:
        return None
    if not (isinstance(done, list) and len(done) == count and isinstance(litter, list)
            and isinstance(skipped, list)):
        return None
    return done, litter, skipped
