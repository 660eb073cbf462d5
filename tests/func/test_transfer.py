"""push / fetch / pull through the CLI, in real git repositories, against a directory remote
and a real S3 endpoint (moto's server on 127.0.0.1): a fresh clone gets the exact bytes,
only what is missing moves, every download is verified, and nothing wrong is ever stored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import gen, git, read_tree
from tests.func.helpers import (
    cache_objects,
    fails,
    no_processes_left_in,
    object_path,
    ok,
    push_killed_when,
    tmp_files,
    wipe_cache,
)
from tests.s3server import aws_env, s3_bucket, s3_client, s3_server  # noqa: F401

DATA = {"a": "alpha\n", "sub": {"b": "beta\n", "deep": {"c": "gamma\n"}}, "empty": {},
        "big": "x" * 300_000}


def remote_ids(remote) -> set[str]:
    if remote["kind"] == "dir":
        return {p.parent.name + p.name for p in (remote["path"] / "objects").glob("*/*")}
    pages = remote["client"].get_paginator("list_objects_v2").paginate(
        Bucket=remote["bucket"], Prefix="proj/objects/")
    return {"".join(o["Key"].split("/")[-2:]) for page in pages for o in page.get("Contents", [])}


def committed(root, run, spec=DATA, message="v1"):
    (root / "data").mkdir(exist_ok=True)
    gen(root / "data", spec)
    ok(run("add", "data"))
    ok(run("commit", "-m", message))
    git(root, "add", ".datavc/config.toml")
    git(root, "commit", "-qm", "remote", "--allow-empty")


def clone_of(root: Path, tmp_path: Path, run) -> Path:
    dest = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(dest))
    ok(run("init", cwd=dest))
    local = root / ".datavc/config.local.toml"
    if local.exists():
        shutil.copy(local, dest / ".datavc/config.local.toml")
    return dest


def test_push_then_pull_into_a_fresh_clone_gives_the_exact_bytes(root, run, remote, tmp_path):
    committed(root, run)
    doc = json.loads(ok(run("push", "--json")).out)
    local_ids = {p.parent.name + p.name for p in cache_objects(root)}
    assert doc["transferred"] == len(local_ids) and doc["missing"] == []
    assert remote_ids(remote) == local_ids
    clone = clone_of(root, tmp_path, run)
    doc = json.loads(ok(run("pull", "--json", cwd=clone)).out)
    assert doc["transferred"] == len(local_ids)
    assert read_tree(clone / "data") == read_tree(root / "data")
    assert "up to date" in ok(run("status", cwd=clone)).out


def test_only_missing_objects_move(root, run, remote):
    committed(root, run)
    ok(run("push"))
    again = json.loads(ok(run("push", "--json")).out)
    assert again["transferred"] == 0 and again["present"] > 0
    (root / "data/a").chmod(0o644)
    (root / "data/a").write_text("alpha two\n")
    ok(run("add", "data"))
    third = json.loads(ok(run("push", "--json")).out)
    # the new file, its listing and the top listing
    assert third["transferred"] == 2


def test_fetch_rev_gets_an_older_revision(root, run, remote, tmp_path):
    committed(root, run, message="v1")
    ok(run("push"))
    v1 = git(root, "rev-parse", "HEAD").strip()
    (root / "data/a").chmod(0o644)
    (root / "data/a").write_text("alpha two\n")
    ok(run("commit", "-m", "v2"))
    ok(run("push"))
    clone = clone_of(root, tmp_path, run)
    ok(run("fetch", "--rev", v1, cwd=clone))
    ok(run("checkout", "--rev", v1, "data", cwd=clone))
    assert (clone / "data/a").read_text() == "alpha\n"


def test_all_commits_pushes_every_revision(root, run, remote):
    committed(root, run, message="v1")
    (root / "data/a").chmod(0o644)
    (root / "data/a").write_text("alpha two\n")
    ok(run("commit", "-m", "v2"))
    ok(run("push"))  # the work tree only: v2
    doc = json.loads(ok(run("push", "--all-commits", "--json")).out)
    assert doc["transferred"] >= 2  # v1's copy of a and the listings above it


def test_a_corrupt_remote_object_is_never_stored(root, run, remote, tmp_path):
    if remote["kind"] != "dir":
        pytest.skip("the S3 variant is covered by the fault tests")
    committed(root, run)
    ok(run("push"))
    victim = next(p for p in (remote["path"] / "objects").glob("*/*")
                  if p.stat().st_size == len("alpha\n"))
    victim.chmod(0o644)
    victim.write_text("ALPHA\n")
    clone = clone_of(root, tmp_path, run)
    r = fails(run("pull", cwd=clone), 3)
    oid = "xxh128:" + victim.parent.name + victim.name
    assert oid in r.err
    assert not object_path(clone, oid).exists()
    assert not (clone / "data/a").exists()  # never checked out
    # the rest arrived and a fixed remote converges
    victim.write_text("alpha\n")
    ok(run("pull", cwd=clone))
    assert read_tree(clone / "data") == read_tree(root / "data")


def test_objects_missing_from_the_cache_are_reported_and_block_their_listings(root, run,
                                                                              remote):
    committed(root, run)
    wipe_cache(root)
    r = fails(run("push", "--json"), 1)
    doc = json.loads(r.out)
    assert doc["transferred"] == 0 and doc["missing"]
    assert remote_ids(remote) == set()


def test_a_listing_is_pushed_only_after_what_it_names(root, run, remote):
    """One file object missing: its listing and every listing above it stay local; the
    rest goes up, and a later push completes it."""
    committed(root, run)
    c = object_path(root, "xxh128:" + __import__("xxhash").xxh3_128_hexdigest(b"gamma\n"))
    saved = c.read_bytes()
    c.chmod(0o644)
    c.unlink()
    fails(run("push"), 1)
    listings = json.loads(ok(run("ls-manifest", "data.datavc", "--json")).out)
    top = json.loads((root / "data.datavc").read_text())["oid"]
    blocked = {top.split(":")[1]} | {e["oid"].split(":")[1] for e in listings
                                     if e["path"] in ("data/sub", "data/sub/deep")}
    assert not blocked & remote_ids(remote)
    c.write_bytes(saved)
    ok(run("push"))
    assert blocked <= remote_ids(remote)


def test_pull_never_overwrites_uncached_work(root, run, remote, tmp_path):
    committed(root, run)
    ok(run("push"))
    clone = clone_of(root, tmp_path, run)
    (clone / "data").mkdir()
    (clone / "data/a").write_text("my local edit\n")
    r = fails(run("pull", cwd=clone), 1)
    assert "data/a" in r.err
    assert (clone / "data/a").read_text() == "my local edit\n"


def test_no_remote_and_unknown_remote(root, run):
    committed(root, run)
    r = fails(run("push"), 1)
    assert "no default remote" in r.err
    fails(run("push", "-r", "nope"), 1)
    fails(run("push", "-j", "0", "-r", "nope"), 1)


def test_unreachable_s3_endpoint_is_exit_5(root, run, tmp_path, aws_env):  # noqa: F811
    from tests.s3server import free_port

    committed(root, run)
    ok(run("remote", "add", "dead", "s3://bucket/p", "--default"))
    ok(run("remote", "modify", "dead", "endpoint_url", f"http://127.0.0.1:{free_port()}"))
    r = fails(run("push"), 5)  # refused connections fail fast, retries included
    assert "127.0.0.1" in r.err


@pytest.mark.parametrize("cmd", ["push", "fetch", "pull"])
def test_help_has_examples(run, cmd):
    assert "Example" in ok(run(cmd, "--help")).out




def test_the_python_api_reads_from_the_remote_what_is_not_cached(root, run, remote):
    import datavc

    committed(root, run)
    v1 = git(root, "rev-parse", "HEAD").strip()
    ok(run("push"))
    wipe_cache(root)
    assert datavc.read_bytes("data/sub/deep/c", rev=v1, repo=str(root)) == b"gamma\n"
    with datavc.open("data/big", repo=str(root)) as f:
        assert f.read() == b"x" * 300_000
    # what was read is now cached, verified
    assert len(cache_objects(root)) >= 5


def test_status_remote_asks_the_remote_what_it_lacks(root, run, remote):
    committed(root, run)
    [st] = json.loads(ok(run("status", "--remote", "--json")).out)
    total = len(cache_objects(root))
    assert st["remote"] == "storage" and st["not_on_remote"] == total
    assert "not on remote storage" in ok(run("status", "--remote")).out
    ok(run("push"))
    [st] = json.loads(ok(run("status", "--remote", "storage", "--json")).out)
    assert st["not_on_remote"] == 0
    assert "everything is on remote storage" in ok(run("status", "--remote")).out
    [st] = json.loads(ok(run("status", "--json")).out)
    assert st["remote"] is None and st["not_on_remote"] is None


def test_pull_of_a_sub_path_fetches_only_that_subtree(root, run, remote, tmp_path):
    committed(root, run)
    ok(run("push"))
    clone = clone_of(root, tmp_path, run)
    doc = json.loads(ok(run("pull", "data/sub", "--json", cwd=clone)).out)
    # the top listing on the way, the listings of sub and sub/deep, and b and c
    assert doc["transferred"] == 5 and len(cache_objects(clone)) == 5
    assert read_tree(clone / "data") == {"sub": read_tree(root / "data/sub")}
    ok(run("pull", "data/big", cwd=clone))
    assert (clone / "data/big").read_bytes() == (root / "data/big").read_bytes()
    fails(run("pull", "data/nope", cwd=clone), 1)


def test_push_of_a_sub_path_pushes_its_subtree_but_no_listing_above_it(root, run, remote):
    committed(root, run)
    doc = json.loads(ok(run("push", "data/sub/deep", "--json")).out)
    assert doc["transferred"] == 2  # the listing of deep and c
    top = json.loads((root / "data.datavc").read_text())["oid"].split(":")[1]
    assert top not in remote_ids(remote)


# A directory remote with many objects goes through worker processes (parallel.copy_objects)
# when it stores each object on its own (pack = false; packs: tests/func/test_packs.py)
MANY = {f"d{i // 100}": {f"f{i:04d}": f"file {i}\n" * (i % 7 + 1) for i in range(i, i + 100)}
        for i in range(0, 700, 100)}


def dir_remote(root, run, tmp_path, *, pack: bool = False) -> Path:
    where = tmp_path / "remote"
    ok(run("remote", "add", "storage", str(where), "--default"))
    if not pack:
        ok(run("remote", "modify", "storage", "pack", "false"))
    return where


def test_many_objects_to_and_from_a_directory_remote(root, run, tmp_path):
    where = dir_remote(root, run, tmp_path)
    committed(root, run, MANY)
    doc = json.loads(ok(run("push", "--json")).out)
    local_ids = {p.parent.name + p.name for p in cache_objects(root)}
    assert doc["transferred"] == len(local_ids) > 700 and doc["missing"] == []
    on_remote = {p.parent.name + p.name: p for p in (where / "objects").glob("*/*")}
    assert set(on_remote) == local_ids
    for oid, path in on_remote.items():  # exactly the bytes each name says, read-only
        assert object_path(root, oid).read_bytes() == path.read_bytes()
        assert path.stat().st_mode & 0o222 == 0
    assert tmp_files(where / "tmp") == []
    assert json.loads(ok(run("push", "--json")).out)["transferred"] == 0
    clone = clone_of(root, tmp_path, run)
    doc = json.loads(ok(run("pull", "--json", cwd=clone)).out)
    assert doc["transferred"] == len(local_ids)
    assert read_tree(clone / "data") == read_tree(root / "data")
    assert tmp_files(clone / ".datavc/cache/tmp") == []


def test_many_objects_with_one_corrupt_or_missing_on_the_remote(root, run, tmp_path):
    where = dir_remote(root, run, tmp_path)
    committed(root, run, MANY)
    ok(run("push"))
    files = sorted(p for p in (where / "objects").glob("*/*") if p.read_bytes().startswith(b"file"))
    corrupt, gone = files[0], files[1]
    corrupt.chmod(0o644)
    corrupt.write_bytes(b"not " + corrupt.read_bytes())
    gone_bytes = gone.read_bytes()
    gone.unlink()
    clone = clone_of(root, tmp_path, run)
    r = fails(run("fetch", "--json", cwd=clone), 3)
    doc = json.loads(r.out)
    assert doc["corrupt"] == ["xxh128:" + corrupt.parent.name + corrupt.name]
    assert doc["missing"] == ["xxh128:" + gone.parent.name + gone.name]
    assert not object_path(clone, doc["corrupt"][0]).exists()
    assert len(cache_objects(clone)) == len(cache_objects(root)) - 2  # the rest arrived
    corrupt.write_bytes(object_path(root, doc["corrupt"][0]).read_bytes())
    gone.write_bytes(gone_bytes)
    ok(run("pull", cwd=clone))
    assert read_tree(clone / "data") == read_tree(root / "data")


def test_many_objects_with_a_corrupt_cache_object_push_nothing_wrong(root, run, tmp_path):
    where = dir_remote(root, run, tmp_path)
    committed(root, run, MANY)
    victim = next(p for p in cache_objects(root) if p.read_bytes().startswith(b"file"))
    victim.chmod(0o644)
    victim.write_bytes(b"X" + victim.read_bytes()[1:])
    r = fails(run("push"), 3)
    assert victim.parent.name + victim.name in r.err and "fsck" in r.err
    assert not (where / "objects" / victim.parent.name / victim.name).exists()
    assert tmp_files(where / "tmp") == []  # nothing of the failed batch is left


@pytest.mark.parametrize("when", ["tmp", "objects"])
def test_kill_9_during_a_many_object_push_leaves_no_wrong_object(root, run, tmp_path, when):
    import xxhash

    where = dir_remote(root, run, tmp_path)
    committed(root, run, MANY)
    push_killed_when(root, lambda: sum(1 for _ in (where / when).glob(
        "**/*" if when == "objects" else "*")) > 5)
    assert no_processes_left_in(root) == []  # workers and their fork server died with it
    for path in (where / "objects").glob("*/*"):  # whatever is there is exactly right
        assert xxhash.xxh3_128_hexdigest(path.read_bytes()) == path.parent.name + path.name
    ok(run("push"))
    assert {p.parent.name + p.name for p in (where / "objects").glob("*/*")} == \
        {p.parent.name + p.name for p in cache_objects(root)}
