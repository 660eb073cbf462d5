"""gc: mark what kept trees name (failing closed), sweep the rest past a grace period."""

from __future__ import annotations

import os
import time

import pytest

from datavc import gc, listing
from datavc.gc import Kept, UnreadableError
from datavc.hashing import Oid


def tree(store, files: dict[str, bytes], sub: dict[str, bytes] | None = None) -> Kept:
    """Store a directory of ``files`` (and one subdirectory ``s`` of ``sub``)."""
    rows = []
    for name, data in files.items():
        oid = store.add_bytes(data)
        rows.append([name.encode(), "file", oid.digest, len(data), 0o644, 1])
    n = len(files)
    if sub is not None:
        inner = tree(store, sub)
        rows.append([b"s", "dir", inner.oid.digest, sum(map(len, sub.values())), 0o755,
                     len(sub)])
        n += len(sub)
    top = store.add_bytes(listing.encode(sorted(rows)))
    return Kept("test", "dir", top, n)


def age(store, oid: Oid, seconds: float) -> None:
    path = store.path(oid)
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_mark_names_listings_files_and_subtrees(store):
    k = tree(store, {"a": b"1", "b": b"2"}, sub={"c": b"3"})
    live = gc.mark(store, [k])
    named = {Oid.parse(str(o)).digest for o in store.iter_oids()}
    assert live == named  # everything stored is named by the tree


def test_sweep_deletes_only_unnamed_objects_older_than_the_grace(store):
    k = tree(store, {"a": b"kept"})
    old = store.add_bytes(b"old garbage")
    new = store.add_bytes(b"new garbage")
    for oid in store.iter_oids():
        age(store, oid, 7200)
    age(store, new, 10)
    os.utime(store.path(new))  # just written
    live = gc.mark(store, [k])
    # ctime cannot be set back: measure "now" from the future so only the grace decides
    plan = gc.plan(store, live, grace=3600, now=time.time())
    ids = [o for o, _ in plan.doomed]
    assert new not in ids and plan.recent >= 1
    plan = gc.plan(store, live, grace=3600, now=time.time() + 7200)
    ids = [o for o, _ in plan.doomed]
    assert set(ids) == {old, new}
    assert plan.nbytes == sum(s for _, s in plan.doomed)
    assert gc.sweep(store, plan.doomed) == len(plan.doomed)
    assert not store.has(old) and store.has(k.oid)
    assert gc.sweep(store, plan.doomed) == 0  # idempotent


def test_mark_fails_closed_on_a_missing_listing(store):
    k = tree(store, {"a": b"1"}, sub={"c": b"3"})
    inner = next(e.oid for e in listing.decode(store.read_bytes(k.oid), where="t")
                 if e.kind == "dir")
    os.chmod(store.path(inner), 0o644)
    os.unlink(store.path(inner))
    with pytest.raises(UnreadableError) as info:
        gc.mark(store, [k])
    assert info.value.exit_code == 1 and "nothing was deleted" in info.value.hint


def test_mark_fails_closed_on_a_corrupt_listing(store):
    k = tree(store, {"a": b"1"})
    os.chmod(store.path(k.oid), 0o644)
    with open(store.path(k.oid), "r+b") as f:
        f.write(b"X")
    with pytest.raises(UnreadableError):
        gc.mark(store, [k])


def test_shared_subtrees_are_read_once(store):
    k1 = tree(store, {"a": b"1"}, sub={"c": b"3"})
    k2 = tree(store, {"b": b"2"}, sub={"c": b"3"})
    reads: list[Oid] = []

    def read(oid):
        reads.append(oid)
        return store.read_bytes(oid)

    gc.mark(store, [k1, k2], read=read)
    assert len(reads) == len(set(reads)) == 3  # two tops, one shared subtree


def test_junk_in_the_cache_is_never_swept(store):
    junk = os.path.join(store.objects_dir, "ab", "not-hex")
    with open(junk, "w") as f:
        f.write("x")
    plan = gc.plan(store, set(), grace=0, now=time.time() + 10)
    assert all(len(o.digest) == 16 for o, _ in plan.doomed)
    gc.sweep(store, plan.doomed)
    assert os.path.exists(junk)
