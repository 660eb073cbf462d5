"""Plumbing for scripts: hash-object, cat-object, ls-manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import xxhash

from tests.conftest import gen
from tests.func.helpers import cache_objects, corrupt, fails, object_path, oid_of, ok

LS_KEYS = {"path", "name", "kind", "oid", "size", "mode", "nfiles"}


def test_hash_object_matches_xxh3_128(root, run):
    data = os.urandom(3000) + b"tail"
    (root / "f.bin").write_bytes(data)
    r = ok(run("hash-object", "f.bin"))
    assert r.out == f"xxh128:{xxhash.xxh3_128_hexdigest(data)}\n"
    assert cache_objects(root) == []  # without -w nothing is stored


def test_hash_object_known_vectors(tmp_path, run):
    """Plain hashing needs no repository; the empty file has the well-known XXH3-128 id."""
    (tmp_path / "empty").write_bytes(b"")
    r = ok(run("hash-object", "empty", cwd=tmp_path))
    assert r.out.strip() == "xxh128:99aa06d3014798d86001c324468d497f"
    assert r.out.strip() == oid_of(b"")


def test_hash_object_streams_big_files(root, run):
    data = os.urandom(9 << 20)  # more than two 4 MiB chunks
    (root / "big").write_bytes(data)
    assert ok(run("hash-object", "big")).out.strip() == oid_of(data)


def test_hash_object_write_stores_the_object(root, run):
    (root / "f").write_bytes(b"payload")
    r = ok(run("hash-object", "-w", "f"))
    assert r.out.strip() == oid_of(b"payload")
    assert object_path(root, oid_of(b"payload")).read_bytes() == b"payload"
    assert ok(run("cat-object", r.out.strip())).out == "payload"


def test_hash_object_write_outside_a_repo(tmp_path, run):
    (tmp_path / "f").write_text("x")
    fails(run("hash-object", "-w", "f", cwd=tmp_path), 10)


def test_hash_object_errors(root, run):
    r = fails(run("hash-object", "missing"), 1)
    assert "missing" in r.err
    fails(run("hash-object", "."), 2)  # a directory is a usage error


def test_cat_object_returns_the_bytes(root, run):
    data = bytes(range(256)) * 10
    (root / "f.bin").write_bytes(data)
    ok(run("add", "f.bin"))
    proc = subprocess.run([sys.executable, "-m", "datavc", "cat-object", oid_of(data)],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == data and proc.stderr == b""


def test_cat_object_accepts_a_bare_hex_id(root, run):
    (root / "f").write_text("bare")
    ok(run("add", "f"))
    assert ok(run("cat-object", oid_of(b"bare").removeprefix("xxh128:"))).out == "bare"


def test_cat_object_of_a_corrupt_object_exits_3_and_prints_nothing(root, run):
    data = b"x" * 5000
    (root / "f").write_bytes(data)
    ok(run("add", "f"))
    corrupt(object_path(root, oid_of(data)), offset=4000)
    r = fails(run("cat-object", oid_of(data)), 3)
    assert r.out == ""
    assert "corrupt" in r.err and oid_of(data) in r.err and "re-add" in r.err


def test_cat_object_of_a_corrupt_big_object_prints_nothing(root, run):
    data = os.urandom(9 << 20)
    (root / "big").write_bytes(data)
    ok(run("add", "big"))
    corrupt(object_path(root, oid_of(data)), offset=len(data) - 1)  # flip the very last byte
    proc = subprocess.run([sys.executable, "-m", "datavc", "cat-object", oid_of(data)],
                          capture_output=True, timeout=60)
    assert proc.returncode == 3 and proc.stdout == b""


def test_cat_object_missing_and_malformed(root, run):
    r = fails(run("cat-object", "xxh128:" + "0" * 32), 1)
    assert "not in the cache" in r.err
    r = fails(run("cat-object", "xxh128:XYZ"), 6)
    assert "malformed object id" in r.err
    r = fails(run("cat-object", "sha256:" + "0" * 64), 6)
    assert "unknown hash algorithm" in r.err


def test_ls_manifest_of_a_directory(root, run):
    gen(root, {"data": {"a": "aa", "s": {"b": "bbb", "t": {}}}})
    os.chmod(root / "data/s/b", 0o755)
    ok(run("add", "data"))
    r = ok(run("ls-manifest", "data.datavc"))
    lines = [line.split("\t") for line in r.out.splitlines()]
    assert [row[3] for row in lines] == ["data/a", "data/s", "data/s/b", "data/s/t"]
    assert lines[0] == ["file", oid_of(b"aa"), "2", "data/a"]
    assert lines[1][0] == "dir" and lines[1][2] == "3"
    rows = json.loads(ok(run("ls-manifest", "--json", "data")).out)
    assert all(set(row) == LS_KEYS for row in rows)
    by_path = {row["path"]: row for row in rows}
    assert by_path["data/s/b"] == {"path": "data/s/b", "name": "b", "kind": "file",
                                   "oid": oid_of(b"bbb"), "size": 3, "mode": "0o755",
                                   "nfiles": 1}
    assert by_path["data/s"]["nfiles"] == 1 and by_path["data/s"]["mode"] == "0o755"
    assert by_path["data/s/t"]["nfiles"] == 0 and by_path["data/s/t"]["size"] == 0


def test_ls_manifest_of_a_file(root, run):
    (root / "m.bin").write_bytes(b"model")
    ok(run("add", "m.bin"))
    [row] = json.loads(ok(run("ls-manifest", "--json", "m.bin.datavc")).out)
    assert row == {"path": "m.bin", "name": "m.bin", "kind": "file", "oid": oid_of(b"model"),
                   "size": 5, "mode": "0o644", "nfiles": 1}


def test_ls_manifest_of_an_empty_directory(root, run):
    (root / "void").mkdir()
    ok(run("add", "void"))
    assert json.loads(ok(run("ls-manifest", "--json", "void.datavc")).out) == []
    assert ok(run("ls-manifest", "void.datavc")).out == ""


def test_ls_manifest_reads_only_the_cache_not_the_workspace(root, run):
    gen(root, {"data": {"a": "a"}})
    ok(run("add", "data"))
    (root / "data/a").write_text("changed")
    (root / "data/new").write_text("n")
    rows = json.loads(ok(run("ls-manifest", "--json", "data.datavc")).out)
    assert [(r["path"], r["oid"]) for r in rows] == [("data/a", oid_of(b"a"))]


def test_ls_manifest_errors(root, run):
    r = fails(run("ls-manifest", "nope.datavc"), 1)
    assert "not tracked" in r.err
    fails(run("ls-manifest", "/etc/hosts.datavc"), 2)
