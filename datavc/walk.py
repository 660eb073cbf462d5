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

import os
import pickle
import stat
import sys
import threading
from dataclasses import dataclass, field

import msgpack
import xxhash

from .errors import from_oserror
from .fsutil import O_DIR, TMP_MARK
from .paths import check_name_problem

Row = tuple[str, int, int, int, int, int]  # name, mode, inode, size, mtime_ns, ctime_ns


@dataclass(slots=True)
class WalkDir:
    """One directory: the rows of its non-directory entries and its subdirectories."""

    name: str
    path: str  # absolute
    rel: str  # work-tree relative
    dev: int
    rows: list[Row] = field(default_factory=list)
    dirs: list[WalkDir] = field(default_factory=list)


@dataclass(slots=True)
class Walk:
    """What one walk of a work-tree path saw: a directory (``top``), a single non-directory
    (``file``: its device and row), or nothing (``top`` and ``file`` both None)."""

    rel: str
    path: str  # absolute
    top: WalkDir | None = None
    file: tuple[int, Row] | None = None
    litter: list[str] = field(default_factory=list)  # temp files of interrupted writers
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    _fingerprints: dict[bytes, bytes] = field(default_factory=dict)  # salt -> fingerprint

    @property
    def plain(self) -> bool:
        """Nothing set aside: no temp files to clear, no names to warn about."""
        return not self.litter and not self.skipped

    def fingerprint(self, salt: bytes) -> bytes:
        """A digest of every row, directory by directory, and of ``salt`` (whatever else
        the tree's id depends on). Computed once per salt."""
        known = self._fingerprints.get(salt)
        if known is not None:
            return known
        h = xxhash.xxh3_128(salt)
        pack = msgpack.Packer(unicode_errors="surrogateescape").pack
        h.update(pack((self.rel, self.file, self.litter, self.skipped)))
        stack = [self.top] if self.top is not None else []
        while stack:
            d = stack.pop()
            h.update(pack((d.rel, d.dev, d.rows, [s.name for s in d.dirs])))
            stack.extend(d.dirs)
        self._fingerprints[salt] = digest = h.digest()
        return digest


PARALLEL_MIN_FILES = 20_000  # below this, a second process costs more than it saves
PARALLEL_MIN_DIRS = 16  # for a tree of unknown size: enough directories to share


def walk(root: str, rel: str, *, jobs: int = 1, expect_files: int | None = None) -> Walk:
    """Walk work-tree path ``rel`` below ``root``: one ``lstat`` per entry.

    With ``jobs`` > 1, a forked process walks half of the subdirectories (on a warm cache
    the ``lstat`` calls are most of the time, and two processes halve it; threads do not,
    as the per-entry Python work holds the GIL; cold, the two overlap their reads) when
    ``expect_files`` (how many files the tree held last time) is at least
    PARALLEL_MIN_FILES or, unknown (None), when the first level with several
    subdirectories has PARALLEL_MIN_DIRS of them."""
    path = os.path.join(root, rel)
    out = Walk(rel, path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise from_oserror(exc, rel, "read") from exc
    if stat.S_ISDIR(st.st_mode):
        out.top = WalkDir(os.path.basename(rel), path, rel, st.st_dev)
        if jobs < 2 or not _can_fork() or (expect_files is not None
                                            and expect_files < PARALLEL_MIN_FILES):
            _walk_dir(out.top, out)
        else:
            _walk_split(out.top, out, 2 if expect_files is not None else PARALLEL_MIN_DIRS)
    else:
        out.file = (st.st_dev, (os.path.basename(rel), st.st_mode, st.st_ino, st.st_size,
                                st.st_mtime_ns, st.st_ctime_ns))
    return out


def _walk_dir(node: WalkDir, out: Walk) -> WalkDir:
    for child in _list_dir(node, out):  # one descriptor open at a time, however deep
        _walk_dir(child, out)
    return node


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
                            rows.append((name, st.st_mode, st.st_ino, st.st_size,
                                         st.st_mtime_ns, st.st_ctime_ns))
        finally:
            os.close(fd)
    except OSError as exc:
        raise from_oserror(exc, node.rel, "list directory") from exc
    node.dirs = [WalkDir(name, f"{node.path}/{name}", f"{node.rel}/{name}", dev)
                 for name, dev in subdirs]
    return node.dirs


def _can_fork() -> bool:
    """Forking is safe here: Linux, and no other thread that could hold a lock the child
    would need."""
    return sys.platform == "linux" and threading.active_count() == 1


def _walk_split(top: WalkDir, out: Walk, min_dirs: int) -> None:
    """Walk ``top`` in two processes: down to the first level with two or more
    subdirectories and, if it has ``min_dirs`` or more, every other one of those in a
    forked child, which sends back its rows. Should the child fail, the parent walks its
    share itself (and meets the same error, if any)."""
    level = _list_dir(top, out)
    while len(level) == 1:
        level = _list_dir(level[0], out)
    if len(level) < min_dirs:
        for node in level:
            _walk_dir(node, out)
        return
    mine, theirs = level[0::2], level[1::2]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: walk, send, and leave without running any parent cleanup
        code = 1
        try:
            os.close(read_end)
            part = Walk(out.rel, out.path)
            for node in theirs:
                _walk_dir(node, part)
            data = pickle.dumps(([(n.rows, n.dirs) for n in theirs], part.litter,
                                 part.skipped), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as f:
                f.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        for node in mine:
            _walk_dir(node, out)
        with os.fdopen(read_end, "rb") as f:
            read_end = -1
            data = f.read()
    finally:
        if read_end >= 0:
            os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if status == 0 and data:
        done, litter, skipped = pickle.loads(data)
        for node, (rows, dirs) in zip(theirs, done, strict=True):
            node.rows, node.dirs = rows, dirs
        out.litter += litter
        out.skipped += skipped
    else:
        for node in theirs:
            _walk_dir(node, out)
