#!/usr/bin/env python3
"""Seeded, deterministic benchmark data for datavc.

Datasets (written under --out):

* ``small``: ``data/dNNN/fNNNNN.bin`` -- many files of random bytes, sizes uniform in
  [--min-size, --max-size], spread evenly over --dirs directories.
* ``big``: ``big.bin`` -- one large file of seeded random bytes, streamed in 64 MiB
  chunks (constant memory). Chunk k is ``Random(f"{seed}:big:{k}").randbytes(...)``.
* ``mixed``: ``mixed/dNN/fNNNNN.bin`` -- --mixed-files files of mixed sizes, 1 KiB to 64 MiB
  (about 1 GiB for 5,000 files): fixed shares of the files per size tier (see MIXED_TIERS),
  sizes log-uniform within a tier, the smallest tier's first file exactly 1 KiB and the
  largest tier's first exactly 64 MiB; files shuffled over --mixed-dirs directories.

The same --seed and parameters always produce byte-identical output.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from pathlib import Path

DEFAULT_SEED = 20240601
DEFAULT_FILES = 100_000
DEFAULT_DIRS = 100
DEFAULT_MIN = 1024
DEFAULT_MAX = 8192
DEFAULT_BIG = 2 << 30
CHUNK = 64 << 20
MIXED_FILES = 5_000
MIXED_DIRS = 50
MIXED_TIERS = (  # (share of the files, smallest size, largest size)
    (0.80, 1 << 10, 64 << 10),
    (0.1825, 64 << 10, 1 << 20),
    (0.016, 1 << 20, 16 << 20),
    (0.0015, 16 << 20, 64 << 20),
)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Parse '2G', '64MiB', '1024' (binary units) into bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size: {text!r} (use e.g. 64M, 2G, 1024)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def small_layout(files: int, dirs: int) -> list[str]:
    """Relative paths of the small-file dataset, in generation order."""
    per_dir = max(1, -(-files // dirs))
    name_width = max(5, len(str(files - 1)))
    dir_width = max(3, len(str(dirs - 1)))
    return [
        f"d{i // per_dir:0{dir_width}d}/f{i:0{name_width}d}.bin" for i in range(files)
    ]


def write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def gen_small(out: Path, seed: int, files: int, dirs: int, lo: int, hi: int) -> int:
    """Write the small-file tree under out/data; return the total number of bytes."""
    rng = random.Random(f"{seed}:small")
    root = out / "data"
    total = 0
    made: set[str] = set()
    for rel in small_layout(files, dirs):
        parent = rel.split("/", 1)[0]
        if parent not in made:
            (root / parent).mkdir(parents=True, exist_ok=True)
            made.add(parent)
        data = rng.randbytes(rng.randint(lo, hi))
        write_file(root / rel, data)
        total += len(data)
    return total


def gen_big(out: Path, seed: int, size: int) -> int:
    """Stream one file of `size` seeded random bytes to out/big.bin."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "big.bin", "wb") as fh:
        for k, offset in enumerate(range(0, size, CHUNK)):
            n = min(CHUNK, size - offset)
            fh.write(random.Random(f"{seed}:big:{k}").randbytes(n))
    return size


def mixed_sizes(seed: int, files: int) -> list[int]:
    """File sizes of the mixed dataset, in generation order (every tier gets at least one
    file while there are files left, the largest tier first)."""
    rng = random.Random(f"{seed}:mixed")
    counts = [max(1, round(files * share)) for share, _, _ in MIXED_TIERS]
    while sum(counts) > files:  # tiny --mixed-files: trim the smallest sizes first
        i = next(i for i, c in enumerate(counts) if c > 0)
        counts[i] -= 1
    counts[0] += files - sum(counts)
    sizes: list[int] = []
    for k, ((_, lo, hi), count) in enumerate(zip(MIXED_TIERS, counts, strict=True)):
        tier = [round(lo * (hi / lo) ** rng.random()) for _ in range(count)]
        if tier and k in (0, len(MIXED_TIERS) - 1):  # cover both ends of the range
            tier[0] = lo if k == 0 else hi
        sizes += tier
    rng.shuffle(sizes)
    return sizes


def gen_mixed(out: Path, seed: int, files: int, dirs: int) -> int:
    """Write the mixed-size tree under out/mixed; return the total number of bytes. File i
    holds ``Random(f"{seed}:mixed:{i}").randbytes(size)``, so nothing deduplicates."""
    root = out / "mixed"
    per_dir = max(1, -(-files // dirs))
    dir_width, name_width = max(2, len(str(dirs - 1))), max(5, len(str(files - 1)))
    total = 0
    for i, size in enumerate(mixed_sizes(seed, files)):
        sub = root / f"d{i // per_dir:0{dir_width}d}"
        sub.mkdir(parents=True, exist_ok=True)
        data = random.Random(f"{seed}:mixed:{i}").randbytes(size)
        write_file(sub / f"f{i:0{name_width}d}.bin", data)
        total += size
    return total


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--dataset", choices=("small", "big", "mixed", "all"), default="all",
                   help="all = small and big")
    p.add_argument("--files", type=int, default=DEFAULT_FILES, help="number of small files")
    p.add_argument("--dirs", type=int, default=DEFAULT_DIRS, help="directories for small files")
    p.add_argument("--min-size", type=parse_size, default=DEFAULT_MIN, help="small file min")
    p.add_argument("--max-size", type=parse_size, default=DEFAULT_MAX, help="small file max")
    p.add_argument("--size", type=parse_size, default=DEFAULT_BIG, help="big file size (2G)")
    p.add_argument("--mixed-files", type=int, default=MIXED_FILES, help="files in mixed/")
    p.add_argument("--mixed-dirs", type=int, default=MIXED_DIRS, help="directories in mixed/")
    args = p.parse_args(argv)
    if args.files < 1 or args.dirs < 1 or not 0 < args.min_size <= args.max_size:
        p.error("need --files >= 1, --dirs >= 1 and 0 < --min-size <= --max-size")
    if args.mixed_files < 1 or args.mixed_dirs < 1:
        p.error("need --mixed-files >= 1 and --mixed-dirs >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.dataset in ("small", "all"):
        t0 = time.perf_counter()
        total = gen_small(args.out, args.seed, args.files, args.dirs, args.min_size, args.max_size)
        took = time.perf_counter() - t0
        print(f"small: {args.files} files, {total} bytes in {took:.1f} s")
    if args.dataset in ("big", "all"):
        t0 = time.perf_counter()
        gen_big(args.out, args.seed, args.size)
        print(f"big: {args.size} bytes in {time.perf_counter() - t0:.1f} s")
    if args.dataset == "mixed":
        t0 = time.perf_counter()
        total = gen_mixed(args.out, args.seed, args.mixed_files, args.mixed_dirs)
        print(f"mixed: {args.mixed_files} files, {total} bytes in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
