"""Configuration: ``.datavc/config.toml`` (tracked, never secrets) overlaid by
``.datavc/config.local.toml`` (ignored, machine-local). Read with tomllib, validated once.

Known keys (docs/format.md §5)::

    [core]
    format = 1                      # repository format version; unknown versions are refused
    [cache]
    type = ["reflink", "copy"]      # link strategies tried in order for workspace files
    jobs = 2                        # hashing processes (default: number of CPUs)
    pack = true                     # many small files of an add go into packs (copy only)
    [core] remote = "storage"       # the default remote
    [remote.storage]                # one table per remote
    url = "s3://bucket/prefix"      # or a directory path / file:///abs/path
    endpoint_url, region, profile, path_style
    access_key_id, secret_access_key, session_token   # config.local.toml only
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from . import fsutil
from .errors import ConfigError, DatavcError, UnknownFormatError

FORMAT = 1
LINK_TYPES = ("reflink", "hardlink", "symlink", "copy")
DEFAULT_LINKS = ("reflink", "copy")
MAX_BYTES = 1 << 20
_KNOWN = {"core": {"format", "remote"}, "cache": {"type", "jobs", "pack"}, "remote": None}
SECRET_KEYS = frozenset({"access_key_id", "secret_access_key", "session_token"})
REMOTE_KEYS = {"url": str, "endpoint_url": str, "region": str, "profile": str,
               "path_style": bool, "pack": bool, **{k: str for k in SECRET_KEYS}}
_REMOTE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class Config:
    format: int = FORMAT
    link_types: tuple[str, ...] = DEFAULT_LINKS
    jobs: int | None = None
    raw: dict[str, Any] | None = None
    pack: bool = True


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = fsutil.read_limited(f, MAX_BYTES)
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
    check_no_secrets(tracked, tracked_path)
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
        if section == "remote":
            for name, table in body.items():
                _check_remote(name, table, where)


def check_remote_name(name: str) -> None:
    if not _REMOTE_NAME.fullmatch(name):
        raise ConfigError(f"invalid remote name {name!r}",
                          hint="use letters, digits, '_', '.' and '-' (at most 64)")


def _check_remote(name: str, table: Any, where: str) -> None:
    check_remote_name(name)
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [remote.{name}] must be a table")
    for key, value in table.items():
        kind = REMOTE_KEYS.get(key)
        if kind is None:
            raise ConfigError(f"{where}: unknown key {key!r} in [remote.{name}]",
                              hint=f"known keys: {', '.join(sorted(REMOTE_KEYS))}")
        if type(value) is not kind:
            raise ConfigError(f"{where}: remote.{name}.{key} must be a "
                              f"{'boolean' if kind is bool else 'string'}")
    url = table.get("url")
    if isinstance(url, str):
        check_url(url, where=f"{where}: remote.{name}.url")


def check_url(url: str, *, where: str) -> None:
    """A remote URL: ``s3://BUCKET[/PREFIX]``, ``file:///ABS/PATH`` or a plain path."""
    from urllib.parse import urlsplit

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not url or "\0" in url or any(ord(c) < 0x20 for c in url):
        raise ConfigError(f"{where}: not a usable remote URL: {url!r}")
    if scheme not in ("", "s3", "file"):
        raise ConfigError(f"{where}: unsupported remote scheme '{scheme}://' in {redact(url)}",
                          hint="use s3://BUCKET/PREFIX (any S3-compatible store, with "
                               "endpoint_url), file:///ABS/PATH or a directory path")
    if scheme == "s3" and not urlsplit(url).hostname:
        raise ConfigError(f"{where}: {redact(url)} names no bucket", hint="s3://BUCKET/PREFIX")


def check_no_secrets(doc: dict[str, Any], where: str) -> None:
    """The tracked config names no credential: no secret key, no password in a URL."""
    from urllib.parse import urlsplit

    for name, table in (doc.get("remote") or {}).items():
        secret = sorted(SECRET_KEYS & set(table))
        if secret:
            raise ConfigError(f"{where}: remote.{name}.{secret[0]} is a credential, and this "
                              "file is tracked by git",
                              hint=f"remove it; set it with `datavc remote modify {name} "
                                   f"--local {secret[0]} VALUE`, or use AWS_* variables or a "
                                   "profile")
        url = table.get("url")
        if isinstance(url, str) and urlsplit(url).password is not None:
            raise ConfigError(f"{where}: remote.{name}.url holds a password ({redact(url)}), "
                              "and this file is tracked by git",
                              hint="remove the user-info from the URL; put credentials in "
                                   "config.local.toml with --local")


def redact(url: str) -> str:
    """``url`` without user-info, query or fragment (where credentials hide), for messages.

    ``https://key:secret@host:9000/b?X-Amz-Signature=x`` -> ``https://***@host:9000/b?***``.
    A plain path comes back unchanged; an unparsable URL as ``<unparsable URL>``.
    """
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if not parts.scheme or len(parts.scheme) == 1:  # a path (or a drive letter)
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host += f":{port}"
    if parts.username is not None or parts.password is not None:
        host = "***@" + host
    return urlunsplit((parts.scheme, host, parts.path, "***" if parts.query else "", ""))


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
    packing = cache.get("pack", True)
    if type(packing) is not bool:
        raise ConfigError(f"{where}: cache.pack must be true or false")
    default = doc.get("core", {}).get("remote")
    if default is not None and (not isinstance(default, str)
                                or default not in (doc.get("remote") or {})):
        raise ConfigError(f"{where}: core.remote names no configured remote: {default!r}",
                          hint="see `datavc remote list`; `datavc remote default NAME`")
    for name, table in (doc.get("remote") or {}).items():
        if "url" not in table:
            raise ConfigError(f"{where}: [remote.{name}] has no url",
                              hint=f"datavc remote modify {name} url URL")
    return Config(fmt, tuple(links), jobs, doc, packing)


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


# ------------------------------------------------------------- editing remotes

def _paths(datavc_dir: str) -> tuple[str, str]:
    return os.path.join(datavc_dir, "config.toml"), os.path.join(datavc_dir, "config.local.toml")


def _edit(datavc_dir: str, local: bool, change: Any) -> None:
    """Apply ``change(doc)`` to one config file, validate the result as a whole (with the
    other file), and write it atomically. Nothing is written when validation fails."""
    tracked_path, local_path = _paths(datavc_dir)
    path = local_path if local else tracked_path
    doc = read_toml(path)
    change(doc)
    for section in [k for k, v in doc.items() if isinstance(v, dict) and not v]:
        del doc[section]
    tracked = doc if not local else read_toml(tracked_path)
    other = doc if local else read_toml(local_path)
    _check_keys(doc, path)
    check_no_secrets(tracked, tracked_path)
    _validate(_merge(tracked, other), path)
    write(path, doc)


def _no_remote(name: str) -> DatavcError:
    return DatavcError(f"no remote named {name!r}", hint="see `datavc remote list`")


def remote_add(datavc_dir: str, name: str, url: str, *, local: bool = False,
               default: bool = False, force: bool = False) -> None:
    check_remote_name(name)
    if not force and name in (load(datavc_dir).raw or {}).get("remote", {}):
        raise DatavcError(f"remote {name!r} already exists",
                          hint=f"use `datavc remote modify {name} url URL`, or --force")

    def change(doc: dict[str, Any]) -> None:
        doc.setdefault("remote", {})[name] = {"url": url}
        if default:
            doc.setdefault("core", {})["remote"] = name

    _edit(datavc_dir, local, change)


def remote_modify(datavc_dir: str, name: str, key: str, value: str | None, *,
                  local: bool = False) -> None:
    """Set (or with ``value`` None, unset) one key of a remote."""
    if name not in (load(datavc_dir).raw or {}).get("remote", {}):
        raise _no_remote(name)
    kind = REMOTE_KEYS.get(key)
    if kind is None:
        raise ConfigError(f"unknown remote key {key!r}",
                          hint=f"known keys: {', '.join(sorted(REMOTE_KEYS))}")
    typed: Any = value
    if kind is bool and value is not None:
        if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise ConfigError(f"remote.{name}.{key} must be true or false, not {value!r}")
        typed = value.lower() in ("true", "yes", "1")

    def change(doc: dict[str, Any]) -> None:
        table = doc.setdefault("remote", {}).setdefault(name, {})
        if typed is None:
            table.pop(key, None)
            if not table:
                del doc["remote"][name]
        else:
            table[key] = typed

    _edit(datavc_dir, local, change)


def remote_remove(datavc_dir: str, name: str, *, local: bool = False) -> None:
    """Remove a remote (from config.local.toml only with ``local``; else from both files),
    and unset the default where it names it."""
    if name not in (load(datavc_dir).raw or {}).get("remote", {}):
        raise _no_remote(name)

    def change(doc: dict[str, Any]) -> None:
        doc.get("remote", {}).pop(name, None)
        if doc.get("core", {}).get("remote") == name:
            del doc["core"]["remote"]

    # local first: the tracked file alone must stay valid when merged with it
    for is_local in ((True,) if local else (True, False)):
        _edit(datavc_dir, is_local, change)


def remote_default(datavc_dir: str, name: str | None, *, local: bool = False) -> None:
    """Make ``name`` the default remote (None: unset the default in that file)."""
    if name is not None and name not in (load(datavc_dir).raw or {}).get("remote", {}):
        raise _no_remote(name)

    def change(doc: dict[str, Any]) -> None:
        if name is None:
            doc.get("core", {}).pop("remote", None)
        else:
            doc.setdefault("core", {})["remote"] = name

    _edit(datavc_dir, local, change)


@dataclass(frozen=True)
class RemoteInfo:
    """One configured remote as `datavc remote list` shows it: credentials never shown."""

    name: str
    url: str
    default: bool
    settings: dict[str, Any]
    local: bool  # defined (or overridden) in config.local.toml

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "url": self.url, "default": self.default,
                "settings": self.settings, "local": self.local}


def remotes(datavc_dir: str) -> list[RemoteInfo]:
    cfg = load(datavc_dir)
    raw = cfg.raw or {}
    local = read_toml(_paths(datavc_dir)[1]).get("remote", {})
    default = raw.get("core", {}).get("remote")
    out = []
    for name, table in sorted(raw.get("remote", {}).items()):
        shown = {k: ("***" if k in SECRET_KEYS else v) for k, v in sorted(table.items())
                 if k != "url"}
        out.append(RemoteInfo(name, redact(table["url"]), name == default, shown,
                              name in local))
    return out
