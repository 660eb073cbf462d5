"""Hashing many files in worker processes.

Per-file Python work holds the GIL, so small-file hashing scales with processes, not
threads. Work is sent in chunks of paths to a fork-started pool; results come back in
order. Few or small inputs are hashed in this process: a pool costs more than it saves.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from .objects import ObjectStore, Stored, store_file

MIN_FILES_FOR_POOL = 512
MIN_BYTES_FOR_POOL = 256 << 20


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def hash_files(paths: list[str], *, store: ObjectStore | None, jobs: int,
               progress: Callable[[int, int], None] | None = None) -> list[Stored]:
    """Hash (and with ``store``, store) each path; results in the order of ``paths``."""
    objects_dir = store.objects_dir if store else ""
    tmp_dir = store.tmp_dir if store else None
    if jobs <= 1 or not _worth_a_pool(paths):
        return _serial(paths, objects_dir, tmp_dir, progress)
    chunk = max(16, min(1024, len(paths) // (jobs * 8) or 1))
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    ctx = multiprocessing.get_context("fork")
    results: list[Stored] = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = [pool.submit(_hash_chunk, c, objects_dir, tmp_dir) for c in chunks]
        try:
            for fut in futures:
                part = fut.result()
                results.extend(part)
                if progress:
                    progress(len(part), sum(r.size for r in part))
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return results


def _worth_a_pool(paths: list[str]) -> bool:
    if len(paths) >= MIN_FILES_FOR_POOL:
        return True
    if len(paths) < 2:
        return False
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            return False
    return total >= MIN_BYTES_FOR_POOL


def _serial(paths: list[str], objects_dir: str, tmp_dir: str | None,
            progress: Callable[[int, int], None] | None) -> list[Stored]:
    out = []
    for p in paths:
        res = store_file(p, objects_dir, tmp_dir)
        out.append(res)
        if progress:
            progress(1, res.size)
    return out


def _hash_chunk(paths: list[str], objects_dir: str, tmp_dir: str | None) -> list[Stored]:
    return [store_file(p, objects_dir, tmp_dir) for p in paths]
