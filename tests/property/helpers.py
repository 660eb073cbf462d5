"""Shared helpers of the property tests: throw-away git repositories (one per Hypothesis
example, made with tempfile rather than pytest fixtures) and independent oracles."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import xxhash

import datavc


def git(cwd: str | Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def fast_tmp() -> str | None:
    """A memory file system for throw-away repositories when there is one: these tests are
    about content, not durability, and each ``add`` ends with a file-system sync."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


class Sandbox:
    """A fresh git work tree that is a datavc repository, removed by :meth:`close`."""

    def __init__(self, prefix: str = "datavc-prop-") -> None:
        self.tmp = tempfile.mkdtemp(prefix=prefix, dir=fast_tmp())
        self.root = Path(self.tmp) / "repo"
        self.root.mkdir()
        git(self.root, "init", "-q", "-b", "main")
        git(self.root, "config", "user.name", "Test")
        git(self.root, "config", "user.email", "test@example.com")
        self.repo = datavc.Repo.init(self.root)
        self.data = self.root / "data"

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def bad_objects(root: str | Path) -> list[str]:
    """Objects under ``.datavc/cache/objects`` whose bytes do not hash to their name."""
    objects = Path(root) / ".datavc" / "cache" / "objects"
    bad = []
    for dirpath, _, names in os.walk(objects):
        for name in names:
            path = Path(dirpath) / name
            rel = path.relative_to(objects).as_posix()
            if len(rel) != 33 or rel[2] != "/":
                bad.append(f"{rel} (misplaced)")
                continue
            if xxhash.xxh3_128_hexdigest(path.read_bytes()) != rel.replace("/", ""):
                bad.append(rel)
    return bad + bad_packs(root)


def bad_packs(root: str | Path) -> list[str]:
    """Complete packs of the cache (both files there) whose index is damaged or whose
    objects do not hash to their ids. Half a pack (after a kill between its two renames)
    is invisible to readers and is no fault."""
    from datavc import pack

    packs = Path(root) / ".datavc" / "cache" / "packs"
    bad = []
    for idx in sorted(packs.glob("*.idx")) if packs.exists() else []:
        body = idx.with_suffix(".pack")
        if not body.exists():
            continue
        try:
            digest, entries = pack.decode_index(idx.read_bytes(), idx.stem)
        except pack.PackError as exc:
            bad.append(f"packs/{idx.name} ({exc})")
            continue
        data, offset = body.read_bytes(), 0
        if xxhash.xxh3_128_digest(data) != digest:
            bad.append(f"packs/{body.name} (not the bytes its index says)")
        for d, size in pack.iter_entries(entries):
            if xxhash.xxh3_128_digest(data[offset:offset + size]) != d:
                bad.append(f"packs/{body.name}@{offset}")
            offset += size
    return bad


def cache_tmp_files(root: str | Path) -> list[str]:
    """The files in the cache's staging area, its fan-out directories included (those
    stay), as paths relative to it."""
    tmp = Path(root) / ".datavc" / "cache" / "tmp"
    return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if not p.is_dir())


def read_modes(root: Path) -> dict:
    """Like conftest.read_tree, but a file is (bytes, executable)."""
    out: dict = {}
    for entry in sorted(root.iterdir()):
        st = entry.lstat()
        if stat.S_ISDIR(st.st_mode):
            out[entry.name] = read_modes(entry)
        else:
            out[entry.name] = (entry.read_bytes(), bool(st.st_mode & 0o100))
    return out
