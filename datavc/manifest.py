"""Pointer manifests: the small JSON file ``PATH.datavc`` that git tracks (docs/format.md §2).

Example::

    {"datavc": 1, "kind": "dir", "nfiles": 3, "oid": "xxh128:<32 hex>", "size": 12288}

Deterministic: sorted keys, two-space indent, one trailing newline. ``meta`` (optional) is a
flat string-to-string map for users. A reader refuses versions it does not know (exit 6).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInputError, UnknownFormatError
from .hashing import Oid
from .listing import DIR, FILE, MAX_SIZE, Kind

VERSION = 1
SUFFIX = ".datavc"
MAX_BYTES = 64 * 1024
_KEYS = {"datavc", "kind", "oid", "size", "nfiles", "meta"}


@dataclass(frozen=True, slots=True)
class Pointer:
    """What one tracked path points to."""

    kind: Kind
    oid: Oid
    size: int
    nfiles: int
    meta: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"datavc": VERSION, "kind": self.kind, "oid": str(self.oid),
                               "size": self.size, "nfiles": self.nfiles}
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    def dumps(self) -> bytes:
        return (json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n").encode()


def loads(data: bytes, *, where: str) -> Pointer:
    """Parse and validate a pointer manifest; ``where`` names it in errors."""
    if len(data) > MAX_BYTES:
        raise InvalidInputError(f"{where}: manifest larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        hint = "resolve the merge conflict" if b"<<<<<<<" in data else "restore it from git"
        raise InvalidInputError(f"{where}: not valid JSON ({exc})", hint=hint) from None
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{where}: manifest must be a JSON object")
    return _from_dict(doc, where)


def _from_dict(doc: dict[str, Any], where: str) -> Pointer:
    version = doc.get("datavc")
    if type(version) is not int or version != VERSION:
        raise UnknownFormatError(
            f"{where}: manifest format version {version!r} is not supported "
            f"(this datavc reads version {VERSION})", hint="upgrade datavc")
    unknown = set(doc) - _KEYS
    if unknown:
        raise InvalidInputError(f"{where}: unknown keys {sorted(unknown)}")
    kind = doc.get("kind")
    if kind not in (FILE, DIR):
        raise InvalidInputError(f"{where}: kind must be 'file' or 'dir', not {kind!r}")
    size, nfiles = _count(doc, "size", where), _count(doc, "nfiles", where)
    if kind == FILE and nfiles != 1:
        raise InvalidInputError(f"{where}: a file manifest must have nfiles 1")
    try:
        oid = Oid.parse(doc.get("oid"))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc.message}") from None
    return Pointer(kind, oid, size, nfiles, _meta(doc.get("meta"), where))


def _count(doc: dict[str, Any], key: str, where: str) -> int:
    value = doc.get(key)
    if type(value) is not int or not 0 <= value < MAX_SIZE:
        raise InvalidInputError(f"{where}: '{key}' must be a non-negative integer")
    return value


def _meta(meta: object, where: str) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise InvalidInputError(f"{where}: 'meta' must map strings to strings")
    return dict(meta)


def pointer_path(target: str) -> str:
    """``data/images`` → ``data/images.datavc`` (both relative to the repo root)."""
    return target + SUFFIX


def target_of(pointer_rel: str) -> str:
    if not pointer_rel.endswith(SUFFIX) or pointer_rel == SUFFIX:
        raise InvalidInputError(f"'{pointer_rel}' is not a pointer manifest (*{SUFFIX})")
    return pointer_rel[: -len(SUFFIX)]
