"""datavc.toml and datavc.lock: parsing, strict validation, the graph, the lock round trip."""

from __future__ import annotations

import json

import pytest

from datavc import pipeline, stagelock
from datavc.errors import InvalidInputError, UnknownFormatError, UnsafePathError, UsageError
from datavc.hashing import hash_bytes
from datavc.stagelock import OutLock, StageLock


def load(text: str) -> pipeline.Pipeline:
    return pipeline.loads(text.encode())


CHAIN = """
[stages.train]
cmd = "python train.py data/features model.bin"
deps = ["train.py", "data/features"]
outs = ["model.bin"]

[stages.features]
cmd = ["python", "features.py"]
deps = ["data/raw"]
outs = ["data/features"]
params = ["params.toml:features", "params.toml:train.seed"]
"""


def test_parse_a_chain_in_dependency_order():
    pipe = load(CHAIN)
    assert pipe.order == ("features", "train")
    assert pipe.upstream == {"train": ("features",), "features": ()}
    features = pipe.stages["features"]
    assert features.cmd == ("python", "features.py") and not features.shell
    assert [p.keys for p in features.params] == [("features",), ("train", "seed")]
    assert pipe.stages["train"].argv() == ["python", "train.py", "data/features", "model.bin"]
    assert pipe.downstream("features") == ["train"]
    assert pipe.closure(["train"]) == ["features", "train"]
    assert pipe.closure(["features"]) == ["features"]
    with pytest.raises(UsageError, match="no stage named 'nope'"):
        pipe.closure(["nope"])


def test_a_dep_inside_an_output_directory_is_an_edge():
    pipe = load('[stages.a]\ncmd = "x"\nouts = ["d"]\n[stages.b]\ncmd = "y"\ndeps = ["d/f"]\n')
    assert pipe.upstream["b"] == ("a",)


def test_shell_keeps_the_string():
    pipe = load('[stages.a]\ncmd = "echo hi > out"\nshell = true\nouts = ["out"]\n')
    assert pipe.stages["a"].argv() == "echo hi > out"


@pytest.mark.parametrize(("text", "match"), [
    ('[stages.a]\ncmd = "x"\nouts = ["o"]\n[stages.b]\ncmd = "y"\nouts = ["o"]\n',
     "stages 'a' and 'b' declare the same output"),
    ('[stages.a]\ncmd = "x"\nouts = ["o"]\n[stages.b]\ncmd = "y"\nouts = ["o/p"]\n',
     "stages 'a' and 'b' declare overlapping outputs"),
    ('[stages.a]\ncmd = "x"\ndeps = ["q"]\nouts = ["p"]\n'
     '[stages.b]\ncmd = "y"\ndeps = ["p"]\nouts = ["q"]\n', "cycle: a -> b -> a"),
    ('[stages.a]\ncmd = "x"\ndeps = ["p"]\nouts = ["p"]\n', "cycle: a -> a"),
    ('[stages.a]\ncmd = "x"\nbogus = 1\n', "unknown key"),
    ('[stages.a]\ncmd = ""\n', "'cmd' must be"),
    ('[stages.a]\ncmd = 3\n', "'cmd' must be"),
    ('[stages.a]\ncmd = "x \'unclosed"\n', "cannot split"),
    ('[stages.a]\ncmd = "x"\nshell = "yes"\n', "'shell'"),
    ('[stages.a]\ncmd = "x"\ndeps = "d"\n', "'deps' must be a list"),
    ('[stages.a]\ncmd = "x"\nparams = ["nocolon"]\n', "FILE:SECTION"),
    ('[stages.a]\ncmd = "x"\nparams = ["p.toml:a..b"]\n', "malformed param key"),
    ('[stages."bad name"]\ncmd = "x"\n', "invalid stage name"),
    ('[stages.a]\ncmd = "x"\nprobes = ["v"]\n', "'probes' must be a table"),
    ('[stages.a]\ncmd = "x"\nprobes = {"a b" = "v"}\n', "invalid probe name"),
    ('[stages.a]\ncmd = "x"\nprobes = {v = ""}\n', "probe 'v': 'cmd' must be"),
    ('[stages.a]\ncmd = "x"\nprobes = {v = 3}\n', "probe 'v': 'cmd' must be"),
    ('[stages.a]\ncmd = "x"\n[stages.a.probes]\n' + "".join(f"p{i} = 'x'\n"
                                                             for i in range(65)),
     "more than 64 probes"),
    ('stages = 1\n', "must be a table"),
    ('[other]\n', "unknown top-level"),
    ('[stages.a\n', "not valid TOML"),
])
def test_invalid_pipelines_are_refused(text, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        load(text)
    assert info.value.exit_code == 6


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../b", ".git/hooks/x",
                                  ".DATAVC/cache", "C:/x", "a//b"])
def test_unsafe_paths_are_refused(path):
    for key in ("deps", "outs"):
        with pytest.raises(UnsafePathError):
            load(f'[stages.a]\ncmd = "x"\n{key} = ["{path}"]\n')
    with pytest.raises(UnsafePathError):
        load(f'[stages.a]\ncmd = "x"\nparams = ["{path}:k"]\n')


def test_size_is_bounded():
    with pytest.raises(InvalidInputError, match="larger than"):
        pipeline.loads(b"#" * (pipeline.MAX_BYTES + 1))


def test_param_value_lookup():
    p = pipeline.Param.parse("params.toml:train.seed", where="t")
    assert p.value({"train": {"seed": 3}}, where="t") == 3
    with pytest.raises(InvalidInputError, match="not found"):
        p.value({"train": {}}, where="t")


def test_append_stage_keeps_the_file_and_round_trips():
    text = "# my pipeline\n" + CHAIN
    stage = pipeline.Stage("eval", ("python", "eval.py", 'a "b"'), ("model.bin",),
                           ("metrics.json",), (pipeline.Param.parse("p.toml:e", where="t"),))
    new = pipeline.append_stage(text, stage)
    assert new.startswith(text)
    pipe = load(new)
    assert pipe.stages["eval"] == stage and pipe.order == ("features", "train", "eval")


@pytest.mark.parametrize("fmt", ["text", "mermaid", "dot"])
def test_render(fmt):
    out = pipeline.render(load(CHAIN), fmt)
    assert "features" in out and "train" in out and out.endswith("\n")
    if fmt == "mermaid":
        assert "s_features --> s_train" in out
    if fmt == "dot":
        assert '"features" -> "train";' in out


def test_mermaid_ids_are_safe():
    assert pipeline._mid("a.b-c") == "s_a_2e_b_2d_c"


# ---------------------------------------------------------------- datavc.lock

def sample_lock() -> dict[str, StageLock]:
    oid = hash_bytes(b"x")
    return {"b": StageLock(["python", "b.py"], {"d": oid}, {"p.toml:k": [1, "two"]},
                           {"o": OutLock("dir", oid, 3, 2)}),
            "a": StageLock("run a", {}, {}, {})}


def test_probes_parse_and_round_trip_through_stage_add():
    stage = pipeline.Stage("users", "python export.py", (), ("users.csv",),
                           probes=(pipeline.Probe("table", "sqlite3 app.db 'select 1'"),
                                   pipeline.Probe("api", ("curl", "-s", "http://x/v"))))
    pipe = load(pipeline.append_stage("", stage))
    got = pipe.stages["users"]
    assert {p.name: p.cmd for p in got.probes} == {p.name: p.cmd for p in stage.probes}
    assert [p.name for p in got.probes] == ["api", "table"]  # sorted: a stable order


def test_lock_probes_round_trip_and_are_absent_without_probes():
    lock = sample_lock()
    assert "probes" not in json.loads(stagelock.dumps(lock))["stages"]["a"]
    with_probes = {**lock, "a": StageLock(lock["a"].cmd, lock["a"].deps, lock["a"].params,
                                          lock["a"].outs, {"table": hash_bytes(b"42\n")})}
    data = stagelock.dumps(with_probes)
    assert stagelock.loads(data) == with_probes
    doc = json.loads(data)
    doc["stages"]["a"]["probes"] = {"bad name": str(hash_bytes(b""))}
    with pytest.raises(InvalidInputError, match="probe"):
        stagelock.loads(json.dumps(doc).encode())
    doc["stages"]["a"]["probes"] = {"table": "xxh128:zz"}
    with pytest.raises(InvalidInputError):
        stagelock.loads(json.dumps(doc).encode())


def test_lock_round_trip_and_determinism():
    lock = sample_lock()
    data = stagelock.dumps(lock)
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    assert stagelock.loads(data) == lock
    assert stagelock.dumps(dict(reversed(list(lock.items())))) == data
    doc = json.loads(data)
    assert doc["version"] == 1 and list(doc["stages"]) == ["a", "b"]
    assert data.decode() == json.dumps(doc, indent=2, sort_keys=True) + "\n"


def test_lock_unknown_version_is_refused():
    doc = json.loads(stagelock.dumps(sample_lock()))
    doc["version"] = 2
    with pytest.raises(UnknownFormatError) as info:
        stagelock.loads(json.dumps(doc).encode())
    assert info.value.exit_code == 6


@pytest.mark.parametrize("mutate", [
    lambda d: d["stages"]["b"].pop("cmd"),
    lambda d: d["stages"]["b"]["deps"].update({"../x": d["stages"]["b"]["deps"]["d"]}),
    lambda d: d["stages"]["b"]["deps"].update({"d": "xxh128:zz"}),
    lambda d: d["stages"]["b"]["outs"]["o"].update({"kind": "link"}),
    lambda d: d["stages"]["b"]["outs"]["o"].update({"size": -1}),
    lambda d: d["stages"].update({"bad name": d["stages"]["a"]}),
    lambda d: d.update({"extra": 1}),
])
def test_hostile_locks_are_refused(mutate):
    doc = json.loads(stagelock.dumps(sample_lock()))
    mutate(doc)
    with pytest.raises(InvalidInputError):
        stagelock.loads(json.dumps(doc).encode())


def test_lock_garbage_is_refused():
    for data in (b"not json", b"[]", b"\xff", b" " * (stagelock.MAX_BYTES + 1)):
        with pytest.raises(InvalidInputError):
            stagelock.loads(data)
