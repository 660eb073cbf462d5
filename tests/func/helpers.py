"""Small helpers shared by the CLI tests: exit-code assertions, cache inspection, crafting
hostile objects. Nothing here imports datavc: the tests look at the product from outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path

import msgpack
import xxhash

CACHE = Path(".datavc/cache/objects")
STATE = Path(".datavc/state/stat")
LOCK = Path(".datavc/tmp/lock")
OID_PREFIX = "xxh128:"


def ok(r):
    """Assert a CLI result succeeded without a traceback; return it."""
    assert r.code == 0, r
    assert "Traceback" not in r.err, r
    return r


def fails(r, code: int):
    """Assert a CLI result failed with ``code``, with a ``datavc:``-style message and no
    traceback; return it."""
    assert r.code == code, r
    assert "Traceback" not in r.err, r
    assert r.err.strip(), f"no error message on stderr: {r!r}"
    return r


def oid_of(data: bytes) -> str:
    return OID_PREFIX + xxhash.xxh3_128_hexdigest(data)


def object_path(root: Path, oid: str) -> Path:
    hexd = oid.removeprefix(OID_PREFIX)
    return root / CACHE / hexd[:2] / hexd[2:]


def cache_objects(root: Path) -> list[Path]:
    return sorted(p for p in (root / CACHE).glob("*/*") if p.is_file())


def tmp_files(directory: Path) -> list[Path]:
    """The files in a staging directory (``.datavc/cache/tmp``, a remote's ``tmp``),
    its fan-out directories included (those stay)."""
    return sorted(p for p in directory.rglob("*") if not p.is_dir())


def wipe_cache(root: Path) -> None:
    for p in cache_objects(root):
        p.unlink()


def corrupt(path: Path, offset: int = 0) -> None:
    """Flip one byte of a (read-only) cache object in place."""
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def set_link_types(root: Path, types: list[str]) -> None:
    quoted = ", ".join(f'"{t}"' for t in types)
    (root / ".datavc/config.toml").write_text(f"[core]\nformat = 1\n\n[cache]\ntype = [{quoted}]\n")


def age(path: Path, seconds: int = 3600) -> None:
    """Move the mtimes of ``path`` (and everything below it) into the past, so that the
    stat cache's racy-clean rule does not make datavc hash them again."""
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        st = p.lstat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9), follow_symlinks=False)


def modes(path: Path) -> dict[str, int]:
    """Permission bits of every file below ``path``, by relative path."""
    return {str(p.relative_to(path)): stat.S_IMODE(p.lstat().st_mode)
            for p in sorted(path.rglob("*")) if not p.is_dir()}


def store_raw(root: Path, data: bytes) -> str:
    """Put ``data`` in the cache under its true id (as a hostile clone or remote could)."""
    oid = oid_of(data)
    path = object_path(root, oid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o444)
    return oid


def listing_bytes(rows: list[list]) -> bytes:
    """A listing in the documented encoding: ["datavc.listing", 1, [[name, kind, digest,
    size, mode, nfiles], ...]], rows sorted by name bytes."""
    return msgpack.packb(["datavc.listing", 1, sorted(rows)], use_bin_type=True)


def file_row(name: bytes, data: bytes, mode: int = 0o644) -> list:
    return [name, "file", xxhash.xxh3_128_digest(data), len(data), mode, 1]


def write_pointer(root: Path, target: str, doc: dict | str | bytes) -> Path:
    path = root / (target + ".datavc")
    if isinstance(doc, dict):
        doc = json.dumps(doc, sort_keys=True, indent=2) + "\n"
    path.write_bytes(doc if isinstance(doc, bytes) else doc.encode())
    return path


def dir_pointer(oid: str, size: int, nfiles: int) -> dict:
    return {"datavc": 1, "kind": "dir", "oid": oid, "size": size, "nfiles": nfiles}


def snapshot(path: Path) -> dict[str, tuple[str, bytes | str]]:
    """Everything below ``path`` (not following symlinks): kind and content/target."""
    out: dict[str, tuple[str, bytes | str]] = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", b"")
        else:
            out[rel] = ("file", p.read_bytes())
    return out


def processes_in(path: Path) -> list[int]:
    """Pids of the processes (other than this one) working in ``path`` or below it; empty
    where /proc does not exist."""
    target = str(path.resolve())
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd == target or cwd.startswith(target + "/"):
                found.append(int(entry))
    return found


def no_processes_left_in(path: Path, timeout: float = 20.0) -> list[int]:
    """Wait until no process works in ``path`` (workers, a fork server); what is left."""
    deadline = time.monotonic() + timeout
    while (left := processes_in(path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def push_killed_when(root: Path, ready, timeout: float = 60.0) -> None:
    """Run `datavc push` in ``root`` and SIGKILL it as soon as ``ready()`` is true (or it
    ends, or ``timeout`` passes); return once it is gone."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "datavc", "push"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline and not ready():
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
