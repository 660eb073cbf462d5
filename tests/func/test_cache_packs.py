"""Packs in the cache: an ``add`` of many small files into a copy workspace writes them as
a few pack files instead of one file each (docs/format.md, "Packs in the cache"). Every
command that reads the cache reads them: checkout, status, cat-object, the read API, push
(into remote packs, or one by one), fsck, gc; hardlink checkouts get loose objects first.
Real git repositories, the real CLI in subprocesses."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash

import datavc
from datavc import pack
from tests.conftest import git, read_tree
from tests.func.helpers import (
    cache_objects,
    corrupt,
    fails,
    oid_of,
    ok,
    set_link_types,
    tmp_files,
    wipe_cache,
)
from tests.func.test_transfer import clone_of, dir_remote

# 1,199 small files and a big one: on 2 jobs, each chunk with 64 or more new small objects
# is a pack (a first add hashes during its walk, a chunk of 1,024, then the rest in chunks
# of 74: three packs; a later add in 16 chunks of 75); a few duplicates, an empty
# file, and the big file, which stays loose
FILES = 1199
BIG = 2 << 20


def make_data(data: Path, *, seed: int = 3, n: int = FILES) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        rel = f"d{i % 4}/f{i:05d}.bin"
        body = b"same bytes\n" if i % 97 == 0 else rng.randbytes(rng.randint(1, 3000))
        out[rel] = b"" if i == 5 else body
    out["big.bin"] = rng.randbytes(BIG)
    for rel, body in out.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(body)
    return out


def use_jobs(root: Path, jobs: int = 2, extra: str = "") -> None:
    (root / ".datavc/config.toml").write_text(
        f"[core]\nformat = 1\n\n[cache]\njobs = {jobs}\n{extra}")


def packs_of(root: Path) -> dict[str, tuple[bytes, bytes]]:
    """Each cache pack by name: (pack bytes, index bytes)."""
    where = root / ".datavc/cache/packs"
    names = {p.name.split(".")[0] for p in where.iterdir()} if where.exists() else set()
    return {n: ((where / f"{n}.pack").read_bytes(), (where / f"{n}.idx").read_bytes())
            for n in names}


def packed_ids(root: Path) -> dict[str, tuple[str, int, int]]:
    """``xxh128:<hex>`` of every packed object: (pack, offset, size)."""
    out = {}
    for name, (_, index) in packs_of(root).items():
        _, entries = pack.decode_index(index, name)
        offset = 0
        for digest, size in pack.iter_entries(entries):
            out["xxh128:" + digest.hex()] = (name, offset, size)
            offset += size
    return out


@pytest.fixture
def added(root, run) -> dict[str, bytes]:
    use_jobs(root)
    files = make_data(root / "data")
    ok(run("add", "data"))
    ok(run("commit", "-m", "v1"))
    return files


def test_many_small_files_go_into_packs_and_come_back_exact(root, run, added):
    packs = packs_of(root)
    assert len(packs) >= 2
    for name, (body, index) in packs.items():  # the remote format, to the byte
        digest, entries = pack.decode_index(index, name)
        assert xxhash.xxh3_128_digest(body) == digest
        offset = 0
        for d, size in pack.iter_entries(entries):
            assert xxhash.xxh3_128_digest(body[offset:offset + size]) == d
            offset += size
        assert offset == len(body)
    small = {oid_of(b) for rel, b in added.items() if rel != "big.bin"}
    loose = {"xxh128:" + p.parent.name + p.name for p in cache_objects(root)}
    # every small object is stored, most in packs (a chunk of fewer than 64 files, e.g.
    # the last one, stays loose)
    assert set(packed_ids(root)) | (loose & small) == small
    assert len(loose & small) < pack.MIN_OBJECTS
    assert oid_of(added["big.bin"]) in loose
    assert tmp_files(root / ".datavc/cache/tmp") == []

    doc = json.loads(ok(run("status", "--json")).out)
    assert [t["state"] for t in doc] == ["clean"]
    for path in list((root / "data").rglob("*.bin"))[::7]:
        path.unlink()
    ok(run("checkout"))
    assert {str(p.relative_to(root / "data")): p.read_bytes()
            for p in (root / "data").rglob("*") if p.is_file()} == added
    assert ok(run("fsck", "--read-data")).out.startswith("OK")


def test_packed_objects_read_through_plumbing_and_the_api(root, run, added):
    body = added["d1/f00001.bin"]
    assert oid_of(body) in packed_ids(root)
    proc = subprocess.run([sys.executable, "-m", "datavc", "cat-object", oid_of(body)],
                          cwd=root, capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == body and proc.stderr == b""
    repo = datavc.Repo(root)
    assert repo.read_bytes("data/d1/f00001.bin") == body
    with repo.open("data/d1/f00001.bin") as f:
        assert f.read() == body
        f.seek(3)
        assert f.read(5) == body[3:8]


def test_pack_false_keeps_every_object_loose(root, run):
    use_jobs(root, extra="pack = false\n")
    files = make_data(root / "data", n=400)
    ok(run("add", "data"))
    assert packs_of(root) == {}
    assert {oid_of(b) for b in files.values()} <= {
        "xxh128:" + p.parent.name + p.name for p in cache_objects(root)}


def test_few_small_files_stay_loose(root, run):
    use_jobs(root)
    make_data(root / "data", n=100)
    ok(run("add", "data"))
    assert packs_of(root) == {}


def test_a_hardlink_checkout_unpacks_what_it_links(root, run, added):
    set_link_types(root, ["hardlink", "copy"])
    for d in (root / "data").iterdir():
        if d.is_dir():
            for p in d.iterdir():
                p.unlink()
    ok(run("checkout"))
    sample = root / "data/d2/f00002.bin"
    assert sample.read_bytes() == added["d2/f00002.bin"]
    assert sample.stat().st_nlink == 2  # linked to a loose object, written from the pack
    assert ok(run("fsck", "--read-data")).out.startswith("OK")


def test_a_flipped_byte_in_a_pack_is_caught_and_repaired(root, run, added, tmp_path):
    dir_remote(root, run, tmp_path, pack=True)
    ok(run("push"))
    target = oid_of(added["d3/f00003.bin"])
    name, offset, _ = packed_ids(root)[target]
    corrupt(root / f".datavc/cache/packs/{name}.pack", offset)
    (root / "data/d3/f00003.bin").unlink()
    r = fails(run("checkout"), 3)
    assert target.removeprefix("xxh128:") in r.err
    assert not (root / "data/d3/f00003.bin").exists()
    r = fails(run("fsck", "--read-data", "--json"), 3)
    kinds = {(p["kind"], p["oid"]) for p in json.loads(r.out)["problems"]}
    assert kinds == {("corrupt", target)}
    ok(run("fsck", "--read-data", "--repair", "--remote", "storage"))
    ok(run("checkout"))
    assert (root / "data/d3/f00003.bin").read_bytes() == added["d3/f00003.bin"]


@pytest.mark.parametrize("packing", [True, False])
def test_push_from_packs_and_pull_into_a_clone(root, run, added, tmp_path, packing):
    where = dir_remote(root, run, tmp_path, pack=packing)
    git(root, "add", ".datavc/config.toml")
    git(root, "commit", "-qm", "remote")
    doc = json.loads(ok(run("push", "--json")).out)
    assert doc["missing"] == [] and doc["transferred"] > FILES // 2
    assert (where / "packs").exists() == packing
    assert tmp_files(root / ".datavc/cache/tmp") == []  # the private copies are gone
    clone = clone_of(root, tmp_path, run)
    ok(run("pull", cwd=clone))
    assert read_tree(clone / "data") == read_tree(root / "data")


def test_gc_rewrites_packs_with_dead_objects_and_deletes_dead_packs(root, run, added):
    before = packed_ids(root)
    d0 = {oid_of(b) for rel, b in added.items() if rel.startswith("d0/")}
    for p in (root / "data/d0").iterdir():  # a quarter of the files change
        p.write_bytes(p.read_bytes() + b"!")
    ok(run("add", "data"))
    ok(run("commit", "-m", "v2"))
    doc = json.loads(ok(run("gc", "--workspace", "--grace", "0s", "--json")).out)
    after = packed_ids(root)
    dead = d0 - {oid_of(b) for rel, b in added.items() if not rel.startswith("d0/")}
    assert dead and not dead & set(after)
    assert set(before) - dead <= set(after)  # every live object is still packed
    [cache] = doc
    assert cache["deleted"] >= len(dead)  # and v1's listings
    assert ok(run("fsck", "--read-data")).out.startswith("OK")
    current = read_tree(root / "data")
    for p in (root / "data").rglob("*.bin"):
        p.unlink()
    ok(run("checkout"))
    assert read_tree(root / "data") == current


def test_half_packs_are_cleared_by_the_next_locked_command(root, run, added):
    name = next(iter(packs_of(root)))
    (root / f".datavc/cache/packs/{name}.idx").unlink()  # as a kill between the renames
    r = fails(run("fsck", "--json"), 1)
    assert any(p["kind"] == "junk" for p in json.loads(r.out)["problems"])
    (root / "data/extra.bin").write_bytes(b"x")
    ok(run("add", "data"))  # takes the lock: the half pack goes; its objects are re-stored
    assert name not in packs_of(root)
    assert not any(n.startswith(name) for n in os.listdir(root / ".datavc/cache/packs"))
    assert ok(run("fsck", "--read-data")).out.startswith("OK")


def duplicates(root: Path) -> int:
    entries = []
    for name, (_, index) in packs_of(root).items():
        entries += [d for d, _ in pack.iter_entries(pack.decode_index(index, name)[1])]
    return len(entries) - len(set(entries))


def test_touched_files_with_one_change_do_not_pack_their_objects_twice(root, run, added):
    before = duplicates(root)  # the same bytes met by several workers: a few
    assert before < 16
    for p in (root / "data").rglob("*.bin"):  # new mtimes, same bytes: all hashed again
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    (root / "data/d2/f00002.bin").write_bytes(b"changed")
    ok(run("add", "data"))
    assert duplicates(root) == before  # the 1,199 touched files were not packed again
    assert oid_of(b"changed") in packed_ids(root) or oid_of(b"changed") in {
        "xxh128:" + p.parent.name + p.name for p in cache_objects(root)}


def test_push_reads_many_cache_packs_with_few_descriptors(root, run, tmp_path):
    use_jobs(root)
    for i in range(5):  # five adds: 67 cache packs, each push group touches most of them
        make_data(root / "data", seed=10 + i)  # (3 from the first add, 16 from each other)
        ok(run("add", "data"))
    assert len(packs_of(root)) >= 60
    dir_remote(root, run, tmp_path, pack=True)
    proc = subprocess.run(["bash", "-c", 'ulimit -n 64 && exec "$0" -m datavc push',
                           sys.executable], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc


def test_a_pack_whose_index_is_not_a_regular_file_is_left_alone(root, run, added):
    name = next(iter(packs_of(root)))
    idx = root / f".datavc/cache/packs/{name}.idx"
    idx.rename(idx.with_name("elsewhere"))
    idx.symlink_to(idx.with_name("elsewhere"))
    ok(run("status"))  # takes the lock: half packs go, this is not one
    assert (root / f".datavc/cache/packs/{name}.pack").exists()
    r = fails(run("fsck", "--json"), 1)
    assert any(p["kind"] == "junk" for p in json.loads(r.out)["problems"])


def test_an_add_that_would_pass_the_readers_limit_stores_loose(root, run, added,
                                                               monkeypatch):
    """The cache's own reader keeps at most pack.MAX_PACKED packed objects: an add that
    could cross it stores its objects loose, and everything stays readable."""
    monkeypatch.setattr(pack, "MAX_PACKED", len(packed_ids(root)) + 100)
    before = set(packs_of(root))
    more = make_data(root / "more", seed=99)  # enough to pack, without the limit
    repo = datavc.Repo(root)
    repo.add([str(root / "more")])
    assert set(packs_of(root)) == before
    assert repo.read_bytes("more/d1/f00001.bin") == more["d1/f00001.bin"]
    assert repo.read_bytes("data/d1/f00001.bin") == added["d1/f00001.bin"]


def test_a_first_add_hashing_during_its_walk_records_what_one_job_records(root, run, tmp_path):
    files = make_data(root / "data")
    use_jobs(root, jobs=1)
    ok(run("add", "data"))
    one_job = (root / "data.datavc").read_text()
    (root / "data.datavc").unlink()  # a first add again, now on two jobs: nothing known
    wipe_cache(root)
    for where in (".datavc/state", ".datavc/cache/packs"):
        shutil.rmtree(root / where, ignore_errors=True)
    use_jobs(root, jobs=2)
    ok(run("add", "data"))
    assert (root / "data.datavc").read_text() == one_job
    assert len(packs_of(root)) == 3  # hashed during the walk: 1,024 files, then 74, 74, 28
    assert tmp_files(root / ".datavc/cache/tmp") == []
    assert json.loads(ok(run("status", "--json")).out)[0]["state"] == "clean"
    assert ok(run("fsck", "--read-data")).out.startswith("OK")
    for path in list((root / "data").rglob("*.bin"))[::5]:
        path.unlink()
    ok(run("checkout"))
    assert {str(p.relative_to(root / "data")): p.read_bytes()
            for p in (root / "data").rglob("*") if p.is_file()} == files


def test_a_first_add_failing_after_its_walk_leaves_nothing_staged(root, run):
    use_jobs(root)
    make_data(root / "data")
    (root / "data/d3/zz").mkdir()
    (root / "data/d3/zz/inner").write_text("tracked on its own")
    ok(run("add", "data/d3/zz/inner"))
    r = fails(run("add", "data"), 1)  # the workers hashed during the walk; then this
    assert "'data' overlaps 'data/d3/zz/inner'" in r.err
    assert tmp_files(root / ".datavc/cache/tmp") == []
    assert not (root / "data.datavc").exists()
    assert packs_of(root) == {}
