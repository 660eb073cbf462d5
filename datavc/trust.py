"""Trust in a clone's pipeline commands, recorded in the user's own config, outside any
repository: ``$XDG_CONFIG_HOME/datavc/trust.json`` (``~/.config/datavc/trust.json`` when the
variable is unset). A clone carries ``datavc.toml`` from whoever pushed it; its commands run
only when this user has trusted exactly those bytes for this work tree.

The file (docs/format.md §10)::

    {"repos": {"/abs/work/tree": "<sha256 hex of datavc.toml>"}, "version": 1}
"""

from __future__ import annotations

import json
import os

from . import fsutil
from .errors import ConfigError, from_oserror

VERSION = 1
MAX_BYTES = 4 << 20


def path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "datavc", "trust.json")


def digest(data: bytes) -> str:
    import hashlib  # here: OpenSSL's load costs every command otherwise

    return hashlib.sha256(data).hexdigest()


def _load() -> dict[str, str]:
    where = path()
    try:
        with open(where, "rb") as f:
            data = fsutil.read_limited(f, MAX_BYTES)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise from_oserror(exc, where, "read") from exc
    try:
        doc = json.loads(data.decode("utf-8")) if len(data) <= MAX_BYTES else None
    except (UnicodeDecodeError, ValueError):
        doc = None
    repos = doc.get("repos") if isinstance(doc, dict) and doc.get("version") == VERSION else None
    if not isinstance(repos, dict) or not all(isinstance(v, str) for v in repos.values()):
        raise ConfigError(f"the trust file '{where}' is invalid",
                          hint="delete it and run `datavc trust` again in each repository")
    return repos


def is_trusted(root: str, sha256: str) -> bool:
    return _load().get(os.path.realpath(root)) == sha256


def record(root: str, sha256: str) -> str:
    """Trust pipeline bytes of digest ``sha256`` in work tree ``root``; the trust file."""
    repos = _load()
    repos[os.path.realpath(root)] = sha256
    where = path()
    data = json.dumps({"version": VERSION, "repos": repos}, indent=2, sort_keys=True) + "\n"
    try:
        os.makedirs(os.path.dirname(where), exist_ok=True)
        fsutil.atomic_write(where, data.encode(), mode=0o600)
    except OSError as exc:
        raise from_oserror(exc, where, "write") from exc
    return where
