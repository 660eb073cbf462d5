"""Reading history: `checkout --rev` and `ls [--rev]` read the manifests of any git revision
straight from git objects, never moving HEAD or touching the work-tree manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import gen, git, read_tree
from tests.func.helpers import fails, oid_of, ok, write_pointer

V1 = {"a": "a one\n", "b": "b one\n", "sub": {"c": "c one\n"}, "empty": {}}
V2 = {"a": "a two\n", "d": "d two\n", "sub": {"c": "c one\n"}, "empty": {}}
V3 = {"a": "a two\n", "d": "d two\n", "sub": {"c": "c three\n", "e": "e three\n"}}


def _set(root: Path, spec: dict) -> None:
    """Make data/ exactly ``spec`` (writable copies, whatever the link type)."""
    import shutil

    if (root / "data").exists():
        for p in (root / "data").rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(root / "data")
    (root / "data").mkdir()
    gen(root / "data", spec)


@pytest.fixture
def hist(root, run) -> Path:
    """data/ committed three times (V1, V2, V3), then the work tree at V3."""
    for n, spec in enumerate((V1, V2, V3), 1):
        _set(root, spec)
        ok(run("add", "data"))
        ok(run("commit", "-m", f"v{n}"))
    assert read_tree(root / "data") == _bytes(V3)
    return root


def _bytes(spec: dict) -> dict:
    return {k: _bytes(v) if isinstance(v, dict) else v.encode() for k, v in spec.items()}


def _head(root: Path) -> str:
    return git(root, "rev-parse", "HEAD").strip()


def test_checkout_rev_gives_the_exact_data_of_that_commit(hist, run):
    head, pointer = _head(hist), (hist / "data.datavc").read_bytes()
    ok(run("checkout", "--rev", "HEAD~2", "data"))
    assert read_tree(hist / "data") == _bytes(V1)
    assert _head(hist) == head
    assert git(hist, "status", "--porcelain") == ""
    assert (hist / "data.datavc").read_bytes() == pointer
    r = ok(run("status", "--json"))
    assert json.loads(r.out)[0]["state"] == "modified"  # against the work-tree manifest

    ok(run("checkout", "--rev", "HEAD~1"))  # every target tracked at HEAD~1
    assert read_tree(hist / "data") == _bytes(V2)
    ok(run("checkout", "--rev", git(hist, "rev-parse", "HEAD~2").strip()[:10]))
    assert read_tree(hist / "data") == _bytes(V1)

    ok(run("checkout"))  # back to the work-tree manifests
    assert read_tree(hist / "data") == _bytes(V3)
    assert json.loads(ok(run("status", "--json")).out)[0]["state"] == "clean"
    assert _head(hist) == head and git(hist, "status", "--porcelain") == ""


def test_checkout_rev_refuses_to_drop_an_uncached_edit(hist, run):
    (hist / "data" / "a").unlink()
    (hist / "data" / "a").write_text("precious local edit\n")
    r = fails(run("checkout", "--rev", "HEAD~2", "data"), 1)
    assert "data/a" in r.err + r.out
    assert (hist / "data" / "a").read_text() == "precious local edit\n"
    ok(run("checkout", "--rev", "HEAD~2", "data", "--force"))
    assert read_tree(hist / "data") == _bytes(V1)


@pytest.mark.parametrize("rev", ["nope", "HEAD~9", "HEAD:data.datavc"])
def test_checkout_unknown_revision_is_a_clear_error(hist, run, rev):
    before = read_tree(hist / "data")
    r = fails(run("checkout", "--rev", rev, "data"), 1)
    assert f"'{rev}'" in r.err and "git log --oneline" in r.err
    assert read_tree(hist / "data") == before


def test_checkout_rev_of_a_target_not_tracked_there(hist, run):
    gen(hist, {"m.bin": "model\n"})
    ok(run("add", "m.bin"))
    r = fails(run("checkout", "--rev", "HEAD~1", "m.bin"), 1)
    assert "m.bin" in r.err and "HEAD" not in r.out


@pytest.mark.parametrize("doc", ['{"datavc": 99, "kind": "dir"}\n', "{not json\n",
                                 '{"datavc": 1, "kind": "dir", "oid": "xxh128:zz", '
                                 '"size": 0, "nfiles": 0}\n', "x" * 70000])
def test_hostile_pointer_in_history_is_refused(hist, run, doc):
    good = (hist / "data.datavc").read_bytes()
    write_pointer(hist, "data", doc)
    git(hist, "commit", "-qam", "hostile")
    (hist / "data.datavc").write_bytes(good)
    git(hist, "commit", "-qam", "repaired")
    before = read_tree(hist / "data")
    for args in (["checkout", "--rev", "HEAD~1", "data"], ["checkout", "--rev", "HEAD~1"],
                 ["ls", "--rev", "HEAD~1"]):
        r = fails(run(*args), 6)
        assert "data.datavc" in r.err
    assert read_tree(hist / "data") == before


def test_unsafe_manifest_name_in_history_is_refused(hist, run):
    gen(hist, {"x": {".git.datavc": "{}\n"}})
    git(hist, "add", "-f", "x/.git.datavc")
    git(hist, "commit", "-qm", "hostile name")
    git(hist, "rm", "-q", "x/.git.datavc")
    git(hist, "commit", "-qm", "repaired")
    fails(run("checkout", "--rev", "HEAD~1"), 6)
    ok(run("checkout", "--rev", "HEAD"))


# --- ls -----------------------------------------------------------------------------------


def _rows(spec: dict, prefix: str = "data") -> list[tuple[str, str, int]]:
    out = []
    for name, value in spec.items():
        if isinstance(value, dict):
            out += _rows(value, f"{prefix}/{name}")
        else:
            out.append((f"{prefix}/{name}", oid_of(value.encode()), len(value.encode())))
    return sorted(out)


def test_ls_text_of_work_tree_and_of_a_revision(hist, run):
    def parse(out: str) -> list[tuple[str, str, int]]:
        rows = []
        for line in out.splitlines():
            oid, size, path = line.split("  ")
            rows.append((path, oid, int(size)))
        return rows

    assert parse(ok(run("ls")).out) == _rows(V3)
    assert parse(ok(run("ls", "data")).out) == _rows(V3)
    assert parse(ok(run("ls", "--rev", "HEAD~2")).out) == _rows(V1)
    assert parse(ok(run("ls", "data", "--rev", "HEAD~1")).out) == _rows(V2)
    assert read_tree(hist / "data") == _bytes(V3)  # nothing checked out
    fails(run("ls", "--rev", "nope"), 1)
    fails(run("ls", "nothing"), 1)


def test_ls_json_shape(hist, run):
    gen(hist, {"run.sh": "#!/bin/sh\n"})
    (hist / "run.sh").chmod(0o755)
    ok(run("add", "run.sh"))
    docs = json.loads(ok(run("ls", "--json")).out)
    assert all(set(d) == {"path", "kind", "oid", "size", "executable"} for d in docs)
    assert [(d["path"], d["oid"], d["size"]) for d in docs] == sorted(
        _rows(V3) + [("run.sh", oid_of(b"#!/bin/sh\n"), 10)])
    assert {d["kind"] for d in docs} == {"file"}
    assert [d["executable"] for d in docs if d["path"] == "run.sh"] in ([True], [False])
    assert not any(d["executable"] for d in docs if d["path"] != "run.sh")
    assert json.loads(ok(run("ls", "--json", "--rev", "HEAD")).out) == [
        d for d in docs if d["path"] != "run.sh"]


def test_ls_parquet_round_trips(hist, run, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "files.parquet"
    r = ok(run("ls", "--rev", "HEAD~2", "--parquet", str(out)))
    assert "files.parquet" in r.out
    table = pq.read_table(out)
    assert table.schema.names == ["path", "kind", "oid", "size", "executable"]
    assert [f.type for f in table.schema] == [pa.string(), pa.string(), pa.string(),
                                              pa.int64(), pa.bool_()]
    rows = table.to_pylist()
    assert [(d["path"], d["oid"], d["size"]) for d in rows] == _rows(V1)
    assert rows == json.loads(ok(run("ls", "--rev", "HEAD~2", "--json")).out)
    assert not [p for p in tmp_path.iterdir() if p.name != "files.parquet" and
                p.name.startswith(".") and "parquet" in p.name]
