"""fsck: the corruption patterns of git's t1060 are each found, with the paths they hurt."""

from __future__ import annotations

import os

import pytest

from datavc import fsck, listing
from datavc.gc import Kept
from datavc.hashing import hash_bytes
from datavc.remote_local import LocalRemote

A, B, C = b"alpha\n", b"beta beta\n", b"gamma gamma gamma\n"


def make(store) -> Kept:
    rows = []
    for name, data in (("a", A), ("b", B)):
        rows.append([name.encode(), "file", store.add_bytes(data).digest, len(data), 0o644, 1])
    inner = store.add_bytes(listing.encode([[b"c", "file", store.add_bytes(C).digest,
                                             len(C), 0o644, 1]]))
    rows.append([b"s", "dir", inner.digest, len(C), 0o755, 1])
    return Kept("HEAD", "dir", store.add_bytes(listing.encode(sorted(rows))), 3)


def run(store, kept, read_data=True):
    problems: list[fsck.Problem] = []
    named = fsck.walk(store, [("data", kept)], problems)
    problems += fsck.check_cache(store, named, read_data=read_data)
    return problems


def writable(store, data: bytes) -> str:
    path = store.path(hash_bytes(data))
    os.chmod(path, 0o644)
    return path


def test_a_sound_cache_has_no_problems(store):
    assert run(store, make(store)) == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "misname", "missing"])
def test_each_corruption_is_found_and_names_its_paths(store, damage):
    kept = make(store)
    path = writable(store, C)
    if damage == "flip":
        with open(path, "r+b") as f:
            f.write(b"G")
    elif damage == "truncate":
        os.truncate(path, 3)
    elif damage == "empty":
        os.truncate(path, 0)
    elif damage == "misname":
        with open(path, "wb") as f:
            f.write(B)  # another object's bytes under C's name
    else:
        os.unlink(path)
    [p] = run(store, kept)
    assert p.oid == str(hash_bytes(C)) and p.paths == ["data/s/c"]
    assert p.kind == ("missing" if damage == "missing" else "corrupt")


def test_without_read_data_a_size_change_is_still_found(store):
    kept = make(store)
    os.truncate(writable(store, C), 3)
    [p] = run(store, kept, read_data=False)
    assert p.kind == "size" and p.paths == ["data/s/c"]


def test_a_corrupt_listing_is_reported_and_its_subtree_not_read(store):
    kept = make(store)
    inner = next(e.oid for e in listing.decode(store.read_bytes(kept.oid), where="t")
                 if e.kind == "dir")
    path = store.path(inner)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"\x00")
    problems = run(store, kept, read_data=False)
    assert [(p.kind, p.oid, p.paths) for p in problems] == [("corrupt", str(inner), ["data/s"])]


def test_junk_in_the_object_directories_is_reported(store):
    kept = make(store)
    with open(os.path.join(store.objects_dir, "ab", "zz-not-an-object"), "w") as f:
        f.write("x")
    assert [p.kind for p in run(store, kept)] == ["junk"]


def test_remote_check_finds_missing_and_corrupt_objects(store, tmp_path):
    kept = make(store)
    remote = LocalRemote(str(tmp_path / "remote"))
    for oid in store.iter_oids():
        remote.put(oid, store.path(oid), os.path.getsize(store.path(oid)))
    problems: list[fsck.Problem] = []
    named = fsck.walk(store, [("data", kept)], problems)
    assert fsck.check_remote(remote, "r", named, read_data=True) == []
    a = tmp_path / "remote/objects" / hash_bytes(A).hex[:2] / hash_bytes(A).hex[2:]
    a.chmod(0o644)
    a.write_bytes(b"ALPHA\n")
    remote.delete(hash_bytes(B))
    found = {(p.kind, p.paths[0]) for p in fsck.check_remote(remote, "r", named,
                                                             read_data=True)}
    assert found == {("corrupt", "data/a"), ("missing", "data/b")}
    assert {p.kind for p in fsck.check_remote(remote, "r", named, read_data=False)} == {
        "missing"}
