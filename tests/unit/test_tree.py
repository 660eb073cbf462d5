"""tree: scanning the workspace, resolving hashes, listing ids bottom-up, loading back."""

from __future__ import annotations

import os
import time

import pytest
import xxhash

from datavc import listing, tree
from datavc.errors import DatavcError, InvalidInputError
from datavc.fsutil import TMP_MARK
from datavc.hashing import hash_bytes
from datavc.listing import Entry
from datavc.state import StatCache
from datavc.tree import DirNode, FileNode
from tests.conftest import gen

SPEC = {"a.txt": "A", "s": {"b.bin": b"\0B", "deep": {"c": "CCC"}}, "t": {"d": "D"}}


@pytest.fixture
def state(tmp_path):
    return StatCache(str(tmp_path / "stat"))


def build(ws, rel, state, store=None) -> tree.Scan:
    scan = tree.scan(str(ws), rel, state, store.objects_dir if store else "")
    tree.resolve(scan, store=store, state=state, started_ns=time.time_ns(), jobs=1)
    if scan.root is not None:
        tree.finish(scan.root, store=store, where=rel)
    return scan


def as_dict(node):
    if isinstance(node, FileNode):
        return (node.digest, node.size, node.executable)
    return {name: as_dict(child) for name, child in sorted(node.children.items())}


def test_directory_id_is_the_hash_of_its_listing(ws, state):
    gen(ws, {"d": {"a": "A", "s": {"b": "BB"}}})
    root = build(ws, "d", state).root
    sub = listing.encode_entries([Entry("b", "file", hash_bytes(b"BB"), 2)])
    top = listing.encode_entries([Entry("a", "file", hash_bytes(b"A"), 1),
                                  Entry("s", "dir", hash_bytes(sub), 2, 0o755, 1)])
    assert root.digest == xxhash.xxh3_128_digest(top)
    assert (root.size, root.nfiles) == (3, 2)
    assert root.children["s"].digest == hash_bytes(sub).digest


def test_finish_with_store_writes_listings_and_load_reads_them_back(ws, state, store):
    gen(ws, {"d": SPEC})
    os.chmod(ws / "d/t/d", 0o755)
    root = build(ws, "d", state, store).root
    back = tree.load(store, root.digest, kind="dir")
    assert as_dict(back) == as_dict(root)
    assert (back.size, back.nfiles, back.digest) == (root.size, root.nfiles, root.digest)
    assert back.children["t"].children["d"].executable


def test_same_content_same_id_and_unchanged_subtrees_keep_their_id(ws, state):
    gen(ws, {"one": SPEC, "two": SPEC})
    one, two = build(ws, "one", state).root, build(ws, "two", state).root
    assert one.digest == two.digest
    (ws / "two/s/deep/c").write_text("changed")
    two = build(ws, "two", state).root
    assert two.digest != one.digest
    assert two.children["s"].digest != one.children["s"].digest
    assert two.children["t"].digest == one.children["t"].digest


def test_empty_directory(ws, state):
    (ws / "e").mkdir()
    root = build(ws, "e", state).root
    assert (root.size, root.nfiles, root.children) == (0, 0, {})
    assert root.digest == xxhash.xxh3_128_digest(listing.encode_entries([]))


def test_single_file_and_executable_bit(ws, state):
    gen(ws, {"run.sh": "#!/bin/sh\n"})
    os.chmod(ws / "run.sh", 0o755)
    node = build(ws, "run.sh", state).root
    assert isinstance(node, FileNode) and node.executable and node.mode == 0o755
    assert node.digest == hash_bytes(b"#!/bin/sh\n").digest


def test_missing_path(ws, state):
    assert build(ws, "nope", state).root is None
    with pytest.raises(DatavcError):
        tree.require(None, "nope")


def _age(root, seconds=3600):
    old = time.time() - seconds
    for dirpath, _, names in os.walk(root):
        for n in names:
            os.utime(os.path.join(dirpath, n), (old, old))


def test_stat_cache_avoids_rehashing(ws, state):
    gen(ws, {"d": SPEC})
    _age(ws)
    first = build(ws, "d", state)
    assert len(first.seen) == 4
    scan = tree.scan(str(ws), "d", state, "")
    assert scan.todo == []
    (ws / "d/t/d").write_text("new content")
    scan = tree.scan(str(ws), "d", state, "")
    assert [rel for rel, _, _, _ in scan.todo] == ["d/t/d"]


def test_racily_new_files_are_hashed_again(ws, state):
    gen(ws, {"d": {"f": "x"}})
    build(ws, "d", state)
    assert len(tree.scan(str(ws), "d", state, "").todo) == 1


def test_skips_symlinks_fifos_and_reserved_names(ws, state, tmp_path):
    gen(ws, {"d": {"ok": "1", ".git": {"HEAD": "x"}, ".DATAVC": "y", "back\\slash": "z",
                   TMP_MARK + "123": "partial"}})
    (ws / "d/link").symlink_to(tmp_path)
    os.mkfifo(ws / "d/fifo")
    scan = build(ws, "d", state)
    assert list(scan.root.children) == ["ok"]
    assert sorted(p for p, _ in scan.skipped) == [
        "d/.DATAVC", "d/.git", "d/back\\slash", "d/fifo", "d/link"]


def test_symlink_into_the_cache_stands_for_its_object(ws, state, store):
    oid = store.add_bytes(b"cached")
    (ws / "d").mkdir()
    (ws / "d/f").symlink_to(store.path(oid))
    scan = build(ws, "d", state, store)
    assert scan.root.children["f"].digest == oid.digest and scan.skipped == []


def _collide(ws, state, names):
    gen(ws, {"d": {"sub": {name: name for name in names}}})
    with pytest.raises(InvalidInputError) as info:
        build(ws, "d", state)
    assert all(f"d/sub/{name}" in info.value.message for name in names)


@pytest.mark.parametrize("names", [("\u00c9", "e\u0301"), ("STRASSE", "Straße"),
                                   ("\u00e9", "e\u0301"), ("Ab", "aB")])
def test_case_and_normalisation_collisions_are_refused(ws, state, names):
    _collide(ws, state, names)


@pytest.mark.parametrize("names", [("A", "a"), ("strasse", "Straße"), ("k", "\u212a")])
def test_collisions_with_lower_case_ascii_names_are_refused(ws, state, names):
    _collide(ws, state, names)


def test_every_tree_finish_accepts_can_be_loaded(ws, state, store):
    gen(ws, {"d": {"A": "1", "a": "2"}})
    try:
        root = build(ws, "d", state, store).root
    except InvalidInputError:
        return
    tree.load(store, root.digest, kind="dir")


def test_walks(ws, state):
    gen(ws, {"d": SPEC})
    root = build(ws, "d", state).root
    assert sorted(p for p, _ in tree.walk_files(root, "d")) == [
        "d/a.txt", "d/s/b.bin", "d/s/deep/c", "d/t/d"]
    assert sorted(p for p, _ in tree.walk_dirs(root, "d")) == ["d", "d/s", "d/s/deep", "d/t"]
    assert list(tree.walk_dirs(FileNode(b"", 0), "x")) == []
    assert tree.root_kind(root) == "dir" and tree.root_kind(FileNode(b"", 0)) == "file"


def test_load_file_kind_and_missing_listing(store):
    node = tree.load(store, b"\1" * 16, kind="file", size=7)
    assert isinstance(node, FileNode) and node.size == 7
    with pytest.raises(DatavcError):
        tree.load(store, b"\1" * 16, kind="dir")


def test_load_refuses_a_hostile_listing(store):
    data = listing.encode([[b"..", "file", b"\0" * 16, 1, 0o644, 1]])
    oid = store.add_bytes(data)
    with pytest.raises(InvalidInputError):
        tree.load(store, oid.digest, kind="dir")


def test_finish_without_store_writes_nothing(ws, state, store):
    gen(ws, {"d": SPEC})
    build(ws, "d", state)
    assert list(store.iter_oids()) == []


def test_dirnode_defaults():
    node = DirNode()
    assert (node.children, node.size, node.nfiles, node.digest) == ({}, 0, 0, b"")


def test_memo_ok_only_for_plain_settled_trees_hashed_as_walked(ws, state):
    gen(ws, {"d": SPEC})
    _age(ws)
    now = time.time_ns()
    assert not tree.scan(str(ws), "d", state, "").memo_ok  # no start time: never remembered
    scan = tree.scan(str(ws), "d", state, "", started_ns=now)
    assert scan.memo_ok and scan.walked is not None
    tree.resolve(scan, store=None, state=state, started_ns=now, jobs=1)
    assert scan.memo_ok
    (ws / "d/t/d").write_text("new")  # written now: racily new
    assert not tree.scan(str(ws), "d", state, "", started_ns=time.time_ns()).memo_ok
    _age(ws)
    scan = tree.scan(str(ws), "d", state, "", started_ns=time.time_ns())
    assert scan.memo_ok and scan.todo  # ageing moved every ctime: all hashed again
    (ws / "d/t/d").write_text("changed between the walk and the hashing")
    _age(ws)
    tree.resolve(scan, store=None, state=state, started_ns=time.time_ns(), jobs=1)
    assert not scan.memo_ok
    os.symlink("a.txt", ws / "d/link")
    assert not tree.scan(str(ws), "d", state, "", started_ns=time.time_ns()).memo_ok


def test_stored_ids_are_the_ids_load_finds(ws, state, store):
    gen(ws, {"d": SPEC})
    root = build(ws, "d", state, store).root
    files, listings = tree.stored_ids(store, root.digest, size=root.size, nfiles=root.nfiles)
    assert sorted(files) == sorted(tree.file_digests(root))
    assert sorted(listings) == sorted(n.digest for _, n in tree.walk_dirs(root, "d"))


def _dir_row(name: bytes, digest: bytes, size: int, nfiles: int) -> list:
    return [name, "dir", digest, size, 0o755, nfiles]


def test_stored_ids_refuse_hostile_listings(store):
    f = [b"a", "file", b"\1" * 16, 5, 0o644, 1]
    sound = store.add_bytes(listing.encode([f])).digest
    assert tree.stored_ids(store, sound, size=5, nfiles=1) == ([b"\1" * 16], [sound])
    with pytest.raises(InvalidInputError, match="does not add up"):
        tree.stored_ids(store, sound, size=6, nfiles=1)  # the parent says otherwise
    bad = [
        listing.encode([[b"a", "link", b"\1" * 16, 5, 0o644, 1]]),  # unknown kind
        listing.encode([[b"a", "file", b"short", 5, 0o644, 1]]),  # bad id
        listing.encode([[b"a", "file", b"\1" * 16, -5, 0o644, 1]]),  # bad size
        listing.encode([[b"a", "file", b"\1" * 16, 5, 0o644]]),  # short row
        listing.encode([f])[:-1] + b"\x02",  # not canonical
        b"\xc1 not msgpack",
    ]
    for data in bad:
        oid = store.add_bytes(data).digest
        with pytest.raises(InvalidInputError):
            tree.stored_ids(store, oid, size=5, nfiles=1)
    # a subtree named twice: bounded by the counts the parent declares
    inner = store.add_bytes(listing.encode([f])).digest
    twice = store.add_bytes(listing.encode([_dir_row(b"x", inner, 5, 1),
                                            _dir_row(b"y", inner, 5, 1)])).digest
    with pytest.raises(InvalidInputError):
        tree.stored_ids(store, twice, size=5, nfiles=1)
    files, _ = tree.stored_ids(store, twice, size=10, nfiles=2)
    assert files == [b"\1" * 16] * 2


def test_stored_ids_of_a_missing_listing(store):
    with pytest.raises(DatavcError):
        tree.stored_ids(store, b"\7" * 16, size=1, nfiles=1)


def test_stored_ids_refuse_deep_nesting_of_empty_directories(store):
    digest = store.add_bytes(listing.encode([])).digest
    for _ in range(tree.MAX_DEPTH + 2):
        digest = store.add_bytes(listing.encode([_dir_row(b"d", digest, 0, 0)])).digest
    with pytest.raises(InvalidInputError, match="deeper"):
        tree.stored_ids(store, digest, size=0, nfiles=0)


def test_resolve_takes_early_results_hashed_at_the_walks_stat_and_rehashes_the_rest(ws, state):
    from datavc.objects import Stored

    gen(ws, {"d": {"x": "XX", "y": "YY"}})
    scan = tree.scan(str(ws), "d", state, "")
    keys = {abs_path: key for _, abs_path, _, key in scan.todo}
    x, y = str(ws / "d/x"), str(ws / "d/y")
    fake = b"\x01" * 16  # what a worker said: taken as it is when its stat is the walk's
    early = {x: Stored(fake, 2, False, keys[x], None),
             y: Stored(fake, 2, False, keys[y][:-1] + (keys[y][-1] + 1,), None)}
    seen = []
    tree.resolve(scan, store=None, state=state, started_ns=time.time_ns(), jobs=1,
                 early=early, progress=lambda n, b: seen.append((n, b)))
    files = scan.root.children
    assert files["x"].digest == fake
    assert files["y"].digest == hash_bytes(b"YY").digest  # read at another stat: again
    assert sum(n for n, _ in seen) == 1  # the early ones were counted as they came
