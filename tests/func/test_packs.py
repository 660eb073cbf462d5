"""Many small files travel in packs: push / pull / gc / fsck through the CLI, in real git
repositories, against a directory remote and a real S3 endpoint (moto on 127.0.0.1); damaged,
partial and interrupted packs never put a wrong byte in a cache or a work tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xxhash

from datavc import pack
from tests.conftest import gen, git, read_tree
from tests.func.helpers import (
    cache_objects,
    fails,
    no_processes_left_in,
    ok,
    push_killed_when,
    tmp_files,
)
from tests.func.test_transfer import MANY, clone_of, committed, remote_ids
from tests.s3server import aws_env, s3_bucket, s3_client, s3_server  # noqa: F401


def pack_files(remote: dict) -> dict[str, bytes]:
    """Every file under the remote's packs/, by name."""
    if remote["kind"] == "dir":
        where = remote["path"] / "packs"
        return {p.name: p.read_bytes() for p in where.iterdir()} if where.exists() else {}
    client = remote["client"]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=remote["bucket"],
                                                             Prefix="proj/packs/")
    return {o["Key"].split("/")[-1]: client.get_object(Bucket=remote["bucket"],
                                                      Key=o["Key"])["Body"].read()
            for page in pages for o in page.get("Contents", [])}


def put_file(remote: dict, name: str, data: bytes | None) -> None:
    if remote["kind"] == "dir":
        path = remote["path"] / "packs" / name
        if data is None:
            path.unlink()
        else:
            path.chmod(0o644)
            path.write_bytes(data)
        return
    key = f"proj/packs/{name}"
    if data is None:
        remote["client"].delete_object(Bucket=remote["bucket"], Key=key)
    else:
        remote["client"].put_object(Bucket=remote["bucket"], Key=key, Body=data)


def file_ids(root: Path) -> set[str]:
    """The ids of the cache's file objects (not listings)."""
    return {p.parent.name + p.name for p in cache_objects(root)
            if not p.read_bytes().startswith(b"\x93\xaedatavc.listing")}


def test_many_small_files_travel_in_packs_and_come_back_exact(root, run, remote, tmp_path):
    committed(root, run, MANY)
    doc = json.loads(ok(run("push", "--json")).out)
    local = {p.parent.name + p.name for p in cache_objects(root)}
    assert doc["transferred"] == len(local) and doc["missing"] == []
    files = pack_files(remote)
    names = {n.split(".")[0] for n in files}
    assert files and {f"{n}.pack" for n in names} | {f"{n}.idx" for n in names} == set(files)
    for name in names:  # each pack is named by its entries; its index holds its digest
        digest, entries = pack.decode_index(files[f"{name}.idx"], name)
        assert xxhash.xxh3_128_hexdigest(entries) == name
        assert xxhash.xxh3_128_digest(files[f"{name}.pack"]) == digest
    assert remote_ids(remote) == local - file_ids(root)  # only the 8 listings are loose
    assert json.loads(ok(run("push", "--json")).out)["transferred"] == 0
    clone = clone_of(root, tmp_path, run)
    doc = json.loads(ok(run("pull", "--json", cwd=clone)).out)
    assert doc["transferred"] == len(local) and doc["corrupt"] == []
    assert read_tree(clone / "data") == read_tree(root / "data")
    assert tmp_files(clone / ".datavc/cache/tmp") == []
    assert ok(run("fsck", "--remote", "--read-data", "--json", cwd=clone))


def test_a_few_small_files_still_go_one_by_one(root, run, remote):
    committed(root, run)  # 5 files: below the packing threshold
    ok(run("push"))
    assert pack_files(remote) == {}


def test_pack_false_stores_every_object_on_its_own(root, run, remote):
    ok(run("remote", "modify", "storage", "pack", "false"))
    committed(root, run, MANY)
    ok(run("push"))
    assert pack_files(remote) == {}
    assert remote_ids(remote) == {p.parent.name + p.name for p in cache_objects(root)}


def flip_in_pack(remote: dict, victim: str) -> tuple[str, bytes]:
    """Flip one byte of object ``victim`` inside its pack; returns the pack and its bytes."""
    files = pack_files(remote)
    for name in (n for n in files if n.endswith(".idx")):
        stem = name[:-4]
        info = pack.PackInfo(stem, 0, 0, pack.decode_index(files[name], stem)[1])
        for digest, offset, _size in info.objects():
            if digest.hex() == victim:
                data = bytearray(files[f"{stem}.pack"])
                data[offset] ^= 0xFF
                put_file(remote, f"{stem}.pack", bytes(data))
                return stem, files[f"{stem}.pack"]
    raise AssertionError(f"{victim} is in no pack")


def test_a_damaged_packed_object_never_reaches_the_cache(root, run, remote, tmp_path):
    committed(root, run, MANY)
    ok(run("push"))
    victim = sorted(file_ids(root))[0]
    stem, good = flip_in_pack(remote, victim)
    clone = clone_of(root, tmp_path, run)
    r = fails(run("pull", "--json", cwd=clone), 3)
    assert json.loads(r.out)["corrupt"] == ["xxh128:" + victim]
    assert not (clone / ".datavc/cache/objects" / victim[:2] / victim[2:]).exists()
    # everything else arrived; the damaged file is not in the work tree
    assert len(cache_objects(clone)) == len(cache_objects(root)) - 1
    r = fails(run("fsck", "--remote", "--read-data", "--json", cwd=root), 3)
    assert victim in r.out
    put_file(remote, f"{stem}.pack", good)
    ok(run("pull", cwd=clone))
    assert read_tree(clone / "data") == read_tree(root / "data")


@pytest.mark.parametrize("leftover", ["no index", "damaged index"])
def test_objects_of_an_unusable_pack_are_pushed_again(root, run, remote, tmp_path, leftover):
    committed(root, run, MANY)
    ok(run("push"))
    name = sorted(n for n in pack_files(remote) if n.endswith(".idx"))[0]
    put_file(remote, name, None if leftover == "no index" else b"\x93" + bytes(40))
    doc = json.loads(ok(run("push", "--json")).out)
    assert doc["transferred"] > 0  # the hidden pack's objects, in a new pack
    clone = clone_of(root, tmp_path, run)
    ok(run("pull", cwd=clone))
    assert read_tree(clone / "data") == read_tree(root / "data")


def test_gc_deletes_dead_packs_whole_and_keeps_live_ones(root, run, remote, tmp_path):
    committed(root, run, MANY)
    ok(run("push"))
    before = {n for n in pack_files(remote) if n.endswith(".pack")}
    # every file changes: the first version's packs die whole
    for p in sorted((root / "data").rglob("*")):
        if p.is_file():
            p.chmod(0o644)
            p.write_text("v2 " + p.read_text())
    ok(run("commit", "-m", "v2"))
    ok(run("push"))
    after = {n for n in pack_files(remote) if n.endswith(".pack")}
    assert before < after
    gc = ok(run("gc", "--workspace", "--remote", "--yes", "--grace", "0", "--json"))
    docs = {d["where"]: d for d in json.loads(gc.out)}
    assert docs["remote storage"]["deleted"] == 700 + 8  # the packed files, the listings
    left = {n for n in pack_files(remote) if n.endswith(".pack")}
    assert left == after - before
    assert {n[:-4] for n in pack_files(remote) if n.endswith(".idx")} == \
        {n[:-5] for n in left}
    clone = clone_of(root, tmp_path, run)
    ok(run("pull", cwd=clone))
    assert read_tree(clone / "data") == read_tree(root / "data")


def test_gc_keeps_young_packs_within_the_grace(root, run, remote):
    committed(root, run, MANY)
    ok(run("push"))
    packs = set(pack_files(remote))
    for p in sorted((root / "data").rglob("*")):
        if p.is_file():
            p.chmod(0o644)
            p.write_text("v2 " + p.read_text())
    ok(run("commit", "-m", "v2"))
    ok(run("gc", "--workspace", "--remote", "--yes"))  # default grace: what was just pushed stays
    assert packs <= set(pack_files(remote))


@pytest.mark.parametrize("when", ["tmp", "packs"])
def test_kill_9_during_a_packed_push_leaves_nothing_wrong(root, run, tmp_path, when):
    where = tmp_path / "remote"
    ok(run("remote", "add", "storage", str(where), "--default"))
    big = {f"d{i}": {f"f{j:04d}": f"file {i} {j}\n" * (j % 50 + 1) for j in range(2000)}
           for i in range(4)}
    committed(root, run, big)
    d = where / when
    push_killed_when(root, lambda: d.exists() and any(d.iterdir()))
    assert no_processes_left_in(root) == []
    packs = where / "packs"
    for idx in packs.glob("*.idx") if packs.exists() else ():
        body = (packs / (idx.stem + ".pack")).read_bytes()  # an index always has its pack
        digest, _ = pack.decode_index(idx.read_bytes(), idx.stem)
        assert xxhash.xxh3_128_digest(body) == digest
    ok(run("push"))
    clone = clone_of(root, tmp_path, run)
    ok(run("pull", cwd=clone))
    assert read_tree(clone / "data") == read_tree(root / "data")
    ok(run("gc", "--workspace", "--remote", "--yes", "--grace", "0"))
    assert {p.suffix for p in packs.iterdir()} <= {".pack", ".idx"}
    assert len(list(packs.glob("*.pack"))) == len(list(packs.glob("*.idx")))


def test_a_few_packed_objects_among_many_loose_ones_all_arrive(root, run, tmp_path):
    """A pull that needs under 64 packed objects and 512 or more loose ones: the packed
    ones come by ranged reads one by one, the loose ones through the worker processes."""
    where = tmp_path / "remote"
    ok(run("remote", "add", "storage", str(where), "--default"))
    committed(root, run, MANY)
    ok(run("push"))  # packed
    clone = clone_of(root, tmp_path, run)
    ok(run("pull", cwd=clone))
    for p in sorted(cache_objects(clone))[:50]:  # the clone loses 50 objects
        p.unlink()
    more = {f"e{i}": {f"g{j:03d}": f"more {i} {j}\n" for j in range(100)} for i in range(6)}
    (root / "data").mkdir(exist_ok=True)
    gen(root / "data", more)
    ok(run("remote", "modify", "storage", "pack", "false"))
    ok(run("commit", "-m", "v2"))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "loose", "--allow-empty")
    ok(run("push"))  # 600 loose
    git(clone, "pull", "-q", str(root), "HEAD")
    ok(run("pull", cwd=clone))
    assert read_tree(clone / "data") == read_tree(root / "data")
    assert len(cache_objects(clone)) == len(cache_objects(root))
