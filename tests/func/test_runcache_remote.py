"""Stage outputs and run-cache entries on remotes, through the CLI in real git repositories,
against a directory remote and a real S3 endpoint (moto's server on 127.0.0.1): a teammate's
clone pulls the outputs the lock records, CI restores a run someone pushed instead of
executing it, `--run-cache` moves every entry, gc never leaves an entry without its outputs,
and a hostile entry on a remote is never trusted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import gen, git
from tests.func.helpers import fails, ok
from tests.func.test_pipeline import CAT, stage
from tests.func.test_runcache import log_lines, statuses
from tests.func.test_transfer import clone_of
from tests.s3server import aws_env, s3_bucket, s3_client, s3_server  # noqa: F401


@pytest.fixture
def pipe(root, run, remote):  # noqa: F811
    """a: raw -> data/a ; b: data/a -> data/b (param b.seed); a default remote; committed."""
    gen(root, {"cat.py": CAT, "raw": {"x": "x1", "y": "y1"},
               "params.toml": "[b]\nseed = 1\n"})
    (root / "datavc.toml").write_text(stage("a", ["raw"], "data/a")
                                      + stage("b", ["data/a"], "data/b",
                                              params=["params.toml:b.seed"]))
    (root / ".gitignore").write_text("runs.log\n")
    ok(run("trust"))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pipeline")
    return root


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)


def remote_runs(remote) -> set[str]:  # noqa: F811
    if remote["kind"] == "dir":
        return {p.parent.name + p.name for p in (remote["path"] / "runs").glob("*/*")}
    pages = remote["client"].get_paginator("list_objects_v2").paginate(
        Bucket=remote["bucket"], Prefix="proj/runs/")
    return {"".join(o["Key"].split("/")[-2:]) for page in pages for o in page.get("Contents", [])}


def put_remote_run(remote, key: str, data: bytes) -> None:  # noqa: F811
    if remote["kind"] == "dir":
        path = remote["path"] / "runs" / key[:2] / key[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        remote["client"].put_object(Bucket=remote["bucket"], Key=f"proj/runs/{key[:2]}/{key[2:]}",
                                    Body=data)


def get_remote_run(remote, key: str) -> bytes:  # noqa: F811
    if remote["kind"] == "dir":
        return (remote["path"] / "runs" / key[:2] / key[2:]).read_bytes()
    return remote["client"].get_object(Bucket=remote["bucket"],
                                       Key=f"proj/runs/{key[:2]}/{key[2:]}")["Body"].read()


def teammate(root: Path, tmp_path: Path, run) -> Path:
    clone = clone_of(root, tmp_path, run)
    ok(run("trust", cwd=clone))
    return clone


def test_outputs_and_their_runs_travel_with_push_and_pull(pipe, run, remote, tmp_path):  # noqa: F811
    assert statuses(run, cwd=pipe) == {"a": "ran", "b": "ran"}
    commit(pipe, "ran")
    doc = json.loads(ok(run("push", "--json", cwd=pipe)).out)
    assert doc["runs"] == 2 and doc["missing"] == []
    assert len(remote_runs(remote)) == 2
    clone = teammate(pipe, tmp_path, run)
    doc = json.loads(ok(run("pull", "--json", cwd=clone)).out)
    assert sorted(c["path"] for c in doc["checkout"]) == ["data/a", "data/b"]
    assert (clone / "data/b").read_bytes() == b"X1Y1"
    assert statuses(run, cwd=clone) == {"a": "up-to-date", "b": "up-to-date"}
    assert log_lines(clone) == []  # nothing ran in the clone
    assert json.loads(ok(run("check", "--json", cwd=clone)).out)["pinned"]


def test_ci_restores_a_run_pushed_from_another_branch(pipe, run, remote, tmp_path):  # noqa: F811
    ok(run("repro", cwd=pipe))
    commit(pipe, "main ran")
    git(pipe, "checkout", "-qb", "feature")
    (pipe / "params.toml").write_text("[b]\nseed = 2\n")
    assert statuses(run, cwd=pipe) == {"a": "up-to-date", "b": "ran"}
    commit(pipe, "feature ran")
    ok(run("push", cwd=pipe))
    git(pipe, "checkout", "-q", "main")
    ok(run("checkout", cwd=pipe))
    # CI on main: a fresh clone where a PR changes the param to what "feature" ran
    ci = teammate(pipe, tmp_path, run)
    ok(run("pull", cwd=ci))
    (ci / "params.toml").write_text("[b]\nseed = 2\n")
    r = ok(run("repro", "--json", cwd=ci))
    assert {s["name"]: s["status"] for s in json.loads(r.out)["stages"]} == \
        {"a": "up-to-date", "b": "restored"}
    assert "from the run-cache of remote" in r.err
    assert log_lines(ci) == []
    assert (ci / "data/b").read_bytes() == b"X1Y1"
    assert (ci / "datavc.lock").read_text() == git(pipe, "show", "feature:datavc.lock")
    # the fetched run is cached now: restoring it again needs no remote
    ok(run("remote", "remove", "storage", cwd=ci))
    (ci / "params.toml").write_text("[b]\nseed = 1\n")
    assert statuses(run, cwd=ci)["b"] == "ran"  # main's run of b: only its outputs came
    (ci / "params.toml").write_text("[b]\nseed = 2\n")
    assert statuses(run, cwd=ci)["b"] == "restored"
    assert log_lines(ci) == ["b"]


def test_push_run_cache_sends_every_run_and_fetch_brings_them(pipe, run, remote, tmp_path):  # noqa: F811
    ok(run("repro", cwd=pipe))
    for seed in (2, 3):
        (pipe / "params.toml").write_text(f"[b]\nseed = {seed}\n")
        ok(run("repro", cwd=pipe))
    commit(pipe, "seed 3")
    assert json.loads(ok(run("push", "--json", cwd=pipe)).out)["runs"] == 2
    assert len(remote_runs(remote)) == 2
    doc = json.loads(ok(run("push", "--run-cache", "--json", cwd=pipe)).out)
    assert doc["runs"] == 4  # a, and b for seeds 1, 2, 3
    assert len(remote_runs(remote)) == 4
    clone = teammate(pipe, tmp_path, run)
    doc = json.loads(ok(run("fetch", "--run-cache", "--json", cwd=clone)).out)
    assert doc["runs"] == 4
    # offline now: every earlier run restores from the local cache alone
    ok(run("remote", "remove", "storage", cwd=clone))
    ok(run("checkout", cwd=clone))
    for seed in (1, 2):
        (clone / "params.toml").write_text(f"[b]\nseed = {seed}\n")
        assert statuses(run, cwd=clone) == {"a": "up-to-date", "b": "restored"}
    assert log_lines(clone) == []


def runs_of_x1_and_x2_pushed(pipe, run):
    """Both stages run for x1, then for x2 (committed); every run-cache entry pushed."""
    ok(run("repro", cwd=pipe))
    (pipe / "raw/x").write_text("x2")
    ok(run("repro", cwd=pipe))
    commit(pipe, "x2")
    ok(run("push", "--run-cache", cwd=pipe))


def test_gc_never_leaves_an_entry_without_its_outputs(pipe, run, remote):  # noqa: F811
    runs_of_x1_and_x2_pushed(pipe, run)
    assert len(remote_runs(remote)) == 4
    doc = json.loads(ok(run("gc", "--workspace", "--grace", "0s", "--remote", "--yes",
                            "--json", cwd=pipe)).out)
    assert [r["runs"] for r in doc] == [2, 2]  # the x1 runs of a and b, here and there
    assert len(remote_runs(remote)) == 2
    (pipe / "raw/x").write_text("x1")
    ran = len(log_lines(pipe))
    r = ok(run("repro", "--json", cwd=pipe))
    assert {s["name"]: s["status"] for s in json.loads(r.out)["stages"]} == \
        {"a": "ran", "b": "ran"}  # their outputs were collected: they run, quietly
    assert "warning" not in r.err
    assert len(log_lines(pipe)) == ran + 2


def test_remote_gc_keeps_the_entries_of_outputs_the_grace_keeps(pipe, run, remote):  # noqa: F811
    runs_of_x1_and_x2_pushed(pipe, run)
    doc = json.loads(ok(run("gc", "--workspace", "--remote", "--yes", "--json",
                            cwd=pipe)).out)  # grace: 1 hour, everything here is fresh
    assert doc[1]["deleted"] == 0 and doc[1]["runs"] == 0 and doc[1]["recent"] > 0
    assert len(remote_runs(remote)) == 4


@pytest.mark.parametrize("damage", ["garbage", "other-key", "hostile-path", "other-outs",
                                    "missing-output"])
def test_a_hostile_remote_entry_is_never_trusted(pipe, run, remote, tmp_path, damage):  # noqa: F811
    ok(run("repro", cwd=pipe))
    x1_keys = set()
    ok(run("push", "--run-cache", cwd=pipe))
    x1_keys = remote_runs(remote)
    (pipe / "raw/x").write_text("x2")
    ok(run("repro", cwd=pipe))
    commit(pipe, "x2")
    ok(run("push", "--run-cache", cwd=pipe))
    keys = sorted(remote_runs(remote))
    entries = {k: json.loads(get_remote_run(remote, k)) for k in keys}
    target = next(k for k in x1_keys if "data/a" in entries[k]["outs"])
    clone = teammate(pipe, tmp_path, run)
    ok(run("pull", cwd=clone))
    (clone / "raw/x").write_text("x1")
    entry = entries[target]
    if damage == "garbage":
        data = b"\xff{not json"
    elif damage == "other-key":
        data = get_remote_run(remote, next(k for k in keys if k != target))
    elif damage == "hostile-path":
        entry["outs"] = {"../escape": entry["outs"]["data/a"]}
        data = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    elif damage == "other-outs":
        entry["outs"] = {"data/z": entry["outs"]["data/a"]}
        data = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    else:
        entry["outs"]["data/a"]["oid"] = "0" * 32
        data = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    put_remote_run(remote, target, data)
    r = ok(run("repro", "--json", cwd=clone))
    assert {s["name"]: s["status"] for s in json.loads(r.out)["stages"]} == \
        {"a": "ran", "b": "restored"}  # b's entry is intact
    assert "not restored from the remote run-cache" in r.err
    assert log_lines(clone) == ["a"]
    assert (clone / "data/b").read_bytes() == b"X1Y1"
    assert not (clone.parent / "escape").exists() and not (clone / "data/z").exists()


def test_check_names_stage_outputs_missing_on_the_remote(pipe, run, remote):  # noqa: F811
    ok(run("repro", cwd=pipe))
    commit(pipe, "ran")
    doc = json.loads(fails(run("check", "--json", cwd=pipe), 1).out)
    assert sorted(p["path"] for p in doc["problems"]
                  if p["problem"] == "not-on-remote") == ["data/a", "data/b"]
    ok(run("push", cwd=pipe))
    ok(run("check", cwd=pipe))


def test_unreachable_remote_means_running_not_failing(pipe, run, remote, tmp_path):  # noqa: F811
    if remote["kind"] != "dir":
        pytest.skip("one kind is enough")
    (tmp_path / "remote").write_text("not a directory")
    assert statuses(run, cwd=pipe) == {"a": "ran", "b": "ran"}
