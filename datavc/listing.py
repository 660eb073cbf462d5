"""Listing objects: one per directory, the nodes of the Merkle tree (docs/format.md §3).

Encoding (format version 1), canonical msgpack::

    ["datavc.listing", 1, [[name, kind, oid, size, mode, nfiles], ...]]

``name`` is the raw file-name bytes (msgpack bin), entries sorted by those bytes, unique;
``kind`` is ``"file"`` or ``"dir"``; ``oid`` the 16-byte digest (bin); ``size`` the bytes of
the file or of everything below the directory; ``mode`` 0o644 or 0o755 (directories 0o755);
``nfiles`` 1 for a file, the number of files below a directory. The bytes are canonical: a
decoder re-encodes what it read and refuses anything that does not round-trip exactly, so
one tree has exactly one id on every machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, cast

import msgpack

from .errors import InvalidInputError, UnknownFormatError
from .hashing import DIGEST_SIZE, Oid
from .paths import check_name, find_collisions

MAGIC = "datavc.listing"
VERSION = 1
FILE: Literal["file"] = "file"
DIR: Literal["dir"] = "dir"
Kind = Literal["file", "dir"]
MODES = (0o644, 0o755)
MAX_ENTRIES = 1_000_000
MAX_SIZE = 1 << 62


@dataclass(frozen=True, slots=True)
class Entry:
    """One name in a directory listing."""

    name: str
    kind: Kind
    oid: Oid
    size: int
    mode: int = 0o644
    nfiles: int = 1

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "oid": str(self.oid),
                "size": self.size, "mode": oct(self.mode), "nfiles": self.nfiles}


def encode(rows: list[list[Any]]) -> bytes:
    """Encode raw rows ``[name_bytes, kind, digest, size, mode, nfiles]``, already sorted."""
    return msgpack.packb([MAGIC, VERSION, rows], use_bin_type=True)


def encode_entries(entries: list[Entry]) -> bytes:
    rows = sorted(
        [os.fsencode(e.name), e.kind, e.oid.digest, e.size, e.mode, e.nfiles] for e in entries
    )
    return encode(rows)


def decode(data: bytes, *, where: str) -> list[Entry]:
    """Parse and validate a listing; ``where`` names it in errors (e.g. its oid)."""
    rows = _rows(data, where)
    entries = [_entry(row, where) for row in rows]
    _check_order(rows, entries, where)
    if encode(rows) != data:
        raise InvalidInputError(f"listing {where} is not in canonical encoding")
    return entries


def decode_refs(data: bytes, *, where: str) -> list[tuple[Kind, bytes, int, int]]:
    """The (kind, digest, size, nfiles) of each entry of a listing, for walks that need
    only the ids below it (counting what the cache holds): the header, each entry's kind,
    id and counts, and the canonical encoding are checked; names are not decoded or
    validated, as nothing is written under them."""
    rows = _rows(data, where)
    out = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 6):
            raise InvalidInputError(f"listing {where}: malformed entry {row!r:.80}")
        _, kind, digest, size, _, nfiles = row
        if (kind not in (FILE, DIR) or not (isinstance(digest, bytes)
                                            and len(digest) == DIGEST_SIZE)
                or not (_is_count(size) and _is_count(nfiles))):
            raise InvalidInputError(f"listing {where}: malformed entry {row!r:.80}")
        out.append((cast(Kind, kind), digest, cast(int, size), cast(int, nfiles)))
    if encode(rows) != data:
        raise InvalidInputError(f"listing {where} is not in canonical encoding")
    return out


def _rows(data: bytes, where: str) -> list[list[object]]:
    """The raw entry rows of a listing whose msgpack and header are sound."""
    try:
        top = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True,
                              max_bin_len=1 << 16, max_str_len=1 << 16,
                              max_array_len=MAX_ENTRIES, max_map_len=0)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise InvalidInputError(f"listing {where} is not valid msgpack: {exc}") from None
    return _check_header(top, where)


def _check_header(top: object, where: str) -> list[list[object]]:
    if not (isinstance(top, list) and len(top) == 3 and top[0] == MAGIC):
        raise InvalidInputError(f"object {where} is not a datavc listing")
    if type(top[1]) is not int or top[1] != VERSION:
        raise UnknownFormatError(
            f"listing {where} has format version {top[1]!r}; this datavc reads version "
            f"{VERSION}", hint="upgrade datavc")
    if not isinstance(top[2], list):
        raise InvalidInputError(f"listing {where}: entries must be a list")
    return top[2]


def _entry(row: object, where: str) -> Entry:
    if not (isinstance(row, list) and len(row) == 6):
        raise InvalidInputError(f"listing {where}: malformed entry {row!r:.80}")
    raw, kind, digest, size, mode, nfiles = row
    if not isinstance(raw, bytes):
        raise InvalidInputError(f"listing {where}: entry name must be bytes")
    name = check_name(os.fsdecode(raw), where=f"listing {where}")
    if kind not in (FILE, DIR):
        raise InvalidInputError(f"listing {where}: unknown kind {kind!r} for {name!r}")
    if not (isinstance(digest, bytes) and len(digest) == DIGEST_SIZE):
        raise InvalidInputError(f"listing {where}: bad object id for {name!r}")
    if not (_is_count(size) and _is_count(nfiles)):
        raise InvalidInputError(f"listing {where}: bad size or file count for {name!r}")
    bad_mode = type(mode) is not int or mode not in MODES or (kind == DIR and mode != 0o755)
    if bad_mode or (kind == FILE and nfiles != 1):
        raise InvalidInputError(f"listing {where}: bad mode or count for {name!r}")
    return Entry(name, kind, Oid(digest), size, mode, nfiles)


def _is_count(value: object) -> bool:
    return type(value) is int and 0 <= value < MAX_SIZE


def _check_order(rows: list[list[object]], entries: list[Entry], where: str) -> None:
    names = [row[0] for row in rows]
    if any(a >= b for a, b in zip(names, names[1:], strict=False)):  # type: ignore[operator]
        raise InvalidInputError(f"listing {where}: entries are not sorted and unique")
    clashes = find_collisions([e.name for e in entries])
    if clashes:
        a, b = clashes[0]
        raise InvalidInputError(
            f"listing {where}: names {a!r} and {b!r} collide on case-insensitive systems")
