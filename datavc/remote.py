"""Remotes: where push sends objects and pull gets them (DESIGN.md §2-3).

:func:`open_remote` turns one ``[remote.NAME]`` config table into a :class:`Remote`:

    url = "s3://bucket/prefix"      # S3 or any S3-compatible store (with endpoint_url)
    url = "file:///abs/path"        # a directory; a plain path works too, relative ones
                                    # against the directory the caller names (base_dir)
    endpoint_url, region, profile   # strings, S3 only
    path_style = true               # S3 only: bucket in the path, not the host name
    pack = false                    # push every object on its own (default: many small
                                    # objects go into packs, see datavc.pack)
    access_key_id, secret_access_key, session_token   # S3 only; config.local.toml only

The backends live in :mod:`datavc.remote_local` and :mod:`datavc.remote_s3`; the protocol,
layout and batched existence check they share in :mod:`datavc.remote_base`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from .config import REMOTE_KEYS, SECRET_KEYS  # one list of keys, shared with config
from .errors import ConfigError
from .remote_base import Remote, Sink, redact
from .remote_local import LocalRemote
from .remote_s3 import JOBS, S3Remote

__all__ = ["SECRET_KEYS", "LocalRemote", "Remote", "S3Remote", "Sink", "open_remote", "redact"]

KEYS: dict[str, type] = dict(REMOTE_KEYS)  # the keys config.py accepts, with their types
S3_KEYS = set(KEYS) - {"url", "pack"}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def open_remote(name: str, settings: Mapping[str, object], *, base_dir: str | None = None,
                jobs: int = JOBS) -> Remote:
    """The remote ``name`` configured by ``settings``; ConfigError (exit 6) when they are
    invalid. Nothing is contacted here: the first method call connects. ``jobs`` bounds the
    S3 remote's thread pool and sizes its connection pool (pass the transfer's ``-j``)."""
    where = f"remote {name!r}"
    _check(where, settings)
    url = settings.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{where} has no url", hint=f"datavc remote modify {name} url URL")
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    remote: Remote
    if scheme == "s3":
        remote = _open_s3(where, url, settings, jobs)
    else:
        remote = _open_local(where, url, scheme, settings, base_dir)
    remote.packing = settings.get("pack", True) is True
    return remote


def _open_local(where: str, url: str, scheme: str, settings: Mapping[str, object],
                base_dir: str | None) -> LocalRemote:
    s3_only = sorted(set(settings) & set(S3_KEYS))
    if s3_only:
        raise ConfigError(f"{where}: {', '.join(s3_only)} only apply to s3:// remotes")
    if scheme not in ("", "file"):
        raise ConfigError(f"{where}: unsupported remote scheme '{scheme}://' in {redact(url)}",
                          hint="use s3://BUCKET/PREFIX (any S3-compatible store, with "
                               "endpoint_url), file:///ABS/PATH or a directory path")
    if not scheme and not os.path.isabs(os.path.expanduser(url)):
        if base_dir is None:
            raise ConfigError(f"{where}: relative path {url!r} needs a base directory")
        url = os.path.join(base_dir, url)
    return LocalRemote(os.path.expanduser(url) if not scheme else url)


def _check(where: str, settings: Mapping[str, object]) -> None:
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}",
                          hint=f"known keys: {', '.join(sorted(KEYS))}")
    for key, value in settings.items():
        if type(value) is not KEYS[key]:
            kind = "true or false" if KEYS[key] is bool else "a string"
            shown = "***" if key in SECRET_KEYS else repr(value)
            raise ConfigError(f"{where}: {key} must be {kind}, not {shown}")


def _open_s3(where: str, url: str, settings: Mapping[str, object], jobs: int) -> S3Remote:
    try:
        parts = urlsplit(url)
        has_port = parts.port is not None
    except ValueError:
        raise ConfigError(f"{where}: malformed URL {redact(url)}") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{where}: the URL {redact(url)} carries credentials",
                          hint="remove them from the URL; set access_key_id and "
                               "secret_access_key with `datavc remote modify --local`")
    if not parts.hostname or has_port or parts.query or parts.fragment:
        raise ConfigError(f"{where}: {redact(url)} is not s3://BUCKET/PREFIX",
                          hint="the endpoint of an S3-compatible store goes in endpoint_url")
    opts = {k: v for k, v in settings.items() if k not in ("url", "pack")}
    return S3Remote(parts.netloc, parts.path, jobs=jobs, **opts)  # type: ignore[arg-type]
