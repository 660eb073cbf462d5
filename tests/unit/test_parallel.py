"""parallel: per-file work in a fork pool, results in input order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datavc import parallel
from datavc.errors import DatavcError
from datavc.hashing import Oid, hash_bytes
from datavc.objects import stat_key
from datavc.parallel import hash_files, publish
from tests.unit.stores import staged


def _write_files(where: Path, count: int, name: str, body) -> list[str]:
    """``count`` files ``where/<name><i>``, file i holding ``body(i)``; their paths."""
    where.mkdir()
    paths = []
    for i in range(count):
        p = where / f"{name}{i:03}"
        p.write_bytes(body(i))
        paths.append(str(p))
    return paths


@pytest.fixture
def files(tmp_path):
    return _write_files(tmp_path / "in", 60, "f", lambda i: f"content {i}".encode() * (i + 1))


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
    assert staged(store.tmp_dir) == []


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


# ----------------------------------------------------------- processes or threads


@pytest.mark.parametrize(("count", "total", "expected"), [
    (1, 10 << 30, (False, False)),  # one file: nothing to share
    (10, 1 << 20, (False, False)),  # few small files: here, no pool, no threads
    (10, 1 << 30, (False, True)),  # few big ones: threads overlap the copies
    (100_000, 460 << 20, (True, False)),  # many small files: processes
    (5_000, 1200 << 20, (False, True)),  # many, big on average: threads
])
def test_processes_or_threads(count, total, expected):
    assert parallel.processes_or_threads(count, total) == expected


def test_threads_give_results_in_order_with_progress():
    import threading

    where = set()

    def work(items):
        where.add(threading.get_ident())
        return [i * 2 for i in items]

    seen = []
    chunks = [([i, i + 1],) for i in range(0, 40, 2)]
    out = parallel.run_chunks(work, chunks, jobs=4, pool=False, threads=True,
                              measure=lambda part: (len(part), 0),
                              progress=lambda n, b: seen.append(n))
    assert out == [i * 2 for i in range(40)]
    assert sum(seen) == 40
    assert threading.get_ident() not in where  # the chunks ran on the pool's threads


def test_threads_pass_errors_through():
    def work(x):
        raise DatavcError(f"bad {x}")

    with pytest.raises(DatavcError, match="bad"):
        parallel.run_chunks(work, [(1,), (2,)], jobs=2, pool=False, threads=True,
                            measure=lambda part: (0, 0))


@pytest.mark.parametrize("total_bytes", [0, 1 << 40], ids=["processes", "threads"])
def test_copy_objects_either_way_verifies_every_copy(files, store, monkeypatch, tmp_path,
                                                     total_bytes):
    """Processes (small objects on average) or threads (big ones): the same verified
    copies, corrupt and missing sources reported the same."""
    monkeypatch.setattr(parallel, "MIN_FILES_FOR_POOL", 2)
    items = [(p, hash_bytes(Path(p).read_bytes()).digest) for p in files]
    items[3] = (items[3][0], hash_bytes(b"something else").digest)  # corrupt
    items[5] = (str(tmp_path / "absent"), items[5][1])  # missing
    got = parallel.copy_objects(items, store.objects_dir, store.tmp_dir, total_bytes, jobs=2)
    assert [c.error for c in got] == [None] * 3 + ["corrupt", None, "missing"] + [None] * 54
    for (path, digest), c in zip(items, got, strict=True):
        if c.error is None:
            assert c.tmp and Path(c.tmp).read_bytes() == Path(path).read_bytes()
            assert hash_bytes(Path(c.tmp).read_bytes()).digest == digest
    store.pending = [c.tmp for c in got if c.tmp]
    publish(store, jobs=2)  # renames on threads
    assert len(list(store.iter_oids())) == 58
    assert staged(store.tmp_dir) == []


_HEAP_SCRIPT = """
import sys, threading
from datavc import parallel
if sys.argv[1] == "fixed":
    parallel.return_big_buffers()
def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) // 1024
base = rss_mb()
def work():
    for _ in range(20):
        pieces = [b"x" * (2 << 20) for _ in range(8)]
        del pieces
threads = [threading.Thread(target=work) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(rss_mb() - base)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status")
                    or __import__("platform").libc_ver()[0] != "glibc",
                    reason="glibc's heaps on Linux")
def test_return_big_buffers_keeps_threads_from_holding_freed_pieces():
    import subprocess
    import sys

    def held(mode):
        res = subprocess.run([sys.executable, "-c", _HEAP_SCRIPT, mode], capture_output=True,
                             text=True, check=True)
        return int(res.stdout)

    assert held("fixed") < 8  # MB still held once every piece is freed
    assert held("default") > held("fixed")  # what glibc's own threshold keeps


def test_threads_start_no_chunk_after_an_error():
    import time

    started = []

    def work(i):
        started.append(i)
        if i == 0:
            raise DatavcError("first chunk fails")
        time.sleep(0.05)
        return [i]

    with pytest.raises(DatavcError):
        parallel.run_chunks(work, [(i,) for i in range(50)], jobs=2, pool=False,
                            threads=True, measure=lambda part: (0, 0))
    assert len(started) <= 4  # the failing chunk and the few already running beside it


def test_threads_run_at_most_max_threads_chunks_at_once():
    """Each chunk of a copy holds up to 64 descriptors: many CPUs must not mean many
    chunks at once in one process (the descriptor limit is often 1024)."""
    import threading
    import time

    lock, running, peak = threading.Lock(), [0], [0]

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return [i]

    out = parallel.run_chunks(work, [(i,) for i in range(40)], jobs=64, pool=False,
                              threads=True, measure=lambda part: (0, 0))
    assert out == list(range(40))
    assert 1 < peak[0] <= parallel.MAX_THREADS


@pytest.fixture
def plain_store(tmp_path):
    from datavc.objects import ObjectStore

    s = ObjectStore(str(tmp_path / "plain-cache"))
    s.ensure_layout()
    s.pack_small = True
    return s


def sized(paths):
    return [(p, os.path.getsize(p)) for p in paths]


def test_prehash_hashes_what_it_is_fed_in_workers_and_stages_it(files, plain_store, pool,
                                                                 monkeypatch):
    monkeypatch.setattr(parallel, "PREHASH_CHUNK", 7)  # several chunks, the rest at finish
    early = parallel.Prehash(plain_store, jobs=2)
    for i in range(0, len(files), 5):  # as a walk hands over directory after directory
        early.feed(sized(files[i:i + 5]))
    assert early.pool is not None and len(early.sent) == len(files) // 7  # under way
    seen = []
    got = early.finish(lambda n, b: seen.append((n, b)))
    assert set(got) == set(files)
    assert [got[p].digest for p in files] == _expected(files)
    assert [got[p].stat for p in files] == [stat_key(os.stat(p)) for p in files]
    assert sum(n for n, _ in seen) == len(files)
    assert sum(b for _, b in seen) == sum(os.path.getsize(p) for p in files)
    assert len(plain_store.pending) == len(set(_expected(files)))  # recorded, to publish
    publish(plain_store, jobs=2)
    assert all(plain_store.has(Oid(d)) for d in _expected(files))
    assert staged(plain_store.tmp_dir) == []


def test_prehash_closes_a_chunk_of_big_files_sooner(files, plain_store, pool, monkeypatch):
    monkeypatch.setattr(parallel, "PREHASH_BYTES", 1000)
    early = parallel.Prehash(plain_store, jobs=2)
    early.feed(sized(files[-10:]))  # 690 bytes and more each: a chunk every two files
    assert [len(paths) for paths, _ in early.sent] == [2] * 5
    assert set(early.finish()) == set(files[-10:])


def test_prehash_of_too_few_files_starts_no_pool_and_stages_nothing(files, plain_store):
    early = parallel.Prehash(plain_store, jobs=2)
    early.feed(sized(files))  # 60 files, fewer than MIN_FILES_FOR_POOL: the caller hashes them
    assert early.finish() == {} and early.pool is None
    assert staged(plain_store.tmp_dir) == [] and not plain_store.pending


@pytest.fixture
def many(tmp_path):
    return _write_files(tmp_path / "many", 200, "m", lambda i: f"object {i}".encode() * 3)


def test_prehash_packs_chunks_and_finish_records_them(many, plain_store, pool, monkeypatch):
    monkeypatch.setattr(parallel, "PREHASH_CHUNK", 100)  # 64 or more objects: a pack each
    early = parallel.Prehash(plain_store, jobs=2)
    early.feed(sized(many))
    got = early.finish()
    assert len(plain_store.pending_packs) == 2 and not plain_store.pending
    assert sorted(d for ds in plain_store.pending_packs.values() for d in ds) == sorted(
        r.digest for r in got.values())
    publish(plain_store, jobs=2)
    assert all(plain_store.has(Oid(d)) for d in _expected(many))


def test_prehash_abandoned_leaves_nothing_staged(many, plain_store, pool, monkeypatch):
    monkeypatch.setattr(parallel, "PREHASH_CHUNK", 100)
    early = parallel.Prehash(plain_store, jobs=2)
    early.feed(sized(many))
    for _, fut in early.sent:  # both chunks done: their packs are on disk
        fut.result()
    assert staged(plain_store.tmp_dir) != []
    early.abandon()  # e.g. the walk met a nested pointer
    assert staged(plain_store.tmp_dir) == []
    assert not plain_store.pending and not plain_store.pending_packs
    early.abandon()  # twice is harmless


def test_prehash_error_in_a_worker_is_raised_by_finish_and_cleans_up(files, plain_store,
                                                                     pool, monkeypatch):
    monkeypatch.setattr(parallel, "PREHASH_CHUNK", 7)
    early = parallel.Prehash(plain_store, jobs=2)
    early.feed(sized(files))
    os.unlink(files[-1])  # in the chunk sent at finish(): gone before it is read
    with pytest.raises(DatavcError, match="f059"):
        early.finish()
    assert staged(plain_store.tmp_dir) == [] and not plain_store.pending


def test_a_failing_chunk_removes_the_loose_temps_it_wrote(files, plain_store):
    os.unlink(files[-1])
    with pytest.raises(DatavcError):
        parallel._hash_chunk(files, plain_store.objects_dir, plain_store.tmp_dir, False)
    assert staged(plain_store.tmp_dir) == []


def test_a_worker_dead_during_the_walk_is_a_datavc_error(files, plain_store, pool,
                                                         monkeypatch):
    import signal

    monkeypatch.setattr(parallel, "PREHASH_CHUNK", 7)
    early = parallel.Prehash(plain_store, jobs=2)
    early.feed(sized(files[:7]))
    early.sent[0][1].result()
    for proc in early.pool._processes.values():
        os.kill(proc.pid, signal.SIGKILL)  # out of memory, say
    with pytest.raises(DatavcError, match="worker process died"):
        for i in range(7, len(files), 7):  # the walk goes on, then it is over
            early.feed(sized(files[i:i + 7]))
        early.finish()
    assert staged(plain_store.tmp_dir) == [] and early.pool is None


def test_a_file_hashed_again_is_not_stored_loose_beside_its_packed_object(many, plain_store,
                                                                          tmp_path):
    got = parallel._hash_chunk(many[:100], plain_store.objects_dir, plain_store.tmp_dir,
                               packing=True)  # one chunk of 100 new objects: one pack
    parallel._keep_staged(plain_store, got)
    publish(plain_store, jobs=1)
    assert len(plain_store.packed().where) == 100
    again = tmp_path / "again"
    again.write_bytes(Path(many[0]).read_bytes())  # the same bytes, hashed afresh
    plain_store.pack_small = False  # one file: stored loose by the worker, as for a re-add
    [res] = hash_files([str(again)], store=plain_store, jobs=1)
    assert res.digest == got[0].digest and res.tmp is None
    assert not plain_store.pending and staged(plain_store.tmp_dir) == []
    [new] = hash_files([many[150]], store=plain_store, jobs=1)  # not packed: staged as ever
    assert new.tmp and plain_store.pending == [new.tmp]
    publish(plain_store, jobs=1)
    assert not os.path.exists(plain_store.path(Oid(got[0].digest)))  # only in its pack
    assert plain_store.has(Oid(got[0].digest)) and plain_store.has(Oid(new.digest))
