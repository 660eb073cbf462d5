"""One test (at least) per exit code of DESIGN.md §4 that the commands can produce so far.

| 0 ok | 1 problem | 2 usage | 3 integrity | 4 locked | 5 remote | 6 invalid/unsafe input |
| 7 resource | 10 not a repo | 130 interrupted |
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import gen
from tests.func.helpers import (
    LOCK,
    cache_objects,
    corrupt,
    dir_pointer,
    fails,
    file_row,
    listing_bytes,
    object_path,
    oid_of,
    ok,
    set_link_types,
    snapshot,
    store_raw,
    tmp_files,
    write_pointer,
)

# ---------------------------------------------------------------------------------- 0, 1


def test_exit_0_on_success(root, run):
    (root / "f").write_text("f")
    for args in (("add", "f"), ("status",), ("commit",), ("checkout",), ("ls-manifest", "f"),
                 ("hash-object", "f"), ("cat-object", oid_of(b"f"))):
        ok(run(*args))


def test_exit_1_on_checkout_conflict(root, run):
    gen(root, {"data": {"a": "a"}})
    ok(run("add", "data"))
    (root / "data/a").write_text("local")
    r = fails(run("checkout"), 1)
    assert r.err.startswith("datavc: error: ")
    assert "data/a" in r.err and "hint: " in r.err


# ------------------------------------------------------------------------------------- 2


USAGE_ERRORS = [
    ("add", "--bogus", "x"),  # unknown option
    ("status", "--nope"),
    ("add",),  # missing argument
    ("cat-object",),
    ("ls-manifest",),
    ("hash-object",),
    ("commit", "-m"),  # option without its value
    ("frobnicate",),  # unknown command
    ("add", "/etc/hostname"),  # path outside the repository
    ("status", "../.."),
    ("checkout", "/"),
]


def test_exit_2_on_usage_errors(root, run):
    for args in USAGE_ERRORS:
        r = fails(run(*args), 2)
        assert "Traceback" not in r.out


def test_usage_error_suggests_help(root, run):
    r = fails(run("add", "--bogus", "x"), 2)
    assert "--help" in r.err and "--bogus" in r.err


# ------------------------------------------------------------------------------------- 3


def test_exit_3_cat_object_of_corrupt_object(root, run):
    (root / "f").write_bytes(b"content")
    ok(run("add", "f"))
    corrupt(object_path(root, oid_of(b"content")))
    r = fails(run("cat-object", oid_of(b"content")), 3)
    assert r.out == ""


def test_exit_3_checkout_of_corrupt_object_in_copy_mode(root, run):
    set_link_types(root, ["copy"])
    gen(root, {"data": {"good": "good", "bad": "bad content"}})
    ok(run("add", "data"))
    shutil.rmtree(root / "data")
    corrupt(object_path(root, oid_of(b"bad content")))
    r = fails(run("checkout"), 3)
    assert oid_of(b"bad content") in r.err and "corrupt" in r.err
    assert not (root / "data/bad").exists()  # a corrupt object is never checked out
    assert [p for p in root.rglob("*") if ".datavc-tmp-" in p.name] == []


def test_exit_3_corrupt_listing_object(root, run):
    gen(root, {"data": {"a": "a"}})
    ok(run("add", "data"))
    oid = json.loads((root / "data.datavc").read_text())["oid"]
    corrupt(object_path(root, oid), offset=3)
    shutil.rmtree(root / "data")
    fails(run("checkout"), 3)
    fails(run("ls-manifest", "data"), 3)


# ------------------------------------------------------------------------------------- 4

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, f"{os.getpid()} test-holder\\n".encode())
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held(root):
    """Another process holding the repository lock (with its pid in the file)."""
    (root / LOCK).parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root / LOCK)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.wait(timeout=10)


def test_exit_4_when_another_process_holds_the_lock(root, run):
    gen(root, {"data": {"a": "a"}, "f": "f", "g": "g"})
    ok(run("add", "f"))
    with lock_held(root) as holder:
        r = fails(run("add", "data"), 4)
        assert f"pid {holder.pid}" in r.err
        assert str(root / LOCK) in r.err and "hint:" in r.err
        assert not (root / "data.datavc").exists()
        for args in (("commit",), ("checkout",), ("hash-object", "-w", "g")):
            assert f"pid {holder.pid}" in fails(run(*args), 4).err
        ok(run("status"))  # reading needs no lock
    ok(run("add", "data"))


def test_stale_lock_of_a_dead_process_is_broken_with_a_warning(root, run):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (root / LOCK).parent.mkdir(parents=True, exist_ok=True)
    (root / LOCK).write_text(f"{dead.pid} add\n")
    (root / "f").write_text("f")
    r = ok(run("add", "f"))
    assert "warning" in r.err and "stale lock" in r.err and str(dead.pid) in r.err
    r = ok(run("status"))
    assert "stale" not in r.err  # the lock was released cleanly this time


# ------------------------------------------------------------------------------------- 5
# Exit 5 (remote unreachable or failing after retries) needs `datavc push/pull/fetch` and
# remotes, which do not exist yet. Its test belongs with the remote commands.


# ------------------------------------------------------------------------------------- 6

GOOD_OID = "xxh128:" + "0" * 32


def bad_pointer(**changes) -> str:
    doc = {"datavc": 1, "kind": "file", "oid": GOOD_OID, "size": 1, "nfiles": 1, **changes}
    return json.dumps(doc)


HOSTILE_POINTERS = [
    "{",  # bad JSON
    "<<<<<<< HEAD\n{}\n=======\n{}\n>>>>>>> branch\n",  # merge conflict
    "[1, 2]",  # not an object
    bad_pointer(datavc=99),  # unknown format version
    bad_pointer(datavc="1"),
    bad_pointer(oid="xxh128:XYZ"),  # malformed oid
    bad_pointer(oid="md5:" + "0" * 32),  # unknown algorithm
    bad_pointer(oid=None),
    bad_pointer(kind="link"),
    bad_pointer(size=-1),
    bad_pointer(nfiles=2),  # a file has one file
    bad_pointer(x=1),  # unknown key
    bad_pointer(meta={"k": 1}),
    "\xff\xfe not utf-8",
    " " * (64 * 1024 + 1),  # larger than the documented bound
]


def test_exit_6_hostile_pointer_manifest(root, run):
    (root / "f").write_text("f")
    ok(run("add", "f"))
    (root / "f").write_text("local edit")
    for i, content in enumerate(HOSTILE_POINTERS):
        write_pointer(root, "f", content.encode("latin-1"))
        commands = [("checkout", "f")]
        if i == 0:
            commands += [("status",), ("checkout", "--force"), ("ls-manifest", "f.datavc"),
                         ("commit", "f")]
        for args in commands:
            r = fails(run(*args), 6)
            assert "f.datavc" in r.err, (content, r)
    assert (root / "f").read_text() == "local edit"


def test_exit_6_merge_conflict_hint(root, run):
    write_pointer(root, "f", "<<<<<<< HEAD\n{}\n=======\n{}\n>>>>>>> other\n")
    r = fails(run("status", "f"), 6)
    assert "merge conflict" in r.err


def hostile_dir(root, rows, *, target="evil", nfiles=1, size=1):
    oid = store_raw(root, listing_bytes(rows))
    write_pointer(root, target, dir_pointer(oid, size, nfiles))
    return oid


UNSAFE_NAMES = [b"..", b"../etc", b"a/b", b".", b"", b".git", b".GIT", b".datavc", b"git~1",
                b".git. ", b"x\0y", b"back\\slash"]


def test_exit_6_listing_naming_an_unsafe_path(root, run, outside):
    store_raw(root, b"pwned")
    before = snapshot(outside)
    for i, name in enumerate(UNSAFE_NAMES):
        target = f"evil{i}"
        hostile_dir(root, [file_row(name, b"pwned")], target=target)
        fails(run("checkout", target), 6)
        assert not (root / target).exists(), name
    fails(run("ls-manifest", "evil0.datavc"), 6)
    gen(root, {"evil0": {"local": "x"}})  # status must read the listing to diff: refuse too
    fails(run("status", "evil0"), 6)
    assert not (root / "etc").exists() and not (root / "pwned").exists()
    assert not (root.parent / "etc").exists() and not (root.parent / "pwned").exists()
    assert snapshot(outside) == before


def test_exit_6_listing_that_climbs_out_with_a_dotdot_directory(root, run):
    store_raw(root, b"pwned")
    inner = store_raw(root, listing_bytes([file_row(b"pwned", b"pwned")]))
    rows = [[b"..", "dir", bytes.fromhex(inner[7:]), 5, 0o755, 1]]
    hostile_dir(root, rows)
    fails(run("checkout", "evil"), 6)
    assert not (root / "pwned").exists()


def test_exit_6_listing_that_writes_into_git_hooks(root, run):
    store_raw(root, b"#!/bin/sh\necho pwned\n")
    hook = store_raw(root, listing_bytes([file_row(b"post-checkout", b"#!/bin/sh\necho pwned\n",
                                                   0o755)]))
    hooks = store_raw(root, listing_bytes([[b"hooks", "dir", bytes.fromhex(hook[7:]), 21,
                                            0o755, 1]]))
    hostile_dir(root, [[b".git", "dir", bytes.fromhex(hooks[7:]), 21, 0o755, 1]], size=21)
    # the target itself is ok ("evil"); .git would be evil/.git, still refused by name
    fails(run("checkout", "evil"), 6)
    assert not (root / "evil/.git").exists()


MALFORMED_LISTINGS = [
    ["datavc.listing", 99, []],  # unknown listing version
    ["something.else", 1, []],  # not a listing
    {"datavc.listing": 1},  # wrong shape
    ["datavc.listing", 1, [[b"a", "file", b"short", 1, 0o644, 1]]],  # malformed oid
    ["datavc.listing", 1, [[b"a", "file", b"\0" * 16, 1, 0o600, 1]]],  # mode not allowed
    ["datavc.listing", 1, [[b"a", "fifo", b"\0" * 16, 1, 0o644, 1]]],  # unknown kind
    ["datavc.listing", 1, [[b"b", "file", b"\0" * 16, 1, 0o644, 1],
                           [b"a", "file", b"\0" * 16, 1, 0o644, 1]]],  # unsorted
    ["datavc.listing", 1, [[b"A", "file", b"\0" * 16, 1, 0o644, 1],
                           [b"a", "file", b"\0" * 16, 1, 0o644, 1]]],  # case collision
]


def test_exit_6_malformed_listing(root, run):
    import msgpack

    for i, doc in enumerate(MALFORMED_LISTINGS):
        oid = store_raw(root, msgpack.packb(doc, use_bin_type=True))
        write_pointer(root, f"evil{i}", dir_pointer(oid, 1, 1))
        fails(run("checkout", f"evil{i}"), 6)
        assert not (root / f"evil{i}").exists()
    fails(run("ls-manifest", "evil0"), 6)


BAD_CONFIGS = [
    "[cache]\ntype = ['teleport']\n",
    "[core]\nformat = 2\n",
    "not toml at all [[[",
    "[cache]\njobs = 0\n",
    "[mystery]\nx = 1\n",
]


def test_exit_6_bad_config(root, run):
    for config in BAD_CONFIGS:
        (root / ".datavc/config.toml").write_text(config)
        r = fails(run("status"), 6)
        assert "config.toml" in r.err


def test_exit_6_case_collision_in_the_workspace(root, run):
    gen(root, {"data": {"Readme": "1", "README": "2"}})
    r = fails(run("add", "data"), 6)
    assert "differ only in case" in r.err


# ------------------------------------------------------------------------------------- 7


@pytest.mark.parametrize("size", [64 << 10, 2 << 20])  # small-object path and streaming path
def test_exit_7_file_too_large(root, run, size):
    (root / "big").write_bytes(os.urandom(size))
    proc = subprocess.run(
        ["bash", "-c", 'ulimit -f 8; exec "$0" -m datavc add big', sys.executable],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc
    assert "Traceback" not in proc.stderr
    assert "file too large" in proc.stderr and "ulimit" in proc.stderr
    assert not (root / "big.datavc").exists()
    assert tmp_files(root / ".datavc/cache/tmp") == []
    assert cache_objects(root) == []
    ok(run("add", "big"))  # without the limit it works


# ------------------------------------------------------------------------------------ 10


def test_exit_10_not_a_repo(tmp_path, run):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "f").write_text("f")
    for args in [("status",), ("add", "f"), ("commit",), ("checkout",),
                 ("ls-manifest", "f.datavc"), ("cat-object", GOOD_OID), ("hash-object", "-w", "f")]:
        r = fails(run(*args, cwd=plain), 10)
        assert "not inside a datavc repository" in r.err and "datavc init" in r.err


def test_exit_10_in_a_git_repo_without_init(scm, run):
    r = fails(run("status"), 10)
    assert str(scm) in r.err


# ----------------------------------------------------------------------------------- 130


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_exit_130_interrupted_add_and_rerun(root, run, sig):
    # one object file each, to see it busy storing (packs would be a few files)
    with open(root / ".datavc/config.toml", "a") as f:
        f.write("\n[cache]\npack = false\n")
    big = root / "big"
    for d in range(40):  # long enough to be caught while storing, even on a busy machine
        (big / f"d{d}").mkdir(parents=True)
        for f in range(100):
            (big / f"d{d}" / f"f{f}").write_bytes(os.urandom(256))
    here = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    # as from a shell: SIGINT and SIGTERM with their default actions and not blocked,
    # whatever this test process inherited or earlier tests left (an ignored SIGINT is
    # inherited across exec, and Python then installs no KeyboardInterrupt handler)
    proc = subprocess.Popen([sys.executable, "-m", "datavc", "add", "big"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_signals)
    temp_area = root / ".datavc/cache/tmp"
    deadline = time.monotonic() + 30
    # wait until it is busy storing objects (staged in the temp area, or already named)
    while len(cache_objects(root)) + len(tmp_files(temp_area)) < 20 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail("add finished before it could be interrupted: make the dataset bigger")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err, here)
    assert b"Traceback" not in err
    assert b"interrupted" in err
    assert not (root / "big.datavc").exists()
    assert [p for p in root.rglob("*")
            if ".datavc-tmp-" in p.name and temp_area not in p.parents] == []
    if sig == signal.SIGINT:  # one rerun is enough to show the repository is still usable
        [res] = json.loads(ok(run("add", "--json", "big")).out)
        assert res["nfiles"] == 4000
        assert tmp_files(temp_area) == []  # the next locked command cleared the leftovers
        assert "up to date" in ok(run("status")).out
