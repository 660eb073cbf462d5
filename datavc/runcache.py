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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import fsutil, stagelock
from .errors import DatavcError, InvalidInputError, ObjectMissingError
from .hashing import Oid, hash_bytes
from .objects import FANOUT, ObjectStore
from .parallel import publish
from .stagelock import OutLock, StageLock

if TYPE_CHECKING:  # imported where used: a command that needs none of them loads none
    from . import transfer
    from .remote_base import Remote

VERSION = 1
RUNS_DIR = "runs"
MAX_ENTRY = 4 << 20
_ENTRY_KEYS = {"key", "outs", "runcache"}


def canonical(doc: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same document always gives the same bytes."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def key(cmd: str | list[str], deps: dict[str, Oid], params: dict[str, Any],
        outs: list[str] | tuple[str, ...], probes: dict[str, Oid] | None = None) -> Oid | None:
    """The run-cache key of a run; None when a param value has no JSON form. Probes are
    part of the document only when the stage has some (keys of other runs stay as they
    were)."""
    doc: dict[str, Any] = {"runcache": VERSION, "cmd": cmd, "params": params,
                           "deps": {p: str(o) for p, o in deps.items()}, "outs": sorted(outs)}
    if probes:
        doc["probes"] = {n: str(o) for n, o in probes.items()}
    try:
        return hash_bytes(canonical(doc))
    except (TypeError, ValueError):
        return None


def lock_key(lock: StageLock) -> Oid | None:
    """The key of the run a lock entry records (the same inputs give the same key)."""
    return key(lock.cmd, lock.deps, lock.params, list(lock.outs), lock.probes)


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
    try:
        data = store.read_bytes(entry_id, limit=MAX_ENTRY)
    except ObjectMissingError:
        return None  # the entry was garbage-collected with its outputs: no run recorded
    got_key, outs = parse_entry(data, where=f"run-cache entry {entry_id}")
    if got_key != run_key:
        raise DatavcError(f"run-cache entry {entry_id} belongs to another key")
    return entry_id, outs


def check_entry(data: bytes, run_key: Oid, *, where: str) -> dict[str, OutLock]:
    """The outputs of entry ``data`` (from elsewhere: a remote), validated and checked to
    belong to ``run_key``; InvalidInputError otherwise."""
    got_key, outs = parse_entry(data, where=where)
    if got_key != run_key:
        raise InvalidInputError(f"{where} belongs to another key")
    return outs


def remote_entry(remote: Remote, run_key: Oid) -> tuple[bytes, dict[str, OutLock]] | None:
    """The entry ``remote`` holds for ``run_key`` and its outputs, validated
    (InvalidInputError when it is not a valid entry of that key, RemoteError when the remote
    fails); None when it holds none."""
    data = remote.get_run(run_key)
    if data is None:
        return None
    return data, check_entry(data, run_key, where=f"run-cache entry {run_key} on remote "
                                                  f"{remote.describe()}")


def keys(store: ObjectStore) -> Iterator[Oid]:
    """Every run key with an index file in the cache (other names are skipped)."""
    top = os.path.join(store.root, RUNS_DIR)
    for sub in sorted(_names(top)):
        for name in sorted(_names(os.path.join(top, sub))):
            text = sub + name
            if len(sub) == FANOUT and len(text) == 32 and all(c in "0123456789abcdef"
                                                              for c in text):
                yield Oid(bytes.fromhex(text))


def _names(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise DatavcError(f"cannot list run-cache index {directory}: {exc.strerror}") from None


def roots(outs: dict[str, OutLock]) -> list[transfer.Root]:
    """The stored trees an entry names, for transfers and completeness checks."""
    from . import transfer

    return [transfer.Root(out.kind, out.oid, out.nfiles) for out in outs.values()]


def complete(store: ObjectStore, outs: dict[str, OutLock]) -> bool:
    """Whether every object of every output is in the cache (a restore cannot fail)."""
    from . import transfer

    return all(transfer.complete(store, root) for root in roots(outs))


def record(store: ObjectStore, run_key: Oid, entry: bytes, *, jobs: int) -> Oid:
    """Record entry ``entry`` (valid, of ``run_key``): the object, published, first; then
    the index. Rewrites an entry object found damaged. Returns the entry's id."""
    entry_id = hash_bytes(entry)
    try:
        intact = store.read_bytes(entry_id, limit=MAX_ENTRY) == entry
    except DatavcError:
        intact = False  # missing, or corrupt: (re)write it
    if not intact:
        store.add_bytes(entry, replace=True)
        publish(store, jobs=jobs)
    try:
        found = lookup(store, run_key)
    except DatavcError:
        found = None
    if found is None or found[0] != entry_id:
        write_index(store, run_key, entry_id)
    return entry_id


def write_index(store: ObjectStore, run_key: Oid, entry_id: Oid) -> None:
    """Point ``run_key`` at ``entry_id`` (an object already published)."""
    path = index_path(store, run_key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fsutil.atomic_write(path, f"{entry_id}\n".encode(), tmp_dir=store.tmp_dir)
