"""`datavc add`: what a user points it at, and what it leaves behind."""

from __future__ import annotations

import json
import os
import stat

import msgpack
import pytest

from tests.conftest import gen, git, read_tree
from tests.func.helpers import age, cache_objects, fails, object_path, oid_of, ok, tmp_files


def add_json(run, *args, cwd=None):
    return json.loads(ok(run("add", "--json", *args, cwd=cwd)).out)


def ls(run, pointer):
    return {row["path"]: row for row in json.loads(ok(run("ls-manifest", "--json", pointer)).out)}


def test_add_directory_with_trailing_slash(root, run):
    gen(root, {"data": {"a.txt": "a", "sub": {"b.txt": "bb"}}})
    [res] = add_json(run, "data/")
    assert res["path"] == "data" and res["pointer"] == "data.datavc"
    assert res["kind"] == "dir" and res["nfiles"] == 2 and res["size"] == 3
    assert res["changed"] is True and res["hashed"] == 2 and res["skipped"] == []
    assert res["oid"].startswith("xxh128:") and len(res["oid"]) == 7 + 32
    pointer = json.loads((root / "data.datavc").read_text())
    assert pointer == {"datavc": 1, "kind": "dir", "oid": res["oid"], "size": 3, "nfiles": 2}
    assert (root / "data.datavc").read_text().endswith("}\n")
    assert not (root / "data/.datavc").exists() and not (root / "data/.gitignore").exists()
    assert "/data" in (root / ".gitignore").read_text().splitlines()


def test_add_text_output(root, run):
    gen(root, {"data": {"a": "xx", "b": "yy"}, "one.bin": b"1234"})
    r = ok(run("add", "data", "one.bin"))
    lines = r.out.splitlines()
    assert lines[0].startswith("Added data: 2 files, 4 B -> data.datavc (xxh128:")
    assert lines[1].startswith("Added one.bin: 4 B -> one.bin.datavc (xxh128:")


def test_add_nested_dirs_empty_dirs_and_empty_files(root, run):
    gen(root, {"data": {"x": {"y": {"z": {"deep.txt": "deep"}}, "empty.txt": ""}}})
    (root / "data/empty_dir/inner_empty").mkdir(parents=True)
    [res] = add_json(run, "data")
    assert res["nfiles"] == 2 and res["size"] == 4
    rows = ls(run, "data.datavc")
    assert rows["data/x/y/z/deep.txt"]["kind"] == "file"
    assert rows["data/x/empty.txt"]["size"] == 0
    assert rows["data/x/empty.txt"]["oid"] == oid_of(b"")
    assert rows["data/empty_dir"]["kind"] == "dir"
    assert rows["data/empty_dir/inner_empty"]["nfiles"] == 0
    assert object_path(root, oid_of(b"deep")).read_bytes() == b"deep"


def test_add_single_file(root, run):
    (root / "model.bin").write_bytes(b"\0weights" * 100)
    [res] = add_json(run, "model.bin")
    assert res["kind"] == "file" and res["nfiles"] == 1 and res["size"] == 800
    assert res["oid"] == oid_of(b"\0weights" * 100)
    assert object_path(root, res["oid"]).read_bytes() == b"\0weights" * 100
    assert "/model.bin" in (root / ".gitignore").read_text().splitlines()
    assert (root / "model.bin").read_bytes() == b"\0weights" * 100


def test_cache_objects_are_read_only(root, run):
    gen(root, {"data": {"a": "a", "b": "b"}})
    ok(run("add", "data"))
    objs = cache_objects(root)
    assert len(objs) == 3  # two files and one listing
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o222 == 0 for p in objs)


def test_add_records_the_executable_bit(root, run):
    gen(root, {"data": {"run.sh": "#!/bin/sh\n", "plain.txt": "p"}})
    os.chmod(root / "data/run.sh", 0o755)
    ok(run("add", "data"))
    rows = ls(run, "data.datavc")
    assert rows["data/run.sh"]["mode"] == "0o755"
    assert rows["data/plain.txt"]["mode"] == "0o644"
    # dropping the bit is a change
    os.chmod(root / "data/run.sh", 0o644)
    [st] = json.loads(ok(run("status", "--json")).out)
    assert st["state"] == "modified"
    assert [c["path"] for c in st["changes"]] == ["data/run.sh"]


def test_non_utf8_names(root, run):
    os.makedirs(os.path.join(os.fsencode(root), b"data", b"sub\xff"))
    with open(os.path.join(os.fsencode(root), b"data", b"sub\xff", b"f\xe9.bin"), "wb") as f:
        f.write(b"latin-1 name")
    with open(os.path.join(os.fsencode(root), b"raw\xfe"), "wb") as f:
        f.write(b"raw")
    age(root / ".git" / "index")  # the git-index memo then records these names too
    ok(run("add", "data", os.fsdecode(b"raw\xfe")))
    ok(run("add", "data", os.fsdecode(b"raw\xfe")))  # and reads them back
    assert os.path.exists(os.path.join(os.fsencode(root), b"raw\xfe.datavc"))
    ignore = (root / ".gitignore").read_bytes().splitlines()
    assert b"/raw\xfe" in ignore
    rows = json.loads(ok(run("ls-manifest", "--json", "data.datavc")).out)
    assert [r["name"] for r in rows] == [os.fsdecode(b"sub\xff"), os.fsdecode(b"f\xe9.bin")]
    before = read_tree(root / "data")
    for p in (root / "data").rglob("*"):
        if p.is_file():
            p.unlink()
    ok(run("checkout", "data"))
    assert read_tree(root / "data") == before
    assert "Data and manifests are up to date." in ok(run("status")).out
    porcelain = git(root, "status", "--porcelain").splitlines()
    assert not any(line.startswith("?? data/") for line in porcelain)


def test_readd_unchanged_hashes_nothing(root, run):
    gen(root, {"data": {"a": "a" * 100, "s": {"b": "b"}}, "f.bin": "f"})
    age(root / "data")
    age(root / "f.bin")
    first = add_json(run, "data", "f.bin")
    assert [r["hashed"] for r in first] == [2, 1]
    again = add_json(run, "data", "f.bin")
    assert [(r["hashed"], r["changed"]) for r in again] == [(0, False), (0, False)]
    assert [r["oid"] for r in again] == [r["oid"] for r in first]
    r = ok(run("add", "data"))
    assert r.out.startswith("Unchanged data: 2 files")


def test_readd_after_edit_hashes_only_the_changed_file(root, run):
    gen(root, {"data": {f"f{i}": str(i) for i in range(10)}})
    age(root / "data")
    ok(run("add", "data"))
    (root / "data/f3").write_text("three")
    [res] = add_json(run, "data")
    assert res["hashed"] == 1 and res["changed"] is True


def test_add_path_tracked_by_git_is_refused(root, run):
    gen(root, {"data": {"a": "a", "b": "b"}})
    git(root, "add", "data/a")
    r = fails(run("add", "data"), 1)
    assert "already tracked by git" in r.err and "data/a" in r.err
    assert "git rm -r --cached 'data'" in r.err
    assert not (root / "data.datavc").exists()
    git(root, "rm", "-r", "-q", "--cached", "data")
    ok(run("add", "data"))


def test_a_re_add_asks_git_again_once_the_index_changed(root, run):
    gen(root, {"data": {"a": "a", "b": "b"}, "other": "x"})
    git(root, "add", "other")
    age(root / ".git" / "index")  # old enough for its stat to be trusted
    ok(run("add", "data"))  # git tracks nothing there: remembered for this index
    memo = msgpack.unpackb((root / ".datavc/state/gitindex").read_bytes())
    assert memo["clear"] == ["data"]
    ok(run("add", "data"))  # answered from the memo (git is not loaded)
    git(root, "add", "-f", "data/a")  # the index is written anew: the memo no longer holds
    age(root / ".git" / "index")  # (even once the new index is old enough to be trusted)
    r = fails(run("add", "data"), 1)
    assert "already tracked by git" in r.err and "data/a" in r.err


def test_a_re_add_with_an_unchanged_index_does_not_load_git(root, run):
    gen(root, {"data": {"a": "a"}})
    git(root, "add", ".datavc")
    age(root / ".git" / "index")
    r = run("add", "data", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert r.code == 0 and "pygit2" in r.err  # asked git, and remembered the answer
    r = run("add", "data", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert r.code == 0 and "pygit2" not in r.err


def test_add_nonexistent_path(root, run):
    r = fails(run("add", "nope"), 1)
    assert "'nope' does not exist" in r.err
    assert not (root / "nope.datavc").exists()
    assert not (root / ".gitignore").exists()


def test_add_one_good_one_missing_adds_nothing(root, run):
    (root / "good").write_text("g")
    fails(run("add", "good", "missing"), 1)
    assert not (root / "good.datavc").exists()


@pytest.mark.parametrize("args", [("data", "data/sub"), ("data/sub", "data")])
def test_overlapping_targets_in_one_command_are_refused(root, run, args):
    gen(root, {"data": {"sub": {"x": "x"}, "y": "y"}})
    r = fails(run("add", *args), 1)
    assert "overlaps" in r.err
    assert not (root / "data.datavc").exists() and not (root / "data/sub.datavc").exists()


def test_overlapping_an_already_tracked_target_is_refused(root, run):
    gen(root, {"data": {"sub": {"x": "x"}, "y": "y"}})
    ok(run("add", "data/sub"))
    r = fails(run("add", "data"), 1)
    assert "'data' overlaps 'data/sub'" in r.err
    assert "hint:" in r.err


def test_a_pointer_deep_inside_a_new_target_is_found_and_nothing_is_recorded(root, run):
    gen(root, {"first": {"f": "f"}, "data": {"a": {"b": {"x": "x"}}, "y": "y"}})
    ok(run("add", "data/a/b"))
    r = fails(run("add", "first", "data"), 1)
    assert "'data' overlaps 'data/a/b'" in r.err
    assert not (root / "first.datavc").exists() and not (root / "data.datavc").exists()
    assert ok(run("status", "--json")).out.count('"path"') == 1  # data/a/b alone


def test_gitignore_entries_are_idempotent_and_per_directory(root, run):
    gen(root, {"a.bin": "a", "sub": {"b.bin": "b"}})
    (root / ".gitignore").write_text("*.log")  # no trailing newline: must be preserved
    ok(run("add", "a.bin", "sub/b.bin"))
    ok(run("add", "a.bin", "sub/b.bin"))
    (root / "a.bin").write_text("changed")
    ok(run("add", "a.bin"))
    assert (root / ".gitignore").read_text() == "*.log\n/a.bin\n"
    assert (root / "sub/.gitignore").read_text() == "/b.bin\n"
    porcelain = git(root, "status", "--porcelain").splitlines()
    assert "?? a.bin" not in porcelain and "?? sub/b.bin" not in porcelain


SPECIAL_NAMES = ["star*name", "#hash", "with space", "trailing ", "!bang", "q?[ab]"]


def test_gitignore_escapes_special_characters(root, run):
    for name in SPECIAL_NAMES:
        (root / name).write_text("content")
    (root / "stary-other").write_text("not ignored")  # what an unescaped * would match
    (root / "qa").write_text("not ignored")  # what an unescaped ?[ab] would match
    ok(run("add", *SPECIAL_NAMES))
    lines = (root / ".gitignore").read_text().splitlines()
    assert len(lines) == len(SPECIAL_NAMES) and all(line.startswith("/") for line in lines)
    out = git(root, "status", "--porcelain", "--ignored", "-z", "--untracked-files=all")
    entries = [e for e in out.split("\0") if e]
    for name in SPECIAL_NAMES:
        assert f"!! {name}" in entries, name
        assert f"?? {name}.datavc" in entries, name
    assert "?? stary-other" in entries and "?? qa" in entries


def test_symlinks_and_fifos_inside_a_dataset_are_skipped_with_a_warning(root, run, outside):
    gen(root, {"data": {"real.txt": "real"}})
    os.symlink(outside, root / "data/link_dir")
    os.symlink(outside / "x", root / "data/link_file")
    os.mkfifo(root / "data/pipe")
    r = ok(run("add", "--json", "data"))
    [res] = json.loads(r.out)
    assert res["nfiles"] == 1
    assert {(s["path"], s["reason"]) for s in res["skipped"]} == {
        ("data/link_dir", "symlink"), ("data/link_file", "symlink"),
        ("data/pipe", "not a regular file")}
    for path in ("data/link_dir", "data/link_file", "data/pipe"):
        assert f"warning: not tracked: '{path}'" in r.err
    assert list(ls(run, "data.datavc")) == ["data/real.txt"]


def test_unportable_names_inside_a_dataset_are_skipped(root, run):
    gen(root, {"data": {"ok.txt": "ok", "back\\slash": "b", ".git": {"config": "c"}}})
    [res] = add_json(run, "data")
    assert {s["path"] for s in res["skipped"]} == {"data/back\\slash", "data/.git"}
    assert res["nfiles"] == 1


def test_add_from_a_subdirectory_with_relative_paths(root, run):
    gen(root, {"proj": {"sub": {"data": {"f": "f"}, "m.bin": "m"}}})
    cwd = root / "proj/sub"
    res = add_json(run, "data", "./m.bin", cwd=cwd)
    assert [r["path"] for r in res] == ["proj/sub/data", "proj/sub/m.bin"]
    assert (cwd / "data.datavc").is_file() and (cwd / "m.bin.datavc").is_file()
    assert (cwd / ".gitignore").read_text() == "/data\n/m.bin\n"
    # and from a sibling, with ..
    (root / "proj/other").mkdir()
    [again] = add_json(run, "../sub/data", cwd=root / "proj/other")
    assert again["path"] == "proj/sub/data" and again["changed"] is False


def test_add_pointer_name_means_the_target(root, run):
    gen(root, {"data": {"f": "f"}})
    ok(run("add", "data"))
    (root / "data/g").write_text("g")
    [res] = add_json(run, "data.datavc")
    assert res["path"] == "data" and res["nfiles"] == 2 and res["changed"] is True
    assert not (root / "data.datavc.datavc").exists()


def test_add_path_outside_the_repo_is_a_usage_error(root, run):
    for path in ["/etc/passwd", "../elsewhere"]:
        r = fails(run("add", path), 2)
        assert "is not inside the repository" in r.err
    r = fails(run("add", "."), 2)
    assert "repository root itself" in r.err and "datavc add data" in r.err


def test_add_reserved_paths_is_refused(root, run):
    for path in [".git", ".datavc", ".datavc/config.toml", ".GIT/x", "sub/.git"]:
        r = fails(run("add", path), 6)
        assert ".git" in r.err.lower() or ".datavc" in r.err


def test_add_through_a_symlinked_parent_is_refused(root, run, outside):
    os.symlink(outside, root / "lnk")
    r = fails(run("add", "lnk/x"), 6)
    assert "symlink" in r.err and "lnk" in r.err
    assert not (outside / "x.datavc").exists()


def test_add_leaves_no_temp_files(root, run):
    gen(root, {"data": {f"f{i}": os.urandom(100) for i in range(20)}, "big": os.urandom(5 << 20)})
    ok(run("add", "data", "big"))
    assert tmp_files(root / ".datavc/cache/tmp") == []
    leftovers = [p for p in root.rglob("*") if ".datavc-tmp-" in p.name]
    assert leftovers == []
    assert object_path(root, oid_of((root / "big").read_bytes())).stat().st_size == 5 << 20


def test_add_json_is_a_list_with_documented_keys(root, run):
    (root / "f").write_text("f")
    [res] = add_json(run, "f")
    assert set(res) == {"path", "pointer", "oid", "kind", "size", "nfiles", "hashed",
                        "changed", "skipped"}


def test_add_of_a_symlink_target_is_refused(root, run, outside):
    os.symlink(outside, root / "linkdir")
    r = fails(run("add", "linkdir"), 6)
    assert "symlink" in r.err and "linkdir" in r.err
    assert not (root / "linkdir.datavc").exists()


@pytest.mark.parametrize("content", [
    b'{"datavc": 2, "kind": "file", "oid": "xxh128:' + b"0" * 32 + b'", "size": 1, "nfiles": 1}',
    b"{ not json",
])
def test_add_refuses_to_replace_a_pointer_it_cannot_read(root, run, content):
    (root / "f").write_text("f")
    ok(run("add", "f"))
    (root / "f.datavc").write_bytes(content)
    r = fails(run("add", "f"), 6)
    assert "f.datavc" in r.err and "delete f.datavc" in r.err
    assert (root / "f.datavc").read_bytes() == content
    (root / "f.datavc").unlink()
    ok(run("add", "f"))
