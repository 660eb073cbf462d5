"""Run inside ``unshare -rm`` by test_disk_full.py: mount a small tmpfs, make a whole
repository in it and run out of space in it. Prints one JSON document of what it saw; the
test asserts on it (every check happens while the tmpfs is still mounted).

``add``: a dataset bigger than the space left for the cache; ``datavc add``; free space by
deleting NDELETE files; ``datavc add`` again.
``checkout``: the dataset added; the workspace deleted and the space refilled but for
about two files; ``datavc checkout``; free the space; ``datavc checkout`` again.

Usage: python _tmpfs_fill.py add|checkout MOUNTPOINT SIZE_KIB NFILES FILE_KIB NDELETE
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.faults.oracle import bad_objects, cache_tmp_files, files, litter


def run(cwd: Path, *args: str) -> dict[str, object]:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    return {"code": proc.returncode, "out": proc.stdout, "err": proc.stderr}


def snapshot(root: Path) -> dict[str, object]:
    return {"bad_objects": bad_objects(root), "cache_tmp": cache_tmp_files(root),
            "litter": litter(root), "pointer": (root / "data.datavc").exists(),
            "df": os.statvfs(root).f_bavail * os.statvfs(root).f_frsize}


def main() -> None:
    mode, mnt = sys.argv[1:3]
    size_kib, nfiles, file_kib, ndelete = map(int, sys.argv[3:])
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", mnt],
                   check=True)
    root = Path(mnt) / "repo"
    root.mkdir()
    datavc = [sys.executable, "-m", "datavc"]
    report: dict[str, object] = {}
    report["git"] = run(root, "git", "init", "-q", "--template=", "-b", "main")
    report["init"] = run(root, *datavc, "init")
    data = root / "data"
    data.mkdir()
    for i in range(nfiles):
        (data / f"f{i:02d}.bin").write_bytes(os.urandom(file_kib << 10))
    dataset = files(data)
    if mode == "checkout":
        report["setup"] = run(root, *datavc, "add", "data")
        shutil.rmtree(data)
        free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
        (Path(mnt) / "filler").write_bytes(b"\0" * max(0, free - (2 * file_kib << 10)))
    report["before"] = snapshot(root)
    report["first"] = run(root, *datavc, mode, "data")
    report["after_first"] = snapshot(root)
    if mode == "checkout":
        report["old_or_new"] = all(dataset.get(p) == b for p, b in files(data).items()
                                   if not p.rsplit("/", 1)[-1].startswith(".datavc-tmp-"))
        (Path(mnt) / "filler").unlink()
    else:
        for i in range(ndelete):
            (data / f"f{i:02d}.bin").unlink()
            del dataset[f"f{i:02d}.bin"]
    report["rerun"] = run(root, *datavc, mode, "data")
    report["after_rerun"] = snapshot(root)
    report["status"] = run(root, *datavc, "status")
    report["data_ok"] = files(data) == dataset
    print(json.dumps(report))


if __name__ == "__main__":
    main()
