"""Three-way merge on random trees: merging two disjoint change-sets of a tree gives the tree
with both applied (the union), whichever side is "ours", and every listing that tree needs
is either already stored or among the merge's new listings.

A change-set edits, deletes or flips the executable bit of files of the base, and adds files
and directories (under names the other side never uses); the two sides never touch the same
path, except for identical edits, which merge too.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datavc import tree
from datavc.merge import merge_trees
from tests.unit.stores import PublishingStore
from tests.unit.trees import Exec, spec_of, stored

# At most 3 characters: never a reserved name (.git, .datavc, their aliases); no "+", which
# only added names use, so additions never collide with base names.
NAMES = st.text(alphabet="abAB0._ é", min_size=1, max_size=3).filter(
    lambda n: n not in (".", ".."))
CONTENT = st.one_of(st.just(b""), st.binary(max_size=20))
FILES = st.one_of(CONTENT, CONTENT.map(Exec))


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _no_collisions(d: dict[str, Any]) -> dict[str, Any]:
    seen: set[str] = set()
    return {k: v for k, v in d.items() if _fold(k) not in seen and not seen.add(_fold(k))}


TREES = st.recursive(FILES, lambda kids: st.dictionaries(NAMES, kids, max_size=4).map(
    _no_collisions), max_leaves=16).filter(lambda t: isinstance(t, dict))

SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def paths(spec: dict, *, dirs: bool, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if dirs else []
    for name, value in spec.items():
        if isinstance(value, dict):
            out += paths(value, dirs=dirs, prefix=(*prefix, name))
        elif not dirs:
            out.append((*prefix, name))
    return out


def get(spec: dict, path: tuple[str, ...]):
    for name in path:
        spec = spec[name]
    return spec


def put(spec: dict, path: tuple[str, ...], value) -> dict:
    """A copy of ``spec`` with ``path`` set to ``value`` (None deletes it)."""
    out = dict(spec)
    if len(path) > 1:
        out[path[0]] = put(out.get(path[0], {}), path[1:], value)
    elif value is None:
        del out[path[0]]
    else:
        out[path[0]] = value
    return out


def edited(old, how: str):
    content = old.content if isinstance(old, Exec) else old
    if how == "flip":
        return content if isinstance(old, Exec) else Exec(content)
    return content + b"!"


@st.composite
def change_sets(draw, base: dict):
    """Two disjoint lists of (path, new value or None)."""
    sides: dict[str, list] = {"o": [], "t": []}
    for path in paths(base, dirs=False):
        who = draw(st.sampled_from(["", "", "o", "t", "both"]))
        how = draw(st.sampled_from(["edit", "flip", "delete"]))
        value = None if how == "delete" else edited(get(base, path), how)
        for side in (("o", "t") if who == "both" else (who,) if who else ()):
            sides[side].append((path, value))
    dirs = paths(base, dirs=True)
    for side, changes in sides.items():
        for i in range(draw(st.integers(0, 3))):
            where = draw(st.sampled_from(dirs))
            new = (f"+{side}{i}",) if draw(st.booleans()) else (f"+{side}d{i}", "f")
            changes.append(((*where, *new), draw(FILES)))
    return sides["o"], sides["t"]


def apply(spec: dict, changes) -> dict:
    for path, value in changes:
        spec = put(spec, path, value)
    return spec


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> PublishingStore:
    s = PublishingStore(str(tmp_path_factory.mktemp("merge") / "cache"))
    s.ensure_layout()
    return s


@SETTINGS
@given(data=st.data(), base=TREES)
def test_merging_disjoint_change_sets_gives_their_union(store, data, base):
    ours_changes, theirs_changes = data.draw(change_sets(base))
    ours, theirs = apply(base, ours_changes), apply(base, theirs_changes)
    union = apply(ours, [c for c in theirs_changes if c not in ours_changes])
    refs = [stored(store, s) for s in (base, ours, theirs)]
    want = stored(None, union)
    for first, second in ((refs[1], refs[2]), (refs[2], refs[1])):
        result = merge_trees(store, refs[0], first, second, rel="data")
        assert result.conflicts == []
        assert result.root == want  # same id, size and file count
        for data_ in result.listings.values():
            store.add_bytes(data_)
        loaded = tree.load(store, want.digest, kind="dir", size=want.size, nfiles=want.nfiles)
        assert loaded.nfiles == want.nfiles
    assert spec_of(store, want) == spec_of(store, stored(store, union))
