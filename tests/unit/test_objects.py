"""objects: the content-addressed store (write once, read-only, verified reads)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import xxhash

from datavc import objects
from datavc.errors import DatavcError, IntegrityError, ObjectMissingError
from datavc.hashing import Oid, hash_bytes
from datavc.objects import ObjectStore, read_verified, stat_key, store_file, verify_object
from tests.unit.stores import staged


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_layout_has_256_fanout_dirs_and_tmp(store):
    assert len(os.listdir(store.objects_dir)) == 256
    assert os.path.isdir(store.tmp_dir)


def test_path_fans_out_on_two_hex_chars(store):
    oid = Oid(bytes(range(16)))
    assert store.path(oid) == os.path.join(store.objects_dir, "00",
                                           "0102030405060708090a0b0c0d0e0f")


@pytest.mark.parametrize("size", [0, 1, 4096, (1 << 20) + 1, 5 * 1024 * 1024 + 3])
def test_store_file_stores_exact_bytes_read_only(tmp_path, store, size):
    src = tmp_path / "src"
    data = os.urandom(size)
    src.write_bytes(data)
    res = store.add_file(str(src))
    oid = Oid(res.digest)
    assert oid == hash_bytes(data) and res.size == size and not res.executable
    assert Path(store.path(oid)).read_bytes() == data
    assert _mode(store.path(oid)) == 0o444
    assert res.stat == stat_key(os.stat(src))
    assert staged(store.tmp_dir) == []


def test_store_file_opens_the_source_once(tmp_path, store, monkeypatch):
    src = tmp_path / "src"
    src.write_bytes(b"x" * 3_000_000)
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    store.add_file(str(src))
    assert opened.count(str(src)) == 1


def test_store_file_reports_executable(tmp_path, store):
    src = tmp_path / "run.sh"
    src.write_bytes(b"#!/bin/sh\n")
    os.chmod(src, 0o755)
    assert store.add_file(str(src)).executable


def test_store_file_without_tmp_dir_only_hashes(tmp_path, store):
    src = tmp_path / "src"
    src.write_bytes(b"hash me")
    res = store_file(str(src), store.objects_dir, None)
    assert Oid(res.digest) == hash_bytes(b"hash me") and not store.has(Oid(res.digest))


def test_store_file_skips_existing_objects(tmp_path, store):
    src = tmp_path / "src"
    src.write_bytes(b"same")
    oid = Oid(store.add_file(str(src)).digest)
    before = os.stat(store.path(oid))
    store.add_file(str(src))
    assert os.stat(store.path(oid)).st_ino == before.st_ino
    assert staged(store.tmp_dir) == []


@pytest.mark.parametrize("size", [100, 2 << 20])
def test_store_file_detects_a_file_changing_while_read(tmp_path, store, monkeypatch, size):
    src = tmp_path / "src"
    src.write_bytes(b"a" * size)
    real_fstat, calls = os.fstat, []

    def fstat(fd):
        calls.append(fd)
        if len(calls) == 2:  # after the read: someone appended meanwhile
            with open(src, "ab") as f:
                f.write(b"more")
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", fstat)
    with pytest.raises(DatavcError) as info:
        store.add_file(str(src))
    assert "changed while it was being read" in info.value.message
    assert str(src) in info.value.message


def test_store_file_refuses_a_symlink(tmp_path, store):
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(DatavcError):
        store.add_file(str(tmp_path / "link"))


def test_store_file_missing_source_is_a_datavc_error(tmp_path, store):
    with pytest.raises(DatavcError) as info:
        store.add_file(str(tmp_path / "nope"))
    assert "nope" in info.value.message


def test_add_bytes_and_read_bytes(store):
    oid = store.add_bytes(b"listing bytes")
    assert oid == hash_bytes(b"listing bytes") and store.has(oid)
    assert store.read_bytes(oid) == b"listing bytes"
    assert _mode(store.path(oid)) == 0o444
    assert store.add_bytes(b"listing bytes") == oid


def _corrupt(store, oid, data=b"evil"):
    path = store.path(oid)
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(data)


def test_read_bytes_detects_corruption(store):
    oid = store.add_bytes(b"good")
    _corrupt(store, oid)
    with pytest.raises(IntegrityError) as info:
        store.read_bytes(oid)
    assert info.value.exit_code == 3 and str(oid) in info.value.message


def test_read_bytes_missing_object(store):
    oid = hash_bytes(b"never stored")
    with pytest.raises(ObjectMissingError) as info:
        store.read_bytes(oid)
    assert str(oid) in info.value.message and info.value.hint


def test_read_bytes_limit(store):
    oid = store.add_bytes(b"x" * 100)
    with pytest.raises(IntegrityError):
        store.read_bytes(oid, limit=99)
    assert store.read_bytes(oid, limit=100) == b"x" * 100


def test_read_verified_and_verify_object(store):
    oid = store.add_bytes(b"chunked")
    assert b"".join(read_verified(store, oid)) == b"chunked"
    _corrupt(store, oid)
    with pytest.raises(IntegrityError):
        next(read_verified(store, oid))
    with pytest.raises(ObjectMissingError):
        verify_object(store.path(hash_bytes(b"no")), hash_bytes(b"no"))


def test_iter_oids_lists_objects_and_ignores_junk(store):
    oids = {store.add_bytes(str(i).encode()) for i in range(20)}
    open(os.path.join(store.objects_dir, "ab", "junk"), "w").close()
    open(os.path.join(store.objects_dir, "README"), "w").close()
    assert set(store.iter_oids()) == oids


def test_present_small_query(store):
    stored = {store.add_bytes(b"a"), store.add_bytes(b"b")}
    assert store.present([*stored, hash_bytes(b"c")]) == stored


def test_present_with_many_oids_lists_directories(store, monkeypatch):
    oids = [hash_bytes(str(i).encode()) for i in range(5000)]
    stored = {store.add_bytes(str(i).encode()) for i in range(0, 5000, 7)}
    monkeypatch.setattr(os.path, "isfile", lambda p: pytest.fail("per-object check"))
    monkeypatch.setattr(os.path, "exists", lambda p: pytest.fail("per-object check"))
    found = store.present(oids)
    monkeypatch.undo()
    assert found == stored


def test_present_with_many_oids_agrees_with_has(store):
    oids = [hash_bytes(str(i).encode()) for i in range(4096)]
    for i in range(0, 4096, 3):
        store.add_bytes(str(i).encode())
    assert store.present(oids) == {o for o in oids if store.has(o)}


def test_present_with_many_oids_ignores_junk_files(store):
    for junk in ("z" * 30, "0" * 31, "0" * 32, "junk"):
        open(os.path.join(store.objects_dir, "ab", junk), "w").close()
    oids = [hash_bytes(str(i).encode()) for i in range(5000)]
    assert store.present(oids) == set()


def test_sync_runs(store):
    store.add_bytes(b"x")
    store.sync()


def test_object_path_matches_digest():
    digest = xxhash.xxh3_128_digest(b"q")
    assert objects.object_path("/o", digest) == f"/o/{digest.hex()[:2]}/{digest.hex()[2:]}"


def test_staged_objects_are_invisible_until_published(tmp_path):
    """Two-phase writes: nothing reaches its object name before the sync barrier."""
    store = ObjectStore(str(tmp_path / "cache"))
    store.ensure_layout()
    src = tmp_path / "f"
    src.write_bytes(b"payload")
    oid = Oid(store.add_file(str(src)).digest)
    listing_oid = store.add_bytes(b"listing")
    assert not store.has(oid) and not store.has(listing_oid)
    assert len(staged(store.tmp_dir)) == 2
    store.publish()
    assert store.has(oid) and store.has(listing_oid)
    assert staged(store.tmp_dir) == []
    assert store.read_bytes(listing_oid) == b"listing"


def test_publish_many_in_workers_names_every_object(tmp_path):
    from datavc.parallel import MIN_FILES_FOR_POOL, publish

    store = ObjectStore(str(tmp_path / "cache"))
    store.ensure_layout()
    oids = {store.add_bytes(str(i).encode()) for i in range(MIN_FILES_FOR_POOL + 10)}
    publish(store, jobs=2)
    assert set(store.iter_oids()) == oids
    assert staged(store.tmp_dir) == []


@pytest.mark.parametrize("fail_after", [0, 1])
def test_big_file_falls_back_when_copy_file_range_is_unsupported(tmp_path, monkeypatch,
                                                                  fail_after):
    """EXDEV/EINVAL from copy_file_range (at once or mid-file) falls back to read+write."""
    import errno

    store = ObjectStore(str(tmp_path / "cache"))
    store.ensure_layout()
    src = tmp_path / "big"
    data = os.urandom(10 * 1024 * 1024 + 123)
    src.write_bytes(data)
    real = os.copy_file_range
    calls = []

    def flaky(*args):
        calls.append(args)
        if len(calls) > fail_after:
            raise OSError(errno.EXDEV, "cross-device")
        return real(*args)

    monkeypatch.setattr(os, "copy_file_range", flaky)
    stored = store.add_file(str(src))
    store.publish()
    oid = Oid(stored.digest)
    assert oid == hash_bytes(data)
    assert Path(store.path(oid)).read_bytes() == data


@pytest.mark.parametrize("size", [0, 5000, (4 << 20) + 123])
def test_copy_and_hash_copies_exactly_with_a_buffer_fit_for_the_source(tmp_path, size):
    """A listing-sized object gets a small buffer, not CHUNK (threads copy many at once)."""
    import tracemalloc

    src, dst = tmp_path / "src", tmp_path / "dst"
    data = os.urandom(size)
    src.write_bytes(data)
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_RDWR | os.O_CREAT)
    tracemalloc.start()
    try:
        digest = objects.copy_and_hash(sfd, dfd)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        os.close(sfd)
        os.close(dfd)
    assert dst.read_bytes() == data
    assert digest == xxhash.xxh3_128_digest(data)
    if size < 1 << 20:
        assert peak < 256 << 10
