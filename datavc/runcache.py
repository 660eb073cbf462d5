"""The run-cache: which outputs a stage produced from which inputs (docs/format.md,
"The run-cache").

A run's **key** is the XXH3-128 id of the canonical JSON of (format version, command,
each dependency's id, each param value, the output paths). Its **entry** is a small
object in the cache, canonical JSON of (format version, key, each output as the lock
records it), so entries travel between caches and remotes like any object. The **index**
``<cache>/runs/<2 hex>/<30 hex>`` (the key's hex) holds the id of the key's latest entry;
it is written atomically, after the entry object is published, and can be re-derived from
the entries (each names its key).

Everything read here is untrusted: an index file or entry that fails validation, names
another key or other outputs, or names objects missing from the cache, is ignored (the
stage runs), never trusted.
"""

from __future__ import annotations

import json
import os
from typing import Any

from . import fsutil, stagelock
from .errors import DatavcError, InvalidInputError
from .hashing import Oid, hash_bytes
from .objects import FANOUT, ObjectStore
from .stagelock import OutLock

VERSION = 1
RUNS_DIR = "runs"
MAX_ENTRY = 4 << 20
_ENTRY_KEYS = {"key", "outs", "runcache"}


def canonical(doc: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same document always gives the same bytes."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def key(cmd: str | list[str], deps: dict[str, Oid], params: dict[str, Any],
        outs: list[str] | tuple[str, ...]) -> Oid | None:
    """The run-cache key of a run; None when a param value has no JSON form."""
    doc = {"runcache": VERSION, "cmd": cmd, "deps": {p: str(o) for p, o in deps.items()},
           "params": params, "outs": sorted(outs)}
    try:
        return hash_bytes(canonical(doc))
    except (TypeError, ValueError):
        return None


def entry_bytes(run_key: Oid, outs: dict[str, OutLock]) -> bytes:
    return canonical({"runcache": VERSION, "key": str(run_key),
                      "outs": {p: o.to_dict() for p, o in outs.items()}})


def parse_entry(data: bytes, *, where: str) -> tuple[Oid, dict[str, OutLock]]:
    """An entry's key and outputs; InvalidInputError (via stagelock's validators) when it
    is not a valid entry of this version."""
    if len(data) > MAX_ENTRY:
        raise InvalidInputError(f"{where} is larger than {MAX_ENTRY} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInputError(f"{where} is not valid JSON") from None
    if not isinstance(doc, dict) or set(doc) != _ENTRY_KEYS or doc["runcache"] != VERSION \
            or not isinstance(doc["outs"], dict):
        raise InvalidInputError(f"{where} is not a run-cache entry of version {VERSION}")
    run_key = stagelock._oid(doc["key"], where)
    outs = {stagelock._path(p, where): stagelock._out(o, where)
            for p, o in doc["outs"].items()}
    return run_key, outs


def index_path(store: ObjectStore, run_key: Oid) -> str:
    return os.path.join(store.root, RUNS_DIR, run_key.hex[:FANOUT], run_key.hex[FANOUT:])


def lookup(store: ObjectStore, run_key: Oid) -> tuple[Oid, dict[str, OutLock]] | None:
    """The entry id and outputs recorded for ``run_key``; None when there is no valid
    entry. Raises DatavcError (to be reported, then ignored) when the index or the entry
    is damaged."""
    path = index_path(store, run_key)
    try:
        with open(path, "rb") as f:
            text = f.read(128)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DatavcError(f"cannot read run-cache index {path}: {exc.strerror}") from None
    entry_id = Oid.parse(text.decode("ascii", "replace").strip())
    got_key, outs = parse_entry(store.read_bytes(entry_id, limit=MAX_ENTRY),
                                where=f"run-cache entry {entry_id}")
    if got_key != run_key:
        raise DatavcError(f"run-cache entry {entry_id} belongs to another key")
    return entry_id, outs


def write_index(store: ObjectStore, run_key: Oid, entry_id: Oid) -> None:
    """Point ``run_key`` at ``entry_id`` (an object already published)."""
    path = index_path(store, run_key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fsutil.atomic_write(path, f"{entry_id}\n".encode(), tmp_dir=store.tmp_dir)
