"""Finding unversioned data for ``datavc level``: large files and data-looking directories
that neither datavc nor git-lfs tracks.

The walk is bounded (MAX_ENTRIES) and skips what is never data: ``.git``, ``.datavc``, the
targets datavc tracks, virtualenvs and caches of tools. It never follows symlinks.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass

LARGE = 10 << 20  # a file this big is data, whatever its name
DATA_DIR_FILES = 100  # a directory with this many data-looking files is a dataset
MAX_ENTRIES = 500_000
DATA_EXTS = frozenset({".csv", ".tsv", ".json", ".jsonl", ".parquet", ".arrow", ".feather",
    ".avro", ".orc", ".h5", ".hdf5", ".npy", ".npz", ".pkl", ".pickle", ".pt", ".pth",
    ".ckpt", ".safetensors", ".onnx", ".pb", ".tfrecord", ".bin", ".zip", ".tar", ".gz",
    ".tgz", ".bz2", ".xz", ".zst", ".7z", ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif",
    ".tiff", ".webp", ".wav", ".mp3", ".flac", ".ogg", ".mp4", ".avi", ".mov", ".mkv", ".txt",
    ".xml", ".db", ".sqlite", ".mat", ".nii", ".dcm"})
SKIP_DIRS = frozenset({".git", ".datavc", ".venv", "venv", "env", "node_modules",
                       "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".tox",
                       ".hypothesis", "site-packages", ".idea", ".vscode"})


@dataclass(frozen=True)
class Evidence:
    """One finding: ``kind`` is ``large-file`` or ``data-dir``; ``size`` in bytes and
    ``files`` (for a directory) say how much."""

    kind: str
    path: str
    size: int
    files: int = 1

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "size": self.size, "files": self.files}


def lfs_patterns(root: str) -> list[str]:
    """The patterns the root ``.gitattributes`` hands to git-lfs (``filter=lfs``)."""
    try:
        with open(os.path.join(root, ".gitattributes"), encoding="utf-8",
                  errors="replace") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return []
    return [line.split()[0] for line in lines
            if line.strip() and not line.startswith("#") and "filter=lfs" in line.split()[1:]]


def _lfs(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p.lstrip("/")) or fnmatch.fnmatch(name, p)
               for p in patterns)


def unversioned(root: str, tracked: Iterable[str]) -> tuple[list[Evidence], bool]:
    """Large files and data directories below ``root`` outside the ``tracked`` targets and
    git-lfs; and whether the walk stopped at MAX_ENTRIES before the end."""
    skip = set(tracked)
    patterns = lfs_patterns(root)
    found: list[Evidence] = []
    seen = 0
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel) if rel else root))
        except OSError:
            continue
        data_files = data_bytes = 0
        for e in entries:
            seen += 1
            if seen > MAX_ENTRIES:
                return sorted(found, key=lambda x: x.path), True
            path = f"{rel}/{e.name}" if rel else e.name
            if path in skip or e.name.endswith(".datavc"):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    if e.name not in SKIP_DIRS:
                        stack.append(path)
                    continue
                if not e.is_file(follow_symlinks=False):
                    continue
                size = e.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            if _lfs(path, patterns):
                continue
            if size >= LARGE:
                found.append(Evidence("large-file", path, size))
            elif os.path.splitext(e.name)[1].lower() in DATA_EXTS:
                data_files += 1
                data_bytes += size
        if rel and data_files >= DATA_DIR_FILES:
            found.append(Evidence("data-dir", rel, data_bytes, data_files))
    return sorted(found, key=lambda x: x.path), False
