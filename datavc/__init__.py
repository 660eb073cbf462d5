"""datavc: Git-style data versioning. ``datavc.Repo`` is the library behind the CLI;
``datavc.open`` and ``datavc.read_bytes`` read one tracked file as of any git revision
(docs/api.md)."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

from .errors import DatavcError
from .hashing import Oid

if TYPE_CHECKING:
    from .repo import Repo

__version__ = "0.1.0"
# `open` is public but left out of __all__: `from datavc import *` must not shadow the builtin.
__all__ = ["DatavcError", "Oid", "Repo", "__version__", "read_bytes"]


def __getattr__(name: str) -> object:  # keep `import datavc` cheap for the CLI
    if name == "Repo":
        from .repo import Repo

        return Repo
    raise AttributeError(name)


def open(path: str | os.PathLike[str], rev: str | None = None,
         repo: str | os.PathLike[str] | Repo = ".", mode: str = "rb") -> io.BufferedReader:
    """Open one tracked file of ``repo`` read-only, as of git revision ``rev`` (default:
    as the work-tree manifests record it); ``path`` is relative to the repository root.
    The bytes come from the cache and are verified against their id. See ``Repo.open``."""
    return _repo(repo).open(path, rev, mode=mode)


def read_bytes(path: str | os.PathLike[str], rev: str | None = None,
               repo: str | os.PathLike[str] | Repo = ".") -> bytes:
    """The whole verified content of one tracked file as of ``rev``. See ``Repo.open``."""
    return _repo(repo).read_bytes(path, rev)


def _repo(repo: str | os.PathLike[str] | Repo) -> Repo:
    from .repo import Repo

    return repo if isinstance(repo, Repo) else Repo(repo)
