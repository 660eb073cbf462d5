"""The stat cache: ``.datavc/state/stat`` maps a work-tree path to the stat it had when it
was hashed and the id it hashed to, so unchanged files are never hashed again.

An entry is used only while (dev, inode, size, mtime_ns, ctime_ns) all match. Git's racy-clean
rule: a file whose mtime is not safely older than the moment hashing began is not recorded,
because a later write in the same timestamp tick would leave its stat unchanged. The file is
only a cache: when it is unreadable or of an unknown version it is discarded, never trusted.
"""

from __future__ import annotations

import os
import sys
import time

import msgpack
import xxhash

from . import fsutil
from .objects import StatKey

VERSION = 1
TREES_VERSION = 1
MAX_TREES = 4096  # remembered trees; the oldest are forgotten first
FINE_WINDOW_NS = 100_000_000  # > one kernel timestamp tick on nanosecond file systems
COARSE_WINDOW_NS = 2_000_000_000  # FAT-style 2 s timestamps


def racy_window(mtime_ns: int) -> int:
    """How old an mtime must be to be trusted; whole-millisecond stamps suggest a coarse fs."""
    return COARSE_WINDOW_NS if mtime_ns % 1_000_000 == 0 else FINE_WINDOW_NS


class StatCache:
    """The stat cache, and its tree memo.

    The per-file entries are read from disk only when first needed: a command whose every
    target the tree memo knows never reads them.

    The tree memo (``.datavc/state/trees``) maps a target's path to the fingerprint of a
    walk of it (:meth:`datavc.walk.Walk.fingerprint`: every name and stat) and the kind,
    id, size and file count its tree had then. It is written only for a tree whose every
    file was known or hashed at the stat the walk saw and is not racily new, so a walk
    with the same fingerprint names the same bytes, by the same rule as a per-file entry.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.trees_path = os.path.join(os.path.dirname(path), "trees")
        self._loaded: dict[str, tuple[int, int, int, int, int, bytes]] | None = {}
        self._trees: dict[str, tuple[bytes, str, bytes, int, int]] = {}
        self._dirty = self._trees_dirty = False

    @classmethod
    def load(cls, path: str) -> StatCache:
        cache = cls(path)
        cache._loaded = None  # read on first use
        cache._trees = _load_trees(cache.trees_path, path)
        return cache

    @property
    def _entries(self) -> dict[str, tuple[int, int, int, int, int, bytes]]:
        if self._loaded is None:
            self._loaded = self._read()
        return self._loaded

    def _read(self) -> dict[str, tuple[int, int, int, int, int, bytes]]:
        try:
            with open(self.path, "rb") as f:
                doc = msgpack.unpackb(f.read(), raw=False, strict_map_key=False,
                                      use_list=False)
            if doc.get("v") != VERSION:
                raise ValueError("unknown version")
            entries = doc["entries"]
            if not isinstance(entries, dict):
                raise ValueError("no entries")
            if not all(type(k) is str for k in entries):
                entries = {os.fsdecode(k): r for k, r in entries.items()
                           if type(k) in (str, bytes)}
            return entries  # rows are checked when read (get): one pass less
        except FileNotFoundError:
            return {}
        except Exception:  # a cache may be dropped, never trusted: start afresh
            _warn(f"ignoring unreadable stat cache {self.path}")
            self._dirty = True
            return {}

    def get(self, rel: str, key: StatKey) -> bytes | None:
        hit = self._entries.get(rel)
        if type(hit) is tuple and len(hit) == 6 and hit[:5] == key:
            digest = hit[5]
            if type(digest) is bytes and len(digest) == 16:
                return digest
        return None  # absent, stale, or malformed (a cache is dropped, never trusted)

    def put(self, rel: str, key: StatKey, digest: bytes, started_ns: int) -> None:
        """Remember ``digest`` for ``rel`` unless the file is racily new."""
        if key[3] >= started_ns - racy_window(key[3]):  # key[3] is mtime_ns
            if self._entries.pop(rel, None) is not None:
                self._dirty = True
            return
        row = (*key, digest)
        if self._entries.get(rel) != row:
            self._entries[rel] = row
            self._dirty = True

    def put_written(self, rel: str, key: StatKey, digest: bytes) -> None:
        """Remember a file datavc itself just wrote with known content.

        As in git, a write by another process in the same timestamp tick right after
        datavc's own write cannot be told apart; any later write changes the stat.
        """
        self._entries[rel] = (*key, digest)
        self._dirty = True

    def forget(self, rel: str) -> None:
        if self._entries.pop(rel, None) is not None:
            self._dirty = True

    def retain_under(self, prefix: str, keep: set[str]) -> None:
        """Drop entries below ``prefix`` (a path or directory) that are not in ``keep``."""
        pre = prefix + "/"
        stale = [p for p in self._entries if (p == prefix or p.startswith(pre)) and p not in keep]
        for p in stale:
            del self._entries[p]
        self._dirty = self._dirty or bool(stale)

    def known_tree(self, rel: str, fingerprint: bytes) -> tuple[str, bytes, int, int] | None:
        """(kind, id, size, file count) of the tree at ``rel`` if a walk with this
        fingerprint was remembered, else None."""
        hit = self._trees.get(rel)
        if hit is None or hit[0] != fingerprint:
            return None
        return hit[1], hit[2], hit[3], hit[4]

    def last_files(self, rel: str) -> int | None:
        """How many files the tree at ``rel`` held when last remembered (None: unknown)."""
        hit = self._trees.get(rel)
        return hit[4] if hit is not None else None

    def remember_tree(self, rel: str, fingerprint: bytes, kind: str, digest: bytes,
                      size: int, nfiles: int) -> None:
        row = (fingerprint, kind, digest, size, nfiles)
        if self._trees.get(rel) != row:
            self._trees.pop(rel, None)  # the newest last: the oldest go first
            self._trees[rel] = row
            while len(self._trees) > MAX_TREES:
                del self._trees[next(iter(self._trees))]
            self._trees_dirty = True

    @property
    def dirty(self) -> bool:
        return self._dirty or self._trees_dirty

    def save(self) -> None:
        if not self.dirty:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if self._dirty:
            doc = {"v": VERSION, "entries": {_key(p): row for p, row in self._entries.items()}}
            fsutil.atomic_write(self.path, msgpack.packb(doc, use_bin_type=True), hook="state")
            self._dirty = False
            if self._trees:  # the memo names the stat file it goes with
                self._trees_dirty = True
        if self._trees_dirty:
            trees = {_key(p): list(row) for p, row in self._trees.items()}
            doc = {"v": TREES_VERSION, "stat": _identity(self.path), "trees": trees}
            fsutil.atomic_write(self.trees_path, msgpack.packb(doc, use_bin_type=True),
                                hook="state")
            self._trees_dirty = False


def _identity(path: str) -> list[int] | None:
    """(inode, size, mtime_ns) of a file, None when it is absent or unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _load_trees(path: str, stat_path: str) -> dict[str, tuple[bytes, str, bytes, int, int]]:
    """The tree memo's rows, if it was saved with the stat file as it is now (deleting,
    replacing or damaging the stat cache makes everything be looked at again); a row of
    the wrong shape is dropped, never trusted."""
    try:
        with open(path, "rb") as f:
            doc = msgpack.unpackb(fsutil.read_limited(f, 64 << 20), raw=False,
                                  strict_map_key=False)
        if doc.get("v") != TREES_VERSION or not isinstance(doc.get("trees"), dict):
            return {}
        if doc.get("stat") != _identity(stat_path):
            return {}
        out = {}
        for rel, row in doc["trees"].items():
            if type(rel) is bytes:
                rel = os.fsdecode(rel)
            if (type(rel) is str and type(row) is list and len(row) == 5
                    and type(row[0]) is bytes and len(row[0]) == 16 and row[1] in ("dir", "file")
                    and type(row[2]) is bytes and len(row[2]) == 16
                    and type(row[3]) is int and type(row[4]) is int
                    and row[3] >= 0 and row[4] >= 0):
                out[rel] = (row[0], row[1], row[2], row[3], row[4])
        return out
    except Exception:  # absent, unreadable or foreign: start afresh
        return {}


def _warn(message: str) -> None:
    print(f"datavc: warning: {message}", file=sys.stderr)


def _key(path: str) -> str | bytes:
    """Paths are stored as msgpack str when they are UTF-8, as raw bytes otherwise."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def now_ns() -> int:
    return time.time_ns()


PRESENCE_VERSION = 1
_MEMO_ROOTS = 64


LOCAL_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs",
                                "zfs", "bcachefs", "overlay", "jfs", "reiserfs"})


def fanout_stamp(objects_dir: str, started_ns: int) -> bytes | None:
    """A digest of the (inode, mtime) of every fan-out directory of a store and of its
    ``packs/``: putting an object or a pack in or taking one out changes it. None when one
    of them changed too recently to be trusted (a later change in the same timestamp tick
    could leave it unchanged; the same rule as the stat cache's), cannot be read, or the
    store is not on a local file system of a known kind (NFS may show another host's
    deletion late, FUSE stores may not update directory mtimes at all: no stamp, no
    memo)."""
    rows = _fanout_rows(objects_dir)
    if rows is None or _racy_until(rows) >= started_ns:
        return None
    return _stamp_of(rows)


def settled_fanout_stamp(objects_dir: str, max_wait_ns: int = FINE_WINDOW_NS) -> bytes | None:
    """:func:`fanout_stamp` for a writer that has just changed the store and still holds
    the repository lock: when the newest change is too recent to be trusted, wait until it
    is not (at most ``max_wait_ns``; None if it would take longer). No other datavc writer
    can change the store meanwhile, and any change after the lock is released comes in a
    later timestamp tick, so the stamp taken then is as sound as one taken before."""
    rows = _fanout_rows(objects_dir)
    if rows is None:
        return None
    wait = _racy_until(rows) + 1 - now_ns()
    if wait <= 0:  # trusted already: what fanout_stamp would read again now
        return _stamp_of(rows)
    if wait > max_wait_ns:
        return None
    time.sleep(wait / 1e9)
    return fanout_stamp(objects_dir, now_ns())


def _fanout_rows(objects_dir: str) -> list[tuple[int, int]] | None:
    if file_system_type(objects_dir) not in LOCAL_FILE_SYSTEMS:
        return None
    rows = []
    dirs = [os.path.join(objects_dir, f"{i:02x}") for i in range(256)]
    dirs.append(os.path.join(os.path.dirname(objects_dir), "packs"))  # packs come and go too
    for path in dirs:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            rows.append((0, 0))
            continue
        except OSError:
            return None
        rows.append((st.st_ino, st.st_mtime_ns))
    return rows


def _stamp_of(rows: list[tuple[int, int]]) -> bytes:
    return xxhash.xxh3_128_digest(repr(rows).encode())


def _racy_until(rows: list[tuple[int, int]]) -> int:
    """The moment from which every mtime in ``rows`` can be trusted."""
    return max((m + racy_window(m) for _, m in rows if m), default=0)


class PresenceMemo:
    """``.datavc/state/present``: how many objects of a tree (by root id) the cache lacked,
    as long as no object has come or gone since (the store's :func:`fanout_stamp` is the
    same). It spares a no-op ``status`` the listing of the whole cache. Only a cache: an
    unreadable or outdated file is ignored."""

    def __init__(self, path: str, stamp: bytes | None) -> None:
        self.path, self.stamp = path, stamp
        self._roots: dict[bytes, int] = {}
        self._dirty = False

    @classmethod
    def load(cls, path: str, stamp: bytes | None) -> PresenceMemo:
        memo = cls(path, stamp)
        if stamp is None:
            return memo
        try:
            with open(path, "rb") as f:
                doc = msgpack.unpackb(fsutil.read_limited(f, 1 << 20), raw=False,
                                      strict_map_key=False)
            if doc.get("v") == PRESENCE_VERSION and doc.get("stamp") == stamp:
                roots = doc.get("roots")
                if isinstance(roots, dict):
                    memo._roots = {k: v for k, v in roots.items()
                                   if type(k) is bytes and type(v) is int and v >= 0}
        except Exception:  # absent, unreadable or foreign: start afresh
            pass
        return memo

    def get(self, root: bytes) -> int | None:
        return self._roots.get(root) if self.stamp is not None else None

    def renew(self, stamp: bytes | None) -> None:
        """Objects came into the store under this operation: forget every entry, which
        counted the store as it was, and go on under ``stamp``, taken since (None: keep
        nothing)."""
        self.stamp, self._roots = stamp, {}
        self._dirty = stamp is not None

    def put(self, root: bytes, missing: int) -> None:
        if self.stamp is not None and self._roots.get(root) != missing:
            self._roots[root] = missing
            while len(self._roots) > _MEMO_ROOTS:
                del self._roots[next(iter(self._roots))]
            self._dirty = True

    @property
    def dirty(self) -> bool:
        return self._dirty

    def save(self) -> None:
        if not self._dirty:
            return
        doc = {"v": PRESENCE_VERSION, "stamp": self.stamp, "roots": self._roots}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fsutil.atomic_write(self.path, msgpack.packb(doc, use_bin_type=True))
        self._dirty = False


def file_system_type(path: str) -> str | None:
    """The type of the file system holding ``path`` (Linux: from /proc/self/mountinfo, the
    longest mount point above it), None where it cannot be told."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best, kind = -1, None
    for line in lines:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        mount = parts[4].replace("\\040", " ")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best:
            best, kind = len(mount), rest.split()[0]
    return kind


GIT_INDEX_VERSION = 1
_GIT_INDEX_PATHS = 256


class GitIndexMemo:
    """``.datavc/state/gitindex``: paths at or below which git tracked nothing, as of a
    git index file with a given stat (inode, size, mtime, ctime). It spares an ``add`` of
    an already added path loading git (pygit2, 0.07 s cold) to ask whether git tracks
    anything there. Only a cache: git rewrites its index by renaming a new file over it,
    so any change to the index changes its stat, and a stat too new to be trusted (the
    racy-clean rule) or an index on a file system that is not local is never recorded."""

    def __init__(self, path: str, key: tuple[int, int, int, int] | None) -> None:
        self.path, self.key = path, key
        self._clear: set[str] = set()
        self._dirty = False

    @classmethod
    def load(cls, path: str, index_file: str | None) -> GitIndexMemo:
        """The memo for the git index at ``index_file`` as it is now (None: where git keeps
        it cannot be told; nothing is then remembered)."""
        memo = cls(path, _index_key(index_file) if index_file else None)
        if memo.key is None:
            return memo
        try:
            with open(path, "rb") as f:
                doc = msgpack.unpackb(fsutil.read_limited(f, 1 << 20), raw=False)
            if doc.get("v") == GIT_INDEX_VERSION and doc.get("index") == list(memo.key):
                paths = doc.get("clear")
                if isinstance(paths, list):
                    memo._clear = {os.fsdecode(p) if type(p) is bytes else p for p in paths
                                   if type(p) in (str, bytes)}
        except Exception:  # absent, unreadable or foreign: start afresh
            pass
        return memo

    def untracked(self, rel: str) -> bool:
        """Whether git tracked nothing at or below ``rel`` when the index was as it is."""
        return self.key is not None and rel in self._clear

    def put(self, rel: str) -> None:
        if self.key is not None and rel not in self._clear:
            if len(self._clear) >= _GIT_INDEX_PATHS:
                self._clear.clear()
            self._clear.add(rel)
            self._dirty = True

    def save(self) -> None:
        if not self._dirty or self.key is None:
            return
        doc = {"v": GIT_INDEX_VERSION, "index": list(self.key),
               "clear": [_key(p) for p in sorted(self._clear)]}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fsutil.atomic_write(self.path, msgpack.packb(doc, use_bin_type=True))
        self._dirty = False


def _index_key(index_file: str) -> tuple[int, int, int, int] | None:
    """The stat key of a git index that can be trusted now: None when it is absent, too
    new (git could write it again within the same timestamp tick), or not on a local file
    system."""
    try:
        st = os.stat(index_file)
    except OSError:
        return None
    if st.st_mtime_ns >= now_ns() - racy_window(st.st_mtime_ns):
        return None
    if file_system_type(index_file) not in LOCAL_FILE_SYSTEMS:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
