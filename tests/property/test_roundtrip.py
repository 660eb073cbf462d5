"""Round trips and determinism of the Merkle tree, on random trees (nested dicts: bytes are
files, dicts directories, empty dicts empty directories).

* add → delete the workspace → checkout gives back the identical tree;
* the same tree added in two repositories gets the same root id;
* changing one file changes the root id and the ids of the directories above it, and
  keeps the id of every other directory and file (the Merkle property DESIGN.md §2 relies
  on to push and diff only what changed).
"""

from __future__ import annotations

import shutil
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datavc.errors import InvalidInputError
from tests.conftest import gen, read_tree
from tests.property.helpers import Sandbox, bad_objects

# Names with upper case, dots, spaces and a decomposed accent, but never one datavc keeps
# for itself (.git, .datavc, its temp prefix: names are too short to spell them) nor two
# that collide after case folding / NFC in one directory (a separate test covers those).
NAMES = st.text(alphabet="abcAB01._- é\u0301", min_size=1, max_size=5).filter(
    lambda n: n not in (".", ".."))
CONTENT = st.one_of(st.sampled_from([b"", b"same"]), st.binary(max_size=200))


def fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _no_collisions(d: dict[str, Any]) -> dict[str, Any]:
    seen: set[str] = set()
    out = {}
    for name, value in d.items():
        if fold(name) not in seen:
            seen.add(fold(name))
            out[name] = value
    return out


TREES = st.recursive(
    CONTENT,
    lambda children: st.dictionaries(NAMES, children, max_size=4).map(_no_collisions),
    max_leaves=20,
).filter(lambda t: isinstance(t, dict))

SETTINGS = settings(max_examples=25, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def files_of(tree: dict[str, Any], prefix: str = "data") -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, value in tree.items():
        path = f"{prefix}/{name}"
        if isinstance(value, dict):
            out.update(files_of(value, path))
        else:
            out[path] = value
    return out


def ids(box: Sandbox) -> dict[str, tuple[str, str]]:
    """path → (kind, oid) of every entry below data/, from ``Repo.ls_manifest``."""
    return {p: (e.kind, str(e.oid))
            for p, e in box.repo.ls_manifest(str(box.root / "data.datavc"))}


def add_tree(box: Sandbox, tree: dict[str, Any]) -> str:
    box.data.mkdir(exist_ok=True)
    gen(box.data, tree)
    [res] = box.repo.add([str(box.data)])
    return str(res.oid)


@SETTINGS
@given(tree=TREES)
def test_add_delete_checkout_gives_back_the_same_tree(tree: dict[str, Any]) -> None:
    box = Sandbox()
    try:
        add_tree(box, tree)
        assert read_tree(box.data) == tree  # add leaves the workspace as it was
        shutil.rmtree(box.data)
        [res] = box.repo.checkout()
        assert res.missing == []
        assert read_tree(box.data) == tree
        assert box.repo.status()[0].state == "clean"
        assert bad_objects(box.root) == []
    finally:
        box.close()


@SETTINGS
@given(tree=TREES, data=st.data())
def test_root_id_is_deterministic_and_merkle(tree: dict[str, Any],
                                             data: st.DataObject) -> None:
    one, two = Sandbox(), Sandbox()
    try:
        oid = add_tree(one, tree)
        assert add_tree(two, tree) == oid
        assert ids(two) == ids(one)
        before = ids(one)
        files = sorted(files_of(tree))
        if not files:
            return
        changed = data.draw(st.sampled_from(files), label="changed file")
        path = one.root / changed
        path.write_bytes(path.read_bytes() + b"\x00changed")
        [res] = one.repo.add([str(one.data)])
        assert str(res.oid) != oid
        after = ids(one)
        assert after.keys() == before.keys()
        above = {changed.rsplit("/", i)[0] for i in range(1, changed.count("/"))}
        for p in before:
            if p == changed or p in above:
                assert after[p] != before[p], p
            else:
                assert after[p] == before[p], p
    finally:
        one.close()
        two.close()


@pytest.mark.parametrize("names", [("a", "A"), ("ss", "\u00df"), ("k", "\u212a"),
                                   ("\u00e9", "e\u0301"), ("\u00c9", "\u00e9")],
                         ids=["case", "sharp-s", "kelvin", "nfc-nfd", "accented-case"])
def test_add_refuses_names_that_collide_after_folding(names: tuple[str, str]) -> None:
    """Whatever add accepts, checkout must give back; checkout refuses such listings
    (listing.decode), so add must refuse them first and write no manifest."""
    box = Sandbox()
    try:
        box.data.mkdir()
        for i, name in enumerate(names):
            (box.data / name).write_bytes(b"%d" % i)
        with pytest.raises(InvalidInputError):
            box.repo.add([str(box.data)])
        assert not (box.root / "data.datavc").exists()
    finally:
        box.close()
