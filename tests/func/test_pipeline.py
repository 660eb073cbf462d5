"""Pipelines through the CLI in real git repositories: repro, dry-run reasons, failures,
parallel runs, trust, dag, stage add, and stage outputs in the cache and in checkout."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import gen, git
from tests.func.helpers import age, fails, object_path, oid_of, ok

# cat.py OUT IN...: OUT = the inputs' bytes (files; directories walked in order), upper-cased,
# plus a line per run appended to runs.log (which is nobody's dependency)
CAT = """\
import os, sys
out, ins = sys.argv[1], sys.argv[2:]
data = b""
for p in ins:
    if os.path.isdir(p):
        for d, _, fs in sorted(os.walk(p)):
            for f in sorted(fs):
                data += open(os.path.join(d, f), "rb").read()
    else:
        data += open(p, "rb").read()
if os.path.exists("fail-" + os.path.basename(out)):
    sys.exit(3)
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
open(out, "wb").write(data.upper())
open("runs.log", "a").write(os.path.basename(out) + "\\n")
"""


def stage(name: str, ins: list[str], out: str, *, params: list[str] | None = None,
          extra: str = "") -> str:
    cmd = json.dumps([sys.executable, "cat.py", out, *ins])
    text = f"[stages.{name}]\ncmd = {cmd}\ndeps = {json.dumps(['cat.py', *ins])}\n"
    text += f"outs = {json.dumps([out])}\n"
    if params:
        text += f"params = {json.dumps(params)}\n"
    return text + extra + "\n"


def runs(root: Path) -> list[str]:
    log = root / "runs.log"
    out = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return out


@pytest.fixture
def pipe(root, run):
    """a: raw -> data/a ; b: data/a -> data/b ; c: other -> data/c (independent)."""
    gen(root, {"cat.py": CAT, "raw": {"x": "x1", "y": "y1"}, "other": "o1",
               "params.toml": "[b]\nseed = 1\nname = 'n'\n"})
    (root / "datavc.toml").write_text(
        stage("a", ["raw"], "data/a")
        + stage("b", ["data/a"], "data/b", params=["params.toml:b.seed"])
        + stage("c", ["other"], "data/c"))
    ok(run("trust"))
    return root


def repro_json(run, *args):
    return {s["name"]: s for s in json.loads(ok(run("repro", "--json", *args)).out)["stages"]}


def test_first_run_noop_and_touch(pipe, run):
    r = ok(run("repro"))
    assert "Ran stage 'a'" in r.out and "Ran stage 'b'" in r.out and "Ran stage 'c'" in r.out
    assert sorted(runs(pipe)) == ["a", "b", "c"]
    assert (pipe / "data/b").read_bytes() == b"X1Y1"
    lock = json.loads((pipe / "datavc.lock").read_text())
    assert lock["version"] == 1 and set(lock["stages"]) == {"a", "b", "c"}
    b = lock["stages"]["b"]
    assert b["params"] == {"params.toml:b.seed": 1}
    assert b["deps"]["data/a"] == lock["stages"]["a"]["outs"]["data/a"]["oid"]
    assert object_path(pipe, b["outs"]["data/b"]["oid"]).read_bytes() == b"X1Y1"
    assert set((pipe / "data/.gitignore").read_text().split()) == {"/a", "/b", "/c"}
    assert "Everything is up to date" in ok(run("repro")).out
    for p in [*(pipe / "raw").iterdir(), pipe / "other", pipe / "cat.py"]:
        p.touch()
    assert "Everything is up to date" in ok(run("repro")).out
    assert runs(pipe) == []


def test_changed_dep_reruns_only_downstream(pipe, run):
    ok(run("repro"))
    runs(pipe)
    (pipe / "raw/x").write_text("x2")
    st = repro_json(run)
    assert runs(pipe) == ["a", "b"]
    assert st["a"]["reasons"] == [{"kind": "dep", "path": "raw", "detail": "changed"}]
    assert st["c"]["status"] == "up-to-date"
    assert (pipe / "data/b").read_bytes() == b"X2Y1"


def test_output_unchanged_upstream_stops_the_rerun(pipe, run):
    ok(run("repro"))
    runs(pipe)
    (pipe / "raw/x").write_text("X1")  # upper-cased: data/a keeps its content
    ok(run("repro"))
    assert runs(pipe) == ["a"]


def test_changed_param_and_unrelated_param(pipe, run):
    ok(run("repro"))
    runs(pipe)
    (pipe / "params.toml").write_text("[b]\nseed = 1\nname = 'other'\n")
    assert "Everything is up to date" in ok(run("repro")).out
    (pipe / "params.toml").write_text("[b]\nseed = 2\nname = 'other'\n")
    st = repro_json(run, "--dry-run")
    assert st["b"]["status"] == "would-run"
    assert st["b"]["reasons"] == [{"kind": "param", "path": "params.toml:b.seed",
                                   "detail": "changed: 1 -> 2"}]
    ok(run("repro"))
    assert runs(pipe) == ["b"]


def test_a_changed_param_table_names_only_the_keys_that_changed(pipe, run):
    (pipe / "datavc.toml").write_text(stage("a", ["raw"], "data/a", params=["params.toml:b"]))
    ok(run("trust"))
    ok(run("repro"))
    (pipe / "params.toml").write_text("[b]\nname = 'n'\nseed = 2\nlr = 0.1\n")
    st = repro_json(run, "--dry-run")
    assert st["a"]["reasons"] == [{"kind": "param", "path": "params.toml:b",
                                   "detail": "changed: lr added, seed 1 -> 2"}]


def test_a_dependency_differing_from_its_manifest_is_warned_about(pipe, run):
    ok(run("add", "raw"))
    (pipe / "raw/x").write_text("edited")
    r = ok(run("repro"))
    assert r.err.count("dependency 'raw' differs from raw.datavc") == 1
    ok(run("add", "raw"))
    assert "differs" not in ok(run("repro")).err


def test_probe_dependencies(root, run):
    """A probe reruns its stage when what it prints changes, never otherwise; the run-cache
    knows its value; a failing probe fails its stage; untrusted, a probe is not run."""
    gen(root, {"cat.py": CAT, "table.txt": "v1\n",
               "probe.py": "import os, sys\nif not os.path.exists('table.txt'):\n"
                           "    sys.exit('no table')\n"
                           "sys.stdout.write(open('table.txt').read())\n"})
    probe_cmd = json.dumps([sys.executable, "probe.py"])
    (root / "datavc.toml").write_text(stage("a", [], "data/a",
                                            extra=f"probes = {{table = {probe_cmd}}}\n"))
    ok(run("trust"))
    assert repro_json(run)["a"]["status"] == "ran"
    probe = json.loads((root / "datavc.lock").read_text())["stages"]["a"]["probes"]["table"]
    assert probe == oid_of(b"v1\n")
    assert repro_json(run)["a"]["status"] == "up-to-date"
    (root / "table.txt").write_text("v2\n")
    st = repro_json(run, "--dry-run")["a"]
    assert st["status"] == "would-run"
    assert st["reasons"] == [{"kind": "probe", "path": "table", "detail": "changed"}]
    assert repro_json(run)["a"]["status"] == "ran"
    (root / "table.txt").write_text("v1\n")
    assert repro_json(run)["a"]["status"] == "restored"  # the key holds the probe's id
    runs(root)
    (root / "table.txt").unlink()  # the probe fails: the stage fails, naming it
    r = fails(run("repro"), 1)
    assert "probe 'table' failed: exited with status 1" in r.err and runs(root) == []
    # a fresh clone (untrusted): the dry run says the probe was not run, and runs nothing
    (root / "datavc.toml").write_text((root / "datavc.toml").read_text() + "\n")
    st = repro_json(run, "--dry-run")["a"]
    assert st["status"] == "would-run"
    assert st["reasons"][0]["kind"] == "probe" and "not trusted" in st["reasons"][0]["detail"]


def test_stage_add_with_a_probe(root, run):
    ok(run("stage", "add", "-n", "v", "-o", "out", "--shell", "--probe", "ver=echo 7",
           "--", "echo built > out"))
    assert repro_json(run)["v"]["status"] == "ran"
    assert json.loads((root / "datavc.lock").read_text())["stages"]["v"]["probes"] == \
        {"ver": oid_of(b"7\n")}
    fails(run("stage", "add", "-n", "w", "-o", "o2", "--probe", "novalue", "--", "true"), 2)


def test_status_says_which_stages_are_stale_and_why(pipe, run):
    out = ok(run("status")).out
    assert "Pipeline: 3 of 3 stage(s) stale" in out and "a: would run (never ran)" in out
    ok(run("repro"))
    assert "Pipeline: all 3 stage(s) up to date." in ok(run("status")).out
    (pipe / "params.toml").write_text("[b]\nseed = 5\nname = 'n'\n")
    out = ok(run("status")).out
    assert "Pipeline: 1 of 3 stage(s) stale" in out
    assert "b: would run (param 'params.toml:b.seed' changed: 1 -> 5)" in out
    assert json.loads(ok(run("status", "--json")).out) == []
    ok(run("add", "other"))
    assert "Pipeline" not in ok(run("status", "other")).out  # a target named: only targets


def test_changed_cmd_needs_trust_again_then_reruns(pipe, run):
    ok(run("repro"))
    runs(pipe)
    text = (pipe / "datavc.toml").read_text().replace('"data/c", "other"]',
                                                      '"data/c", "other", "raw"]')
    text = text.replace('deps = ["cat.py", "other"]', 'deps = ["cat.py", "other", "raw"]')
    (pipe / "datavc.toml").write_text(text)
    r = fails(run("repro"), 6)
    assert "not trusted" in r.err and "datavc trust" in r.err
    st = repro_json(run, "--dry-run")  # a dry run executes nothing: no trust needed
    kinds = {r["kind"] for r in st["c"]["reasons"]}
    assert kinds == {"cmd", "dep"}
    ok(run("trust"))
    ok(run("repro"))
    assert runs(pipe) == ["c"]


def test_deleted_or_modified_output_reruns(pipe, run):
    ok(run("repro"))
    runs(pipe)
    (pipe / "data/c").unlink()
    st = repro_json(run, "--dry-run")
    assert st["c"]["reasons"] == [{"kind": "out", "path": "data/c", "detail": "is missing"}]
    assert st["c"]["status"] == "would-restore"
    assert repro_json(run)["c"]["status"] == "restored"  # the run-cache has this run
    assert runs(pipe) == [] and (pipe / "data/c").read_bytes() == b"O1"
    (pipe / "data/c").unlink()
    ok(run("repro", "--no-run-cache"))
    assert runs(pipe) == ["c"]
    (pipe / "data/a").write_text("tampered")
    assert repro_json(run, "--dry-run")["a"]["reasons"][0]["detail"] == "was modified"


def test_failing_stage(pipe, run):
    ok(run("repro"))
    runs(pipe)
    before = json.loads((pipe / "datavc.lock").read_text())
    (pipe / "raw/x").write_text("x2")
    (pipe / "other").write_text("o2")
    (pipe / "fail-a").write_text("")
    r = fails(run("repro", "--json"), 1)
    assert "stage 'a' failed" in r.err and "exited with status 3" in r.err
    doc = {s["name"]: s["status"] for s in json.loads(r.out)["stages"]}
    assert doc == {"a": "failed", "b": "skipped", "c": "ran"}
    assert runs(pipe) == ["c"]
    after = json.loads((pipe / "datavc.lock").read_text())
    assert after["stages"]["a"] == before["stages"]["a"]
    assert after["stages"]["b"] == before["stages"]["b"]
    assert after["stages"]["c"] != before["stages"]["c"]
    (pipe / "fail-a").unlink()
    ok(run("repro"))
    assert runs(pipe) == ["a", "b"]


def test_a_stage_that_does_not_write_its_output_fails(root, run):
    gen(root, {"in": "i"})
    (root / "datavc.toml").write_text(
        f'[stages.lazy]\ncmd = {json.dumps([sys.executable, "-c", "pass"])}\n'
        'deps = ["in"]\nouts = ["never"]\n')
    ok(run("trust"))
    r = fails(run("repro"), 1)
    assert "stage 'lazy' failed" in r.err and "did not create output 'never'" in r.err
    assert not (root / "datavc.lock").exists()


def test_parallel_gives_the_same_lock(pipe, run):
    ok(run("repro", "-j", "1"))
    serial = (pipe / "datavc.lock").read_bytes()
    for p in ("datavc.lock", "data"):
        shutil.rmtree(pipe / p) if (pipe / p).is_dir() else (pipe / p).unlink()
    ok(run("repro", "-j", "2", "--no-run-cache"))
    assert sorted(runs(pipe)) == ["a", "a", "b", "b", "c", "c"]
    assert (pipe / "datavc.lock").read_bytes() == serial


def test_named_stage_runs_with_its_upstream_only(pipe, run):
    ok(run("repro", "b"))
    assert sorted(runs(pipe)) == ["a", "b"]
    fails(run("repro", "nope"), 2)


def test_force(pipe, run):
    ok(run("repro"))
    runs(pipe)
    ok(run("repro", "--force", "c"))
    assert runs(pipe) == ["c"]


def test_untrusted_clone_refuses_to_run(pipe, run, tmp_path):
    git(pipe, "add", "datavc.toml", "cat.py", "raw", "other", "params.toml", ".datavc")
    git(pipe, "commit", "-qm", "pipeline")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(pipe), str(clone))
    r = fails(run("repro", cwd=clone), 6)
    assert "not trusted" in r.err and "datavc trust" in r.err
    assert not (clone / "runs.log").exists()
    doc = json.loads(ok(run("trust", "--json", cwd=clone)).out)
    assert set(doc) == {"root", "digest", "trust_file"}
    assert Path(doc["trust_file"]).is_relative_to(tmp_path)  # XDG_CONFIG_HOME of the test
    ok(run("repro", cwd=clone))
    assert sorted(runs(clone)) == ["a", "b", "c"]


def test_outputs_are_checked_out_from_the_lock(pipe, run):
    ok(run("repro"))
    age(pipe / "data")
    (pipe / "data/b").unlink()
    ok(run("checkout"))
    assert (pipe / "data/b").read_bytes() == b"X1Y1"
    (pipe / "data/b").unlink()
    ok(run("checkout", "data/b"))
    assert (pipe / "data/b").read_bytes() == b"X1Y1"
    assert "Everything is up to date" in ok(run("repro")).out


def test_output_tracked_by_git_is_refused(pipe, run):
    (pipe / "data").mkdir()
    (pipe / "data/c").write_text("mine")
    git(pipe, "add", "data/c")
    r = fails(run("repro"), 1)
    assert "output 'data/c' of stage 'c' is tracked by git" in r.err


def test_unsafe_pipeline_is_refused(root, run, outside):
    (root / "datavc.toml").write_text(f'[stages.a]\ncmd = "x"\nouts = ["{outside}/x"]\n')
    fails(run("repro", "--dry-run"), 6)
    fails(run("trust"), 6)
    (root / "datavc.toml").write_text('[stages.a]\ncmd = "x"\ndeps = ["o"]\nouts = ["o"]\n')
    assert "cycle: a -> a" in fails(run("dag"), 6).err


def test_lock_of_unknown_version_is_refused(pipe, run):
    (pipe / "datavc.lock").write_text('{"stages": {}, "version": 99}\n')
    assert "version 99" in fails(run("repro", "--dry-run"), 6).err


def test_dag_formats(pipe, run):
    assert ok(run("dag")).out == "a\nb  <- a\nc\n"
    mermaid = ok(run("dag", "--format", "mermaid")).out
    assert mermaid.startswith("flowchart TD\n") and "s_a --> s_b" in mermaid
    assert '"a" -> "b";' in ok(run("dag", "--format", "dot")).out
    doc = json.loads(ok(run("dag", "--json")).out)
    assert doc["stages"] == [{"name": "a", "upstream": []}, {"name": "b", "upstream": ["a"]},
                             {"name": "c", "upstream": []}]
    assert doc["format"] == "text"
    fails(run("dag", "--format", "png"), 2)


def test_stage_add(root, run):
    gen(root, {"cat.py": CAT, "in": "i"})
    r = ok(run("stage", "add", "-n", "one", "-d", "in", "-d", "cat.py", "-o", "mid", "--",
               sys.executable, "cat.py", "mid", "in"))
    assert "Added stage 'one'" in r.out
    (root / "datavc.toml").write_text("# keep me\n" + (root / "datavc.toml").read_text())
    ok(run("trust"))
    ok(run("stage", "add", "-n", "two", "-d", "mid", "-o", "out", "--",
           sys.executable, "cat.py", "out", "mid"))
    text = (root / "datavc.toml").read_text()
    assert text.startswith("# keep me\n[stages.one]")
    assert "already exists" in fails(run("stage", "add", "-n", "two", "-o", "z", "--", "x"),
                                     2).err
    assert "same output" in fails(run("stage", "add", "-n", "three", "-o", "out", "--", "x"),
                                  6).err
    assert "cycle" in fails(run("stage", "add", "-n", "back", "-d", "out", "-o", "in", "--",
                                "x"), 6).err
    assert (root / "datavc.toml").read_text() == text
    ok(run("repro"))  # added by this user on a trusted pipeline: still trusted
    assert (root / "out").read_bytes() == b"I"
    assert sorted(runs(root)) == ["mid", "out"]


def test_stage_add_to_an_untrusted_pipeline_stays_untrusted(root, run):
    (root / "datavc.toml").write_text('[stages.a]\ncmd = "x"\nouts = ["o"]\n')
    r = ok(run("stage", "add", "-n", "b", "-d", "o", "-o", "p", "--", "y"))
    assert "not trusted" in r.out
    fails(run("repro"), 6)


def test_shell_stage(root, run):
    gen(root, {"in": "i"})
    ok(run("stage", "add", "-n", "sh", "-d", "in", "-o", "out", "--shell", "--",
           "cat in > out && echo done >&2"))
    ok(run("repro"))
    assert (root / "out").read_text() == "i"
    assert json.loads((root / "datavc.lock").read_text())["stages"]["sh"]["cmd"] == \
        "cat in > out && echo done >&2"
