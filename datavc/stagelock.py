"""``datavc.lock``: what each stage last ran with (docs/format.md §9).

Deterministic JSON (sorted keys, 2-space indent, one trailing newline) with a format
version; a reader that meets another version refuses it (exit 6). Per stage: the command,
each dependency's content id, the parameter values, and each output as a pointer manifest
would record it (kind, id, size, number of files). A lock is untrusted input: bounded in
size, every path and id validated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInputError, UnknownFormatError
from .hashing import Oid
from .paths import split_relpath
from .pipeline import STAGE_NAME

FILENAME = "datavc.lock"
VERSION = 1
MAX_BYTES = 16 << 20
_STAGE_KEYS = {"cmd", "deps", "outs", "params"}
_OUT_KEYS = {"kind", "oid", "size", "nfiles"}
_PROBE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class OutLock:
    """One output as stored in the cache: the fields of a pointer manifest."""

    kind: str
    oid: Oid
    size: int
    nfiles: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "oid": str(self.oid), "size": self.size,
                "nfiles": self.nfiles}


@dataclass(frozen=True)
class StageLock:
    cmd: str | list[str]
    deps: dict[str, Oid] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    outs: dict[str, OutLock] = field(default_factory=dict)
    probes: dict[str, Oid] = field(default_factory=dict)  # name -> id of its output

    def to_dict(self) -> dict[str, Any]:
        doc = {"cmd": self.cmd, "deps": {p: str(o) for p, o in self.deps.items()},
               "params": dict(self.params),
               "outs": {p: o.to_dict() for p, o in self.outs.items()}}
        if self.probes:  # absent without probes: such locks stay as they were
            doc["probes"] = {n: str(o) for n, o in self.probes.items()}
        return doc


def dumps(stages: dict[str, StageLock]) -> bytes:
    doc = {"version": VERSION, "stages": {n: s.to_dict() for n, s in stages.items()}}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def loads(data: bytes, *, where: str = FILENAME) -> dict[str, StageLock]:
    if len(data) > MAX_BYTES:
        raise InvalidInputError(f"{where} is larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{where} is not valid JSON: {exc}",
                                hint=f"restore it from git, or delete {FILENAME} to rerun "
                                     "every stage") from None
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{where} is not a JSON object")
    version = doc.get("version")
    if version != VERSION:
        raise UnknownFormatError(f"{where} has format version {version!r}; this datavc "
                                 f"reads version {VERSION}", hint="upgrade datavc")
    if set(doc) != {"version", "stages"} or not isinstance(doc["stages"], dict):
        raise InvalidInputError(f"{where}: expected exactly the keys 'stages' and 'version'")
    return {name: _stage(name, body, where) for name, body in doc["stages"].items()}


def _stage(name: str, body: Any, where: str) -> StageLock:
    at = f"{where}, stage '{name}'"
    if not STAGE_NAME.fullmatch(name):
        raise InvalidInputError(f"{where}: invalid stage name {name!r}")
    if not isinstance(body, dict) or set(body) - {"probes"} != _STAGE_KEYS:
        raise InvalidInputError(f"{at}: expected exactly the keys {sorted(_STAGE_KEYS)} "
                                "(and 'probes')")
    cmd = body["cmd"]
    if not (isinstance(cmd, str) or (isinstance(cmd, list)
                                     and all(isinstance(a, str) for a in cmd))):
        raise InvalidInputError(f"{at}: 'cmd' must be a string or a list of strings")
    deps, outs, params = body["deps"], body["outs"], body["params"]
    if not (isinstance(deps, dict) and isinstance(outs, dict) and isinstance(params, dict)):
        raise InvalidInputError(f"{at}: 'deps', 'outs' and 'params' must be objects")
    probes = body.get("probes", {})
    if not isinstance(probes, dict) or not all(isinstance(n, str) and _PROBE.fullmatch(n)
                                               for n in probes):
        raise InvalidInputError(f"{at}: 'probes' must be an object of probe names")
    return StageLock(cmd, {_path(p, at): _oid(o, at) for p, o in deps.items()}, params,
                     {_path(p, at): _out(o, at) for p, o in outs.items()},
                     {n: _oid(o, at) for n, o in probes.items()})


def _path(path: str, at: str) -> str:
    split_relpath(path, where=at)
    return path


def _oid(text: Any, at: str) -> Oid:
    try:
        return Oid.parse(text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{at}: {exc.message}") from None


def _out(body: Any, at: str) -> OutLock:
    if not isinstance(body, dict) or set(body) != _OUT_KEYS:
        raise InvalidInputError(f"{at}: an output must have exactly the keys "
                                f"{sorted(_OUT_KEYS)}")
    kind, size, nfiles = body["kind"], body["size"], body["nfiles"]
    if kind not in ("file", "dir"):
        raise InvalidInputError(f"{at}: unknown output kind {kind!r}")
    for value in (size, nfiles):
        if type(value) is not int or value < 0:
            raise InvalidInputError(f"{at}: 'size' and 'nfiles' must be non-negative integers")
    return OutLock(kind, _oid(body["oid"], at), size, nfiles)
