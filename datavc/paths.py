"""Validation of every path that comes from outside: manifests, listings, the command line.

Pure functions, no I/O. A valid relative path is POSIX-style, non-empty, has no ``.``/``..``
or empty component, no NUL or backslash, and names neither ``.git`` nor ``.datavc`` in any
case or alias (trailing dots/spaces, NTFS short name ``GIT~1``).
"""

from __future__ import annotations

import unicodedata

from .errors import UnsafePathError

RESERVED = frozenset({".git", ".datavc"})
_ALIASES = frozenset({"git~1", "datavc~1", "datavc~2"})
MAX_NAME = 255
MAX_PATH = 4096


def fold(name: str) -> str:
    """The key under which two names collide on case-insensitive or normalising systems."""
    return unicodedata.normalize("NFC", name).casefold()


def is_reserved(name: str) -> bool:
    stripped = name.rstrip(". ").casefold()
    return stripped in RESERVED or stripped in _ALIASES


def check_name(name: str, *, where: str = "") -> str:
    """Return ``name`` if it is a safe single path component, else raise UnsafePathError."""
    problem = _name_problem(name)
    if problem:
        place = f" in {where}" if where else ""
        raise UnsafePathError(f"unsafe path component {name!r}{place}: {problem}")
    return name


def check_name_problem(name: str) -> str | None:
    """Why ``name`` is not a safe path component, or None."""
    return _name_problem(name)


def _name_problem(name: str) -> str | None:
    if not isinstance(name, str) or not name:
        return "empty name"
    if name in (".", ".."):
        return "relative component"
    if "/" in name or "\\" in name or "\0" in name:
        return "contains a path separator or NUL"
    if "\n" in name or "\r" in name:
        return "contains a line break (git cannot ignore such a name)"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        return f"longer than {MAX_NAME} bytes"
    if is_reserved(name):
        return "names .git or .datavc"
    return None


def split_relpath(path: str, *, where: str = "") -> tuple[str, ...]:
    """Validate a relative POSIX path and return its components."""
    place = f" in {where}" if where else ""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"empty path{place}")
    if len(path) > MAX_PATH:
        raise UnsafePathError(f"path longer than {MAX_PATH} characters{place}")
    if path.startswith("/") or (len(path) >= 2 and path[1] == ":" and path[0].isalpha()):
        raise UnsafePathError(f"absolute path {path!r}{place}: paths must be relative")
    parts = tuple(path.split("/"))
    for part in parts:
        check_name(part, where=where or path)
    return parts


def find_collisions(names: list[str]) -> list[tuple[str, str]]:
    """Pairs of distinct names that are the same after case folding and NFC normalisation."""
    seen: dict[str, str] = {}
    clashes = []
    for name in names:
        key = fold(name)
        other = seen.setdefault(key, name)
        if other != name:
            clashes.append((other, name))
    return clashes
