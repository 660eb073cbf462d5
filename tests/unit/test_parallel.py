"""parallel: per-file work in a fork pool, results in input order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datavc import parallel
from datavc.errors import DatavcError
from datavc.hashing import Oid, hash_bytes
from datavc.parallel import hash_files, publish


@pytest.fixture
def files(tmp_path):
    (tmp_path / "in").mkdir()
    paths = []
    for i in range(60):
        p = tmp_path / "in" / f"f{i:03}"
        p.write_bytes(f"content {i}".encode() * (i + 1))
        paths.append(str(p))
    return paths


@pytest.fixture
def pool(monkeypatch):
    """Make even a few small files worth a pool."""
    monkeypatch.setattr(parallel, "MIN_FILES_FOR_POOL", 2)


def _expected(paths):
    return [hash_bytes(Path(p).read_bytes()).digest for p in paths]


def test_serial_results_in_order_and_stored(files, store):
    res = hash_files(files, store=store, jobs=1)
    assert [r.digest for r in res] == _expected(files)
    assert [r.size for r in res] == [os.path.getsize(p) for p in files]
    assert not any(store.has(Oid(r.digest)) for r in res)  # staged, not yet named
    publish(store, jobs=1)
    assert all(store.has(Oid(r.digest)) for r in res)


def test_pool_gives_the_same_results_in_order(files, store, pool):
    seen = []
    res = hash_files(files, store=store, jobs=2, progress=lambda n, b: seen.append((n, b)))
    assert [r.digest for r in res] == _expected(files)
    assert sum(n for n, _ in seen) == len(files)
    assert sum(b for _, b in seen) == sum(os.path.getsize(p) for p in files)
    assert list(store.iter_oids()) == []
    publish(store, jobs=2)
    assert {o.digest for o in store.iter_oids()} == set(_expected(files))
    assert os.listdir(store.tmp_dir) == []


def test_pool_really_uses_other_processes(pool, monkeypatch):
    monkeypatch.setattr(parallel, "START_METHOD", "fork")  # forked workers see the patches
    monkeypatch.setattr(parallel, "open_for_read", lambda p: os.open(os.devnull, os.O_RDONLY))
    monkeypatch.setattr(parallel, "store_fd", lambda fd, p, *a: (os.close(fd), _pid_result(p))[1])
    res = hash_files([str(i) for i in range(64)], store=None, jobs=2)
    assert [r[0] for r in res] == [str(i) for i in range(64)]
    assert os.getpid() not in {r[1] for r in res}


def _pid_result(path):
    return (path, os.getpid())


def test_pool_without_store_only_hashes(files, store, pool):
    res = hash_files(files, store=None, jobs=2)
    assert [r.digest for r in res] == _expected(files)
    assert list(store.iter_oids()) == []


def test_pool_error_crosses_the_process_boundary(files, pool):
    missing = files[:40] + [files[0] + ".missing"] + files[40:]
    with pytest.raises(DatavcError) as info:
        hash_files(missing, store=None, jobs=2)
    assert ".missing" in info.value.message


def test_serial_error_is_a_datavc_error(files):
    with pytest.raises(DatavcError):
        hash_files([files[0] + ".missing"], store=None, jobs=1)


def test_serial_progress_counts_every_file(files):
    seen = []
    hash_files(files[:3], store=None, jobs=1, progress=lambda n, b: seen.append(n))
    assert sum(seen) == 3


def test_default_jobs_is_positive():
    assert parallel.default_jobs() >= 1


def test_empty_input():
    assert hash_files([], store=None, jobs=4) == []


def test_forkserver_pool_hashes_in_other_processes(files, pool):
    """The default start method: workers start from a clean server, not from this heap."""
    assert parallel.START_METHOD == "forkserver"
    res = hash_files(files, store=None, jobs=2)
    assert [r.digest for r in res] == _expected(files)
