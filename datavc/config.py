"""Configuration: ``.datavc/config.toml`` (tracked, never secrets) overlaid by
``.datavc/config.local.toml`` (ignored, machine-local). Read with tomllib, validated once.

Known keys (docs/format.md §5)::

    [core]
    format = 1                      # repository format version; unknown versions are refused
    [cache]
    type = ["reflink", "copy"]      # link strategies tried in order for workspace files
    jobs = 2                        # hashing processes (default: number of CPUs)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any

from . import fsutil
from .errors import ConfigError, UnknownFormatError

FORMAT = 1
LINK_TYPES = ("reflink", "hardlink", "symlink", "copy")
DEFAULT_LINKS = ("reflink", "copy")
MAX_BYTES = 1 << 20
_KNOWN = {"core": {"format"}, "cache": {"type", "jobs"}, "remote": None}


@dataclass(frozen=True, slots=True)
class Config:
    format: int = FORMAT
    link_types: tuple[str, ...] = DEFAULT_LINKS
    jobs: int | None = None
    raw: dict[str, Any] | None = None


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config '{path}': {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"config '{path}' is larger than {MAX_BYTES} bytes")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config '{path}' is not valid TOML: {exc}",
                          hint="fix the file by hand or restore it from git") from None


def load(datavc_dir: str) -> Config:
    tracked_path = os.path.join(datavc_dir, "config.toml")
    local_path = os.path.join(datavc_dir, "config.local.toml")
    tracked, local = read_toml(tracked_path), read_toml(local_path)
    _check_keys(tracked, tracked_path)
    _check_keys(local, local_path)
    merged = _merge(tracked, local)
    return _validate(merged, tracked_path)


def _check_keys(doc: dict[str, Any], where: str) -> None:
    for section, body in doc.items():
        if section not in _KNOWN:
            raise ConfigError(f"{where}: unknown section [{section}]")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: '{section}' must be a table")
        allowed = _KNOWN[section]
        unknown = set(body) - allowed if allowed is not None else set()
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} in [{section}]")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(doc: dict[str, Any], where: str) -> Config:
    fmt = doc.get("core", {}).get("format", FORMAT)
    if type(fmt) is not int or fmt != FORMAT:
        raise UnknownFormatError(
            f"{where}: repository format {fmt!r} is not supported (this datavc knows {FORMAT})",
            hint="upgrade datavc")
    cache = doc.get("cache", {})
    links = cache.get("type", list(DEFAULT_LINKS))
    if isinstance(links, str):
        links = [links]
    if not (isinstance(links, list) and links and all(t in LINK_TYPES for t in links)):
        raise ConfigError(f"{where}: cache.type must be a list drawn from {list(LINK_TYPES)}")
    jobs = cache.get("jobs")
    if jobs is not None and not (type(jobs) is int and 1 <= jobs <= 256):
        raise ConfigError(f"{where}: cache.jobs must be an integer from 1 to 256")
    return Config(fmt, tuple(links), jobs, doc)


def dumps(doc: dict[str, Any]) -> str:
    """Write a config document (tables of scalars and string lists) as TOML."""
    lines: list[str] = []
    _dump_table(doc, [], lines)
    return "\n".join(lines).strip() + "\n"


def _dump_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if path and scalars:
        lines.extend(["", "[" + ".".join(_key(p) for p in path) + "]"])
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _dump_table(value, [*path, key], lines)


def _key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "").isalnum() and key.isascii()
    return key if bare else _value(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(_escape(c) for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write config value {value!r}")


def _escape(c: str) -> str:
    if c in ('"', "\\"):
        return "\\" + c
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\u{ord(c):04x}"
    return c


def write(path: str, doc: dict[str, Any]) -> None:
    fsutil.atomic_write(path, dumps(doc).encode())
