"""Properties of diff on random trees (nested dicts: ``(bytes, executable)`` leaves are files,
dicts directories, empty dicts empty directories; a tiny alphabet of names and contents so
that equal subtrees, duplicate contents and renames are common).

treediff level, many examples, each tree scanned from a real directory and its listings
stored in an object store:

* a tree against itself has no change and reads no listing;
* applying ``diff(a, b)`` to a's files (path -> (id, size)) and empty directories gives b's;
  a ``modified`` change is a content or executable-bit change, and without ``check_mode``
  only the executable-bit ones go;
* ``diff(b, a)`` is the inverse of ``diff(a, b)``, with renames or without;
* stored and scanned (workspace) sides give the same changes, in any combination;
* ``with_renames`` keeps what the changes apply to, pairs in path order, as many as it
  can, and never pairs empty files;
* only the listings on the paths to changes are read: deleting every other listing from
  the store changes nothing;
* changes come depth first, names sorted, the old side first where a file and a directory
  swap at one path.

Repo level, fewer examples, a real git repository: for 2-4 committed revisions, applying
``Repo.diff(i, j)`` to revision i gives revision j, ``Repo.diff(i, i)`` is empty and, with the
workspace at HEAD, ``Repo.diff(i)`` equals ``Repo.diff(i, "HEAD")``.

A directory that loses all its files but stays, empty, is an ``added`` change of kind
``dir`` (an empty directory came); one that was empty and gains files is a ``deleted`` one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from datavc import tree as dtree
from datavc.hashing import Oid, hash_bytes
from datavc.objects import ObjectStore
from datavc.state import StatCache
from datavc.treediff import Change, ChangeKind, Ref, diff, with_renames
from tests.property.helpers import Sandbox, fast_tmp, git

NAME_LIST = ["a", "b", "c", "d"]
NAMES = st.sampled_from(NAME_LIST)
CONTENTS = st.sampled_from([b"", b"x", b"y", b"xy"])
LEAVES = st.tuples(CONTENTS, st.booleans())
NODES = st.recursive(LEAVES, lambda kids: st.dictionaries(NAMES, kids, max_size=3),
                     max_leaves=8)
TREES = st.dictionaries(NAMES, NODES, max_size=4)

SETTINGS = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
REPO_SETTINGS = settings(SETTINGS, max_examples=20)


@st.composite
def mutated(draw: st.DrawFn, tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` with some entries kept, dropped, rewritten, chmodded, replaced or edited
    below, and a few added: a likely next revision (drops and adds of equal contents are
    renames)."""
    out: dict[str, Any] = {}
    for name, value in sorted(tree.items()):
        op = draw(st.sampled_from(["keep", "keep", "edit", "edit", "replace", "drop"]))
        if op == "keep":
            out[name] = value
        elif op == "replace":
            out[name] = draw(NODES)
        elif op == "edit" and isinstance(value, dict):
            out[name] = draw(mutated(value))
        elif op == "edit":
            content, executable = value
            out[name] = draw(st.one_of(st.tuples(CONTENTS, st.just(executable)),
                                       st.just((content, not executable))))
    for name in NAME_LIST:
        if name not in tree and draw(st.integers(0, 3)) == 0:
            out[name] = draw(NODES)
    return out


@st.composite
def pairs(draw: st.DrawFn, *, sides: bool = False) -> tuple[Any, Any]:
    """(a, b): b a mutation of a or unrelated; with ``sides`` either may be None (absent)."""
    a = draw(TREES)
    b = draw(st.one_of(mutated(a), mutated(a), TREES))
    missing = draw(st.sampled_from(["none", "none", "none", "none", "old", "new"])) \
        if sides else "none"
    return (None if missing == "old" else a), (None if missing == "new" else b)


@st.composite
def revisions(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = [draw(TREES)]
    for _ in range(draw(st.integers(1, 3))):
        out.append(draw(st.one_of(mutated(out[-1]), mutated(out[-1]), TREES)))
    return out


# ------------------------------------------------------------------ oracle

@dataclass
class Flat:
    """A tree as maps: files path -> (id, size), their executable bits, empty directories
    and every directory."""

    files: dict[str, tuple[Oid, int]] = field(default_factory=dict)
    execs: dict[str, bool] = field(default_factory=dict)
    empty: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)


def flat(tree: dict[str, Any] | None, prefix: str, out: Flat | None = None) -> Flat:
    out = Flat() if out is None else out
    if tree is None:
        return out
    out.dirs.add(prefix)
    if not tree:
        out.empty.add(prefix)
    for name, value in tree.items():
        path = f"{prefix}/{name}"
        if isinstance(value, dict):
            flat(value, path, out)
        else:
            content, executable = value
            out.files[path] = (hash_bytes(content), len(content))
            out.execs[path] = executable
    return out


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def apply(a: Flat, changes: Iterable[Change]) -> tuple[dict[str, tuple[Oid, int]], set[str]]:
    """Apply ``changes`` to a's files and empty directories, checking each change against
    what it replaces. The list is a set of changes in path order, not a script (a renamed
    file stands where it was added, after changes its deletion came before): everything
    that goes is taken away first, then everything that comes is put in place. A directory
    that gets a file or a directory is no longer empty."""
    files, empty = dict(a.files), set(a.empty)
    changes = list(changes)
    for c in changes:
        assert c.kind in ("file", "dir"), c
        if c.kind == "dir":
            assert (c.old, c.new, c.old_size, c.new_size, c.old_path) == (None,) * 5, c
            assert c.change in ("added", "deleted"), c
            if c.change == "deleted":
                empty.remove(c.path)
        elif c.change == "added":
            assert c.old is None and c.old_size is None and c.old_path is None, c
        elif c.change == "deleted":
            assert c.new is None and c.new_size is None and c.old_path is None, c
            assert files.pop(c.path) == (c.old, c.old_size), c
        elif c.change == "modified":
            assert c.old_path is None, c
            assert files.pop(c.path) == (c.old, c.old_size), c
        else:
            assert c.change == "renamed" and c.old_path is not None, c
            assert (c.old, c.old_size) == (c.new, c.new_size), c
            assert files.pop(c.old_path) == (c.old, c.old_size), c
    for c in changes:
        if c.change == "deleted":
            continue
        assert c.path not in files and c.path not in empty, c
        if c.kind == "dir":
            empty.add(c.path)
        else:
            assert c.new is not None and c.new_size is not None, c
            files[c.path] = (c.new, c.new_size)
        empty.difference_update(_ancestors(c.path))
    return files, empty


def expected(a: Flat, b: Flat) -> tuple[dict[str, tuple[Oid, int]], set[str]]:
    """b's files and empty directories (see test_a_directory_left_empty_is_a_change)."""
    return b.files, b.empty


def inverse(c: Change) -> Change:
    flip: dict[ChangeKind, ChangeKind] = {"added": "deleted", "deleted": "added"}
    if c.change == "renamed":
        assert c.old_path is not None
        return replace(c, path=c.old_path, old_path=c.path)
    return replace(c, change=flip.get(c.change, c.change), old=c.new, new=c.old,
                   old_size=c.new_size, new_size=c.old_size)


# --------------------------------------------------------------- the trees

class RecordingStore(ObjectStore):
    """An object store that remembers the id of every object read."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.reads: set[bytes] = set()

    def read_bytes(self, oid: Oid, *, limit: int = 64 << 20) -> bytes:
        self.reads.add(oid.digest)
        return super().read_bytes(oid, limit=limit)


def write(path: Path, tree: dict[str, Any]) -> None:
    path.mkdir()
    for name, value in tree.items():
        if isinstance(value, dict):
            write(path / name, value)
        else:
            content, executable = value
            (path / name).write_bytes(content)
            os.chmod(path / name, 0o755 if executable else 0o644)


@dataclass
class Side:
    """One tree, stored (``ref``) and scanned (``node``); both None for an absent tree."""

    ref: Ref | None
    node: dtree.Node | None
    flat: Flat

    def listings(self) -> dict[str, bytes]:
        """path -> listing id of every directory."""
        if self.node is None:
            return {}
        return {p: n.digest for p, n in dtree.walk_dirs(self.node, "d")}


class Lab:
    """A scratch directory (on a memory file system when there is one) with an object store;
    trees are written there, scanned, and their listings stored."""

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="datavc-diff-", dir=fast_tmp())
        self.store = RecordingStore(os.path.join(self.tmp, "cache"))
        self.store.ensure_layout()
        self.n = 0

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def side(self, tree: dict[str, Any] | None) -> Side:
        if tree is None:
            return Side(None, None, Flat())
        self.n += 1
        rel = f"t{self.n}"
        write(Path(self.tmp) / rel, tree)
        state = StatCache("")
        scan = dtree.scan(self.tmp, rel, state, "")
        assert scan.root is not None and not scan.skipped
        dtree.resolve(scan, store=None, state=state, started_ns=time.time_ns(), jobs=1)
        dtree.finish(scan.root, store=self.store, where=rel)
        self.store.publish()
        self.store.reads.clear()
        return Side(Ref("dir", scan.root.digest, scan.root.size), scan.root, flat(tree, "d"))

    def diff(self, old: Any, new: Any, **kw: Any) -> list[Change]:
        return list(diff(self.store, "d", old, new, **kw))


# ---------------------------------------------------------- treediff level

@SETTINGS
@given(a=TREES)
def test_a_tree_against_itself_has_no_change(a: dict[str, Any]) -> None:
    with Lab() as lab:
        s = lab.side(a)
        for old in (s.ref, s.node):
            for new in (s.ref, s.node):
                assert lab.diff(old, new) == []
        assert lab.store.reads == set()  # equal root ids: nothing below is read
        assert lab.diff(None, None) == []


@SETTINGS
@given(ab=pairs(sides=True))
def test_applying_the_diff_gives_the_new_tree(ab: tuple[Any, Any]) -> None:
    with Lab() as lab:
        a, b = lab.side(ab[0]), lab.side(ab[1])
        changes = lab.diff(a.ref, b.ref)
        assert apply(a.flat, changes) == expected(a.flat, b.flat)
        # modified: the files of both trees whose content or executable bit differs
        both = a.flat.files.keys() & b.flat.files.keys()
        assert {c.path for c in changes if c.change == "modified"} == {
            p for p in both if (a.flat.files[p], a.flat.execs[p]) != (b.flat.files[p],
                                                                        b.flat.execs[p])}
        # without check_mode, exactly the executable-bit-only modifications go
        assert lab.diff(a.ref, b.ref, check_mode=False) == [
            c for c in changes if not (c.change == "modified" and c.old == c.new)]


@SETTINGS
@given(ab=pairs(sides=True))
def test_changes_come_in_path_order(ab: tuple[Any, Any]) -> None:
    """Depth first, names sorted in each directory; where a file and a directory swap at one
    path, the old side's changes come first."""
    with Lab() as lab:
        a, b = lab.side(ab[0]), lab.side(ab[1])
        changes = lab.diff(a.ref, b.ref)
        assert len({(c.path, c.change) for c in changes}) == len(changes)
        for x, y in zip(changes, changes[1:], strict=False):
            px, py = x.path.split("/"), y.path.split("/")
            i = next((k for k, (m, n) in enumerate(zip(px, py, strict=False)) if m != n),
                     min(len(px), len(py)))
            if i < min(len(px), len(py)):
                assert px[i] < py[i], (x, y)
            else:  # one path is the other's prefix: a file/directory swap at the shorter
                assert x.change == "deleted" and y.change == "added", (x, y)


@SETTINGS
@given(ab=pairs(sides=True))
def test_the_diff_backwards_is_the_inverse(ab: tuple[Any, Any]) -> None:
    with Lab() as lab:
        a, b = lab.side(ab[0]), lab.side(ab[1])
        forward, backward = lab.diff(a.ref, b.ref), lab.diff(b.ref, a.ref)
        assert Counter(map(inverse, backward)) == Counter(forward)
        assert (Counter(map(inverse, with_renames(backward)))
                == Counter(with_renames(forward)))


@SETTINGS
@given(ab=pairs(sides=True))
def test_stored_and_workspace_sides_agree(ab: tuple[Any, Any]) -> None:
    with Lab() as lab:
        a, b = lab.side(ab[0]), lab.side(ab[1])
        stored = lab.diff(a.ref, b.ref)
        assert lab.diff(a.ref, b.node) == stored
        assert lab.diff(a.node, b.ref) == stored
        assert lab.diff(a.node, b.node) == stored


@SETTINGS
@given(ab=pairs(sides=True))
def test_renames_keep_the_result_and_never_pair_empty_files(ab: tuple[Any, Any]) -> None:
    with Lab() as lab:
        a, b = lab.side(ab[0]), lab.side(ab[1])
        plain = lab.diff(a.ref, b.ref)
        renamed = with_renames(plain)
        assert apply(a.flat, renamed) == apply(a.flat, plain)
        pairs_made = [c for c in renamed if c.change == "renamed"]
        for c in pairs_made:
            assert c.old == c.new and c.old_size == c.new_size and c.old_size
            assert c.old_path != c.path
        # undoing the pairs gives the plain list back, in its order
        sources = {c.old_path for c in pairs_made}
        assert [replace(c, change="added", old=None, old_size=None, old_path=None)
                if c.change == "renamed" else c for c in renamed] == [
            c for c in plain if not (c.change == "deleted" and c.path in sources)]
        # per id, the k-th deleted file (path order) goes with the k-th added one, as many
        # pairs as possible; empty files never
        deleted: dict[Oid, list[str]] = {}
        added: dict[Oid, list[str]] = {}
        for c in plain:
            if c.kind == "file" and c.change == "deleted" and c.old is not None:
                deleted.setdefault(c.old, []).append(c.path)
            elif c.kind == "file" and c.change == "added" and c.new is not None:
                added.setdefault(c.new, []).append(c.path)
        want = sorted((old, new) for oid in deleted.keys() & added.keys()
                      if oid != hash_bytes(b"")
                      for old, new in zip(deleted[oid], added[oid], strict=False))
        assert sorted((c.old_path, c.path) for c in pairs_made) == want


@SETTINGS
@given(ab=pairs(sides=True))
def test_only_listings_on_paths_to_changes_are_read(ab: tuple[Any, Any]) -> None:
    with Lab() as lab:
        a, b = lab.side(ab[0]), lab.side(ab[1])
        plain = lab.diff(a.ref, b.ref)
        on_paths = {p for c in plain for p in [*_ancestors(c.path), c.path]}
        la, lb = a.listings(), b.listings()
        needed = {la[p] for p in on_paths & la.keys()} | {lb[p] for p in on_paths & lb.keys()}
        assert lab.store.reads <= needed
        for digest in (set(la.values()) | set(lb.values())) - needed:
            os.unlink(lab.store.path(Oid(digest)))
        assert lab.diff(a.ref, b.ref) == plain
        assert lab.diff(b.ref, a.ref) == lab.diff(b.node, a.node)
        assert lab.diff(a.ref, b.node) == plain
        assert lab.diff(a.node, b.ref) == plain


@settings(SETTINGS, max_examples=25)
@given(ab=pairs(sides=True))
@example(ab=({"x": {"f": (b"x", False)}}, {"x": {}}))
def test_a_directory_left_empty_is_a_change(ab: tuple[Any, Any]) -> None:
    with Lab() as lab:
        a, b = lab.side(ab[0]), lab.side(ab[1])
        assert apply(a.flat, lab.diff(a.ref, b.ref)) == (b.flat.files, b.flat.empty)


# -------------------------------------------------------------- repo level

@REPO_SETTINGS
@given(trees=revisions())
def test_repo_diff_between_committed_revisions(trees: list[dict[str, Any]]) -> None:
    box = Sandbox(prefix="datavc-diff-")
    try:
        shas = []
        for i, t in enumerate(trees):
            if box.data.exists():
                shutil.rmtree(box.data)
            write(box.data, t)
            box.repo.add([str(box.data)])
            box.repo.commit(message=f"revision {i}")
            shas.append(git(box.root, "rev-parse", "HEAD").strip())
        flats = [flat(t, "data") for t in trees]
        for i, (rev_i, flat_i) in enumerate(zip(shas, flats, strict=True)):
            assert box.repo.diff(rev_i, rev_i) == []
            for j, (rev_j, flat_j) in enumerate(zip(shas, flats, strict=True)):
                changes = box.repo.diff(rev_i, rev_j)
                assert apply(flat_i, changes) == expected(flat_i, flat_j), (i, j)
            # the workspace holds the last revision, which HEAD names
            assert box.repo.diff(rev_i) == box.repo.diff(rev_i, "HEAD")
    finally:
        box.close()
