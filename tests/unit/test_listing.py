"""listing: the canonical, versioned msgpack encoding of one directory (a Merkle node)."""

from __future__ import annotations

import os
import tracemalloc
import unicodedata

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datavc import listing
from datavc.errors import InvalidInputError, UnknownFormatError
from datavc.hashing import Oid, hash_bytes
from datavc.listing import Entry, decode, encode, encode_entries
from datavc.paths import check_name, fold

D0 = bytes(range(16))
D1 = b"\x11" * 16
DF = b"\xff" * 16
GOLDEN_ENTRIES = [
    Entry("sub", "dir", Oid(DF), 2**32, 0o755, 3),
    Entry("a.txt", "file", Oid(D0), 5),
    Entry("run.sh", "file", Oid(D1), 70000, 0o755, 1),
]
GOLDEN_HEX = (
    "93ae6461746176632e6c697374696e67019396c405612e747874a466696c65c410000102030405060708090a"
    "0b0c0d0e0f05cd01a40196c40672756e2e7368a466696c65c41011111111111111111111111111111111ce00"
    "011170cd01ed0196c403737562a3646972c410ffffffffffffffffffffffffffffffffcf0000000100000000"
    "cd01ed03"
)
GOLDEN_ID = "xxh128:78015f2d8ca3f49541b7f2540cf2122a"


def test_golden_vector_bytes_and_id():
    data = encode_entries(GOLDEN_ENTRIES)
    assert data.hex() == GOLDEN_HEX
    assert str(hash_bytes(data)) == GOLDEN_ID


def test_golden_vector_is_what_the_msgpack_spec_says():
    """The same bytes assembled by hand from the msgpack spec."""
    fixarray3, fixarray6 = b"\x93", b"\x96"
    expected = b"".join([
        fixarray3, b"\xae" + b"datavc.listing",  # fixstr of 14 bytes
        b"\x01",  # positive fixint: format version 1
        fixarray3,  # three entries, sorted by name bytes
        fixarray6, b"\xc4\x05a.txt", b"\xa4file", b"\xc4\x10" + D0,  # bin8 name, fixstr, bin8
        b"\x05", b"\xcd\x01\xa4", b"\x01",  # size fixint 5, mode uint16 0o644, nfiles 1
        fixarray6, b"\xc4\x06run.sh", b"\xa4file", b"\xc4\x10" + D1,
        b"\xce\x00\x01\x11\x70", b"\xcd\x01\xed", b"\x01",  # uint32 70000, uint16 0o755
        fixarray6, b"\xc4\x03sub", b"\xa3dir", b"\xc4\x10" + DF,
        b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00", b"\xcd\x01\xed", b"\x03",  # uint64 2**32
    ])
    assert expected.hex() == GOLDEN_HEX


def test_golden_vector_decodes_sorted():
    entries = decode(bytes.fromhex(GOLDEN_HEX), where="golden")
    assert [e.name for e in entries] == ["a.txt", "run.sh", "sub"]
    assert entries[2] == GOLDEN_ENTRIES[0]


def test_entry_order_does_not_change_the_bytes():
    assert encode_entries(GOLDEN_ENTRIES[::-1]) == encode_entries(GOLDEN_ENTRIES)


def test_empty_listing():
    data = encode_entries([])
    assert data == b"\x93\xaedatavc.listing\x01\x90"
    assert decode(data, where="e") == []


def test_entry_to_dict():
    assert GOLDEN_ENTRIES[0].to_dict() == {"name": "sub", "kind": "dir", "oid": str(Oid(DF)),
                                           "size": 2**32, "mode": "0o755", "nfiles": 3}


def test_non_utf8_names_round_trip():
    name = os.fsdecode(b"caf\xe9")
    entries = decode(encode_entries([Entry(name, "file", Oid(D0), 1)]), where="x")
    assert entries[0].name == name


# ------------------------------------------------------------------ refusals


def row(name=b"a", kind="file", digest=D0, size=1, mode=0o644, nfiles=1):
    return [name, kind, digest, size, mode, nfiles]


def raw(rows, *, magic=listing.MAGIC, version=1) -> bytes:
    return msgpack.packb([magic, version, rows], use_bin_type=True)


def refused(data: bytes) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as info:
        decode(data, where="L1")
    assert info.value.exit_code == 6 and "L1" in info.value.message
    return info.value


@pytest.mark.parametrize("version", [0, 2, 99, "1"])
def test_unknown_version_is_refused(version):
    with pytest.raises(UnknownFormatError) as info:
        decode(raw([], version=version), where="L1")
    assert info.value.exit_code == 6 and "upgrade" in info.value.hint


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"garbage!", os.urandom(64), b"\x93\xaedatavc.listing\x01",
    msgpack.packb({"a": 1}), msgpack.packb([1, 2, 3]), msgpack.packb(["datavc.tree", 1, []]),
    msgpack.packb([listing.MAGIC, 1]), msgpack.packb([listing.MAGIC, 1, {}]),
    raw([]) + b"\x00",  # trailing bytes
])
def test_garbage_is_refused(data):
    refused(data)


def _swap(old: str, new: str) -> bytes:
    assert GOLDEN_HEX.count(old) == 1
    return bytes.fromhex(GOLDEN_HEX.replace(old, new))


@pytest.mark.parametrize(("old", "new"), [
    ("05cd01a401", "05ce000001a401"),  # mode as uint32 instead of uint16
    ("05cd01a401", "d005cd01a401"),  # size as int8 instead of fixint
    ("05cd01a401", "cc05cd01a401"),  # size as uint8 instead of fixint
    ("a466696c65c410000102", "d90466696c65c410000102"),  # kind as str8 instead of fixstr
    ("c405612e747874", "c50005612e747874"),  # name as bin16 instead of bin8
    ("9396c405612e", "dc000396c405612e"),  # entries as array16 instead of fixarray
    ("6e6701", "6e67d001"),  # version as int8
])
def test_non_canonical_encoding_is_refused(old, new):
    assert "canonical" in refused(_swap(old, new)).message


def test_version_as_bool_is_refused():
    refused(bytes.fromhex(GOLDEN_HEX.replace("6e6701", "6e67c3", 1)))


@pytest.mark.parametrize("rows", [
    [row(b"b"), row(b"a")],  # unsorted
    [row(b"a"), row(b"a")],  # duplicate
    [row(b"a", "dir", mode=0o755, nfiles=0), row(b"a")],  # duplicate across kinds
])
def test_unsorted_or_duplicate_names_are_refused(rows):
    assert "sorted" in refused(raw(rows)).message


NFC, NFD = unicodedata.normalize("NFC", "é").encode(), unicodedata.normalize("NFD", "é").encode()


@pytest.mark.parametrize("names", [[b"A", b"a"], sorted([NFC, NFD]),
                                   sorted([b"STRASSE", "Straße".encode()])])
def test_case_and_normalisation_collisions_are_refused(names):
    assert "collide" in refused(raw([row(n) for n in names])).message


@pytest.mark.parametrize("name", [b"..", b".", b".git", b".GIT", b".datavc", b".DATAVC",
                                  b"a/b", b"a\\b", b"", b"a\0b", b"git~1", b".git.",
                                  b"x" * 256])
def test_unsafe_names_are_refused(name):
    refused(raw([row(name)]))


@pytest.mark.parametrize("bad", [
    row("a"),  # name as str, not bin
    row(kind="link"), row(kind=b"file"), row(kind=None),
    row(digest=b"\0" * 15), row(digest=b"\0" * 17), row(digest="0" * 16), row(digest=None),
    row(size=-1), row(size=1.0), row(size=None), row(size=True), row(size=1 << 62),
    row(mode=0o600), row(mode=0o777), row(mode=0o100644), row(mode=None),
    row(kind="dir", mode=0o644, nfiles=1),  # directories are 0o755
    row(nfiles=0), row(nfiles=2), row(nfiles=-1),  # a file counts exactly one file
    row(kind="dir", mode=0o755, nfiles=-1),
    [b"a", "file", D0, 1, 0o644],  # five fields
    [b"a", "file", D0, 1, 0o644, 1, 0],  # seven fields
    b"a",  # not an array
])
def test_bad_entries_are_refused(bad):
    refused(raw([bad]))


@pytest.mark.parametrize("bad", [row(mode=420.0), row(kind="dir", mode=493.0, nfiles=0)])
def test_float_mode_is_refused(bad):
    refused(raw([bad]))


def test_huge_array_header_is_refused_without_allocating():
    data = b"\x93\xaedatavc.listing\x01\xdd\xff\xff\xff\xff"  # claims 4 billion entries
    tracemalloc.start()
    try:
        refused(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_nested_huge_array_headers_stay_bounded():
    data = b"\x93\xaedatavc.listing\x01" + b"\xdd\x00\x0f\x42\x40" * 100_000
    tracemalloc.start()
    try:
        refused(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 << 20


def test_huge_bin_header_is_refused():
    refused(b"\x93\xaedatavc.listing\x01\x91\x96\xc6\xff\xff\xff\xff")


# ----------------------------------------------------------------- properties

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda n: _safe(n))


def _safe(name: str) -> bool:
    try:
        check_name(name)
    except InvalidInputError:
        return False
    return True


@st.composite
def entries(draw):
    chosen = draw(st.lists(names, unique_by=fold, max_size=12))
    out = []
    for name in chosen:
        digest = Oid(draw(st.binary(min_size=16, max_size=16)))
        size = draw(st.integers(0, listing.MAX_SIZE - 1))
        if draw(st.booleans()):
            out.append(Entry(name, "dir", digest, size, 0o755,
                             draw(st.integers(0, listing.MAX_SIZE - 1))))
        else:
            out.append(Entry(name, "file", digest, size, draw(st.sampled_from(listing.MODES))))
    return out


@settings(deadline=None)
@given(entries())
def test_encode_decode_round_trip(items):
    data = encode_entries(items)
    back = decode(data, where="prop")
    assert back == sorted(items, key=lambda e: os.fsencode(e.name))
    assert encode_entries(back) == data


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_decode_of_random_bytes_only_raises_invalid_input(data):
    try:
        decode(data, where="fuzz")
    except InvalidInputError:
        pass


@settings(deadline=None)
@given(st.integers(0, len(GOLDEN_HEX) // 2 - 1), st.integers(1, 255))
def test_decode_of_a_corrupted_listing_raises_only_invalid_input(pos, flip):
    data = bytearray.fromhex(GOLDEN_HEX)
    data[pos] ^= flip
    try:
        decode(bytes(data), where="fuzz")
    except InvalidInputError:
        pass


def test_encode_is_msgpack_of_the_rows():
    rows = [row()]
    assert encode(rows) == raw(rows)
