"""hashing: Oid parsing and formatting, XXH3-128 of bytes, fds and streamed files."""

from __future__ import annotations

import os

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from datavc.errors import InvalidInputError
from datavc.hashing import CHUNK, Oid, hash_bytes, hash_fd, hash_file

EMPTY = "xxh128:99aa06d3014798d86001c324468d497f"  # XXH3-128 of b"", from the xxHash spec


def test_hash_of_empty_is_the_known_xxh3_128_vector():
    assert str(hash_bytes(b"")) == EMPTY


def test_str_and_hex():
    oid = Oid(bytes(range(16)))
    assert oid.hex == "000102030405060708090a0b0c0d0e0f"
    assert str(oid) == "xxh128:000102030405060708090a0b0c0d0e0f"


@settings(deadline=None)
@given(st.binary(min_size=16, max_size=16))
def test_parse_str_round_trip(digest):
    oid = Oid(digest)
    assert Oid.parse(str(oid)) == oid
    assert Oid.parse(oid.hex) == oid  # a bare id is accepted too


@pytest.mark.parametrize("text", [
    "", "xxh128:", "xxh128:" + "0" * 31, "xxh128:" + "0" * 33, "xxh128:" + "A" * 32,
    "md5:" + "0" * 32, "XXH128:" + "0" * 32, "xxh128:" + "g" * 32, " xxh128:" + "0" * 32,
    "xxh128:" + "0" * 32 + "\n",
])
def test_parse_refuses_malformed_ids(text):
    with pytest.raises(InvalidInputError) as info:
        Oid.parse(text)
    assert info.value.exit_code == 6


@pytest.mark.parametrize("value", [None, 1, b"0" * 32, ["x"]])
def test_parse_refuses_non_strings(value):
    with pytest.raises(InvalidInputError):
        Oid.parse(value)


@pytest.mark.parametrize("digest", [b"", b"\0" * 15, b"\0" * 17, bytearray(16), "0" * 16])
def test_oid_requires_16_bytes(digest):
    with pytest.raises(InvalidInputError):
        Oid(digest)


def test_oids_are_ordered_hashable_values():
    a, b = Oid(b"\0" * 16), Oid(b"\1" * 16)
    assert a < b and sorted([b, a]) == [a, b]
    assert {a, Oid(b"\0" * 16)} == {a}


def test_hash_file_streams_big_files(tmp_path):
    data = os.urandom(CHUNK * 2 + 12345)
    path = tmp_path / "big"
    path.write_bytes(data)
    assert hash_file(path) == (hash_bytes(data), len(data))
    assert hash_bytes(data).digest == xxhash.xxh3_128_digest(data)


def test_hash_fd_with_a_small_buffer(tmp_path):
    data = b"0123456789" * 1000
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert hash_fd(fd, bytearray(7)) == (hash_bytes(data), len(data))
    finally:
        os.close(fd)


def test_hash_file_of_empty_file(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    assert hash_file(tmp_path / "e") == (Oid.parse(EMPTY), 0)
