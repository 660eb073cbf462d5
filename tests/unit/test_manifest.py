"""manifest: the pointer JSON file git tracks (deterministic, strict, bounded)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datavc import manifest
from datavc.errors import InvalidInputError, UnknownFormatError
from datavc.hashing import Oid
from datavc.manifest import Pointer, loads, pointer_path, target_of

OID = "xxh128:000102030405060708090a0b0c0d0e0f"
GOOD = {"datavc": 1, "kind": "dir", "oid": OID, "size": 12288, "nfiles": 3}


def doc(**changes) -> bytes:
    d = {**GOOD, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


def refused(data: bytes, cls=InvalidInputError) -> InvalidInputError:
    with pytest.raises(cls) as info:
        loads(data, where="data.datavc")
    assert info.value.exit_code == 6 and "data.datavc" in info.value.message
    return info.value


def test_dumps_is_exact_and_deterministic():
    ptr = Pointer("dir", Oid.parse(OID), 12288, 3)
    assert ptr.dumps() == (
        b'{\n  "datavc": 1,\n  "kind": "dir",\n  "nfiles": 3,\n'
        b'  "oid": "xxh128:000102030405060708090a0b0c0d0e0f",\n  "size": 12288\n}\n')


def test_dumps_sorts_meta_and_omits_it_when_empty():
    ptr = Pointer("file", Oid.parse(OID), 1, 1, {"z": "1", "a": "2"})
    text = ptr.dumps().decode()
    assert text.index('"a"') < text.index('"z"') and text.endswith("}\n")
    assert b"meta" not in Pointer("file", Oid.parse(OID), 1, 1).dumps()


def test_loads_good_manifest():
    assert loads(doc(), where="x") == Pointer("dir", Oid.parse(OID), 12288, 3)
    assert loads(doc(meta={"k": "v"}), where="x").meta == {"k": "v"}


@pytest.mark.parametrize("version", [0, 2, "1", None, ...])
def test_unknown_version_is_refused(version):
    err = refused(doc(datavc=version), UnknownFormatError)
    assert "upgrade" in err.hint


@pytest.mark.parametrize("version", [True, 1.0])
def test_non_integer_version_is_refused(version):
    refused(doc(datavc=version))


def test_unknown_keys_are_refused():
    assert "extra" in refused(doc(extra=1)).message


@pytest.mark.parametrize("oid", ["xxh128:" + "0" * 31, "md5:" + "0" * 32, "X" * 32, 5, None, ...])
def test_bad_oid_is_refused(oid):
    refused(doc(oid=oid))


@pytest.mark.parametrize("changes", [
    {"kind": "link"}, {"kind": None}, {"kind": ...}, {"size": -1}, {"size": 1.5},
    {"size": True}, {"size": "1"}, {"size": ...}, {"nfiles": ...}, {"nfiles": -1},
    {"size": 1 << 62}, {"kind": "file", "nfiles": 2}, {"kind": "file", "nfiles": 0},
    {"meta": {"k": 1}}, {"meta": ["k"]}, {"meta": "k"}, {"meta": {"k": {"n": "v"}}},
])
def test_bad_fields_are_refused(changes):
    refused(doc(**changes))


@pytest.mark.parametrize("data", [b"", b"[]", b'"x"', b"null", b"{", b"\xff\xfe\x00",
                                  b"{'datavc': 1}"])
def test_non_objects_and_bad_json_are_refused(data):
    refused(data)


def test_merge_conflict_markers_are_refused_with_a_hint():
    data = (b'<<<<<<< HEAD\n{"datavc": 1}\n=======\n{"datavc": 1}\n>>>>>>> branch\n')
    assert "merge conflict" in refused(data).hint


def test_oversized_manifest_is_refused():
    big = doc(meta={"k": "v" * manifest.MAX_BYTES})
    assert "larger" in refused(big).message


def test_exactly_max_bytes_is_read():
    base = doc(meta={"k": ""})
    data = doc(meta={"k": "v" * (manifest.MAX_BYTES - len(base))})
    assert len(data) == manifest.MAX_BYTES
    assert loads(data, where="x").meta["k"].startswith("v")


def test_deeply_nested_json_is_refused():
    refused(b"[" * 60000)


def test_pointer_paths():
    assert pointer_path("data/images") == "data/images.datavc"
    assert target_of("data/images.datavc") == "data/images"
    for bad in ("data/images", ".datavc"):
        with pytest.raises(InvalidInputError):
            target_of(bad)


pointers = st.builds(
    Pointer,
    kind=st.just("dir"),
    oid=st.binary(min_size=16, max_size=16).map(Oid),
    size=st.integers(0, (1 << 62) - 1),
    nfiles=st.integers(0, (1 << 62) - 1),
    meta=st.dictionaries(st.text(), st.text(), max_size=5),
) | st.builds(
    Pointer,
    kind=st.just("file"),
    oid=st.binary(min_size=16, max_size=16).map(Oid),
    size=st.integers(0, (1 << 62) - 1),
    nfiles=st.just(1),
    meta=st.dictionaries(st.text(), st.text(), max_size=5),
)


@settings(deadline=None)
@given(pointers)
def test_dumps_loads_round_trip(ptr):
    data = ptr.dumps()
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    back = loads(data, where="prop")
    assert back == ptr and back.dumps() == data


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_loads_of_random_bytes_only_raises_invalid_input(data):
    try:
        loads(data, where="fuzz")
    except InvalidInputError:
        pass
