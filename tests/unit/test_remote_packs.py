"""Packs on both backends (a directory, and S3 through moto's server on 127.0.0.1): what
put_packs stores, how missing/locate/get/read_range see it, and how readers treat leftovers
and hostile index files."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
import xxhash

from datavc import pack, parallel
from datavc.errors import ObjectMissingError, UnknownFormatError
from datavc.hashing import Oid
from datavc.remote import LocalRemote
from tests.s3server import s3_bucket, s3_server  # noqa: F401
from tests.unit.stores import staged
from tests.unit.test_remote import _loopback_only, make_remote  # noqa: F401


@pytest.fixture(params=["local", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    r = make_remote(request.param, request, tmp_path)
    yield r
    r.close()


def stored_pack(remote: Any, tmp_path: Path, blobs: list[bytes], tag: str = "a"
                ) -> tuple[str, list[Oid]]:
    """Build a pack of ``blobs`` from real files and store it with put_packs."""
    src = tmp_path / f"src-{tag}"
    src.mkdir()
    items = []
    for i, data in enumerate(blobs):
        (src / str(i)).write_bytes(data)
        items.append((str(src / str(i)), -1, xxhash.xxh3_128_digest(data), len(data)))
    tmp = Path(remote.tmp_dir) if isinstance(remote, LocalRemote) else tmp_path / f"t-{tag}"
    tmp.mkdir(parents=True, exist_ok=True)
    [b] = parallel.build_packs([items], str(tmp), jobs=1)
    assert b.tmp is not None
    index = pack.encode_index(b.digest, b.entries)
    remote.put_packs([(b.tmp, index)])
    return pack.index_name(index), [Oid(d) for _, _, d, _ in items]


BLOBS = [f"small object {i}\n".encode() * (i + 1) for i in range(20)]


def fresh(remote: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Another instance on the same store: it reads the packs anew."""
    kind = "local" if isinstance(remote, LocalRemote) else "s3"
    if kind == "local":
        return LocalRemote(remote.root)
    return make_remote("s3", request, tmp_path)


def test_packed_objects_are_there_for_every_reader(remote: Any, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    name, oids = stored_pack(remote, tmp_path, BLOBS)
    other = Oid(xxhash.xxh3_128_digest(b"not there"))
    for r in (remote, fresh(remote, request, tmp_path)):  # this instance, and a new one
        assert r.missing([*oids, other]) == {other}
        where = r.locate([*oids, other])
        assert set(where) == set(oids) and {p.pack for p in where.values()} == {name}
        for oid, data in zip(oids, BLOBS, strict=True):
            sink = io.BytesIO()
            r.get(oid, sink)
            assert sink.getvalue() == data
        sink = io.BytesIO()
        at = where[oids[3]]
        r.read_range(name, at.offset, at.size + len(BLOBS[4]), sink)
        assert sink.getvalue() == BLOBS[3] + BLOBS[4]
    [info] = remote.iter_packs()
    assert (info.name, info.size, info.problem) == (name, sum(map(len, BLOBS)), None)
    assert [d for d, _, _ in info.objects()] == [o.digest for o in oids]


def test_a_deleted_pack_is_gone_index_first(remote: Any, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    name, oids = stored_pack(remote, tmp_path, BLOBS)
    remote.delete_pack(name)
    remote.delete_pack(name)  # absent: no error
    r = fresh(remote, request, tmp_path)
    assert r.missing(oids) == set(oids) and r.iter_packs() == []
    with pytest.raises(ObjectMissingError):
        r.get(oids[0], io.BytesIO())
    with pytest.raises(ObjectMissingError):
        r.read_range(name, 0, 10, io.BytesIO())


def write_key(remote: Any, rel: str, data: bytes | None) -> None:
    """Write (or, with None, delete) a file under the remote's root, behind its back."""
    if isinstance(remote, LocalRemote):
        path = Path(remote.root) / rel
        if data is None:
            path.unlink()
        else:
            if path.exists():
                path.chmod(0o644)
            path.write_bytes(data)
        return
    key = f"{remote._base}{rel}"
    if data is None:
        remote._client().delete_object(Bucket=remote.bucket, Key=key)
    else:
        remote._client().put_object(Bucket=remote.bucket, Key=key, Body=data)


@pytest.mark.parametrize("leftover", ["no index", "no pack", "damaged index",
                                      "index of another pack", "short pack"])
def test_unusable_packs_hide_their_objects_and_are_reported(
        remote: Any, tmp_path: Path, request: pytest.FixtureRequest, leftover: str) -> None:
    name, oids = stored_pack(remote, tmp_path, BLOBS)
    if leftover == "no index":
        write_key(remote, f"packs/{name}.idx", None)
    elif leftover == "no pack":
        write_key(remote, f"packs/{name}.pack", None)
    elif leftover == "damaged index":
        write_key(remote, f"packs/{name}.idx", b"\x93garbage" + bytes(16))
    elif leftover == "index of another pack":
        other = pack.encode_index(b"\x01" * 16, [(o.digest, len(b)) for o, b in
                                                 zip(oids[:-1], BLOBS[:-1], strict=True)])
        write_key(remote, f"packs/{name}.idx", other)
    else:  # the pack shorter than its index says
        write_key(remote, f"packs/{name}.pack", b"".join(BLOBS)[:-1])
    r = fresh(remote, request, tmp_path)
    assert r.missing(oids) == set(oids)  # a push sends them again: the remote heals
    assert r.locate(oids) == {}
    [info] = r.iter_packs()
    expected = {"no index": pack.NO_INDEX, "no pack": pack.NO_PACK}.get(leftover, pack.DAMAGED)
    assert info.entries is None and info.problem == expected


def test_junk_under_packs_is_reported_and_ignored(remote: Any, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    _, oids = stored_pack(remote, tmp_path, BLOBS)
    write_key(remote, "packs/notes.txt", b"hello")
    write_key(remote, "packs/" + "a" * 32 + ".zip", b"hello")
    junk: list[str] = []
    r = fresh(remote, request, tmp_path)
    assert len(r.iter_packs(on_junk=junk.append)) == 1
    assert sorted(junk) == ["packs/" + "a" * 32 + ".zip", "packs/notes.txt"]
    assert r.missing(oids) == set()


def test_an_index_of_a_newer_format_is_refused(remote: Any, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    import msgpack

    name, oids = stored_pack(remote, tmp_path, BLOBS)
    body = msgpack.packb(["datavc.pack", 2, bytes.fromhex(name), b""], use_bin_type=True)
    write_key(remote, f"packs/{name}.idx", body + xxhash.xxh3_128_digest(body))
    with pytest.raises(UnknownFormatError):
        fresh(remote, request, tmp_path).missing(oids)


def test_the_local_pack_files_are_read_only_and_tmp_is_left_empty(tmp_path: Path) -> None:
    r = LocalRemote(str(tmp_path / "remote"))
    name, _ = stored_pack(r, tmp_path, BLOBS)
    for suffix in (".pack", ".idx"):
        assert os.stat(Path(r.packs_dir) / f"{name}{suffix}").st_mode & 0o222 == 0
    assert staged(r.tmp_dir) == []


def test_a_fifo_or_directory_under_packs_is_junk_and_never_blocks(tmp_path: Path) -> None:
    r = LocalRemote(str(tmp_path / "remote"))
    name, oids = stored_pack(r, tmp_path, BLOBS)
    fifo_name, _ = stored_pack(r, tmp_path, [b"x" * 10, b"y" * 10], tag="b")
    os.unlink(Path(r.packs_dir) / f"{fifo_name}.idx")
    os.mkfifo(Path(r.packs_dir) / f"{fifo_name}.idx")
    os.mkdir(Path(r.packs_dir) / ("c" * 32 + ".pack"))
    junk: list[str] = []
    fresh_one = LocalRemote(r.root)
    infos = {i.name: i for i in fresh_one.iter_packs(on_junk=junk.append)}
    assert sorted(junk) == sorted([f"packs/{'c' * 32}.pack", f"packs/{fifo_name}.idx"])
    assert infos[name].problem is None and infos[fifo_name].problem == pack.NO_INDEX
    assert fresh_one.missing(oids) == set()


def test_a_push_runs_without_the_lock_so_its_temps_are_private(tmp_path: Path) -> None:
    import time

    from datavc.objects import PRIVATE_MAX_AGE, ObjectStore

    store = ObjectStore(str(tmp_path / "cache"))
    store.ensure_layout()
    with store.private_tmp() as mine:
        (Path(mine) / "pack-1").write_bytes(b"in progress")
        store.clear_tmp()  # another command takes the lock meanwhile
        assert (Path(mine) / "pack-1").exists()
    assert not Path(mine).exists()
    with store.private_tmp() as left:  # as a killed push leaves it
        old = time.time() - PRIVATE_MAX_AGE - 60
        os.utime(left, (old, old))
        store.clear_tmp()
        assert not Path(left).exists()
