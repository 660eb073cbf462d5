"""Object ids: XXH3-128 digests of content, written ``xxh128:<32 hex>``.

This is the bottom layer: it knows bytes and files, nothing about caches or manifests.
Big files are streamed ``CHUNK`` bytes at a time into one reused buffer, so memory stays
constant in file size.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import xxhash

from .errors import InvalidInputError

ALGORITHM = "xxh128"
DIGEST_SIZE = 16
CHUNK = 4 * 1024 * 1024
_HEX = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True, order=True)
class Oid:
    """The id of one object: the 16-byte XXH3-128 digest of its bytes."""

    digest: bytes

    def __post_init__(self) -> None:
        if type(self.digest) is not bytes or len(self.digest) != DIGEST_SIZE:
            raise InvalidInputError(f"an object id must be {DIGEST_SIZE} bytes")

    @property
    def hex(self) -> str:
        return self.digest.hex()

    def __str__(self) -> str:
        return f"{ALGORITHM}:{self.digest.hex()}"

    @classmethod
    def parse(cls, text: object) -> Oid:
        """Parse ``xxh128:<32 lower-case hex>`` (a bare 32-hex id is accepted too)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"object id must be a string, not {type(text).__name__}")
        algo, sep, hexpart = text.partition(":")
        if not sep:
            algo, hexpart = ALGORITHM, text
        if algo != ALGORITHM:
            raise InvalidInputError(f"unknown hash algorithm '{algo}' in object id '{text}'")
        if not _HEX.fullmatch(hexpart):
            raise InvalidInputError(f"malformed object id '{text}': expected 32 lower-case hex")
        return cls(bytes.fromhex(hexpart))


def hash_bytes(data: bytes | bytearray | memoryview) -> Oid:
    return Oid(xxhash.xxh3_128_digest(data))


def hash_fd(fd: int, buf: bytearray | None = None) -> tuple[Oid, int]:
    """Hash everything readable from ``fd``; return (oid, bytes read)."""
    buf = buf if buf is not None else bytearray(CHUNK)
    view = memoryview(buf)
    hasher = xxhash.xxh3_128()
    total = 0
    while True:
        n = os.readv(fd, [buf])
        if not n:
            return Oid(hasher.digest()), total
        hasher.update(view[:n])
        total += n


def hash_file(path: str | os.PathLike[str]) -> tuple[Oid, int]:
    """Hash one file by streaming it; return (oid, size)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return hash_fd(fd)
    finally:
        os.close(fd)
