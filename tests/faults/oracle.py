"""What every fault test checks afterwards, looking at the product from outside, plus the
small runners they share (the CLI in a subprocess, git, throw-away directories)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import GIT_ENV
from tests.property.helpers import bad_objects, cache_tmp_files, fast_tmp

__all__ = ["TMP_MARK", "assert_old_or_new", "bad_objects", "cache_tmp_files", "cli", "env",
           "fast_tmp", "files",
           "git", "litter", "scratch"]

TMP_MARK = ".datavc-tmp-"


def env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: no crash point unless asked, git identity set."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DATAVC_CRASH")}
    return {**base, **GIT_ENV, **extra}


def cli(cwd: Path, *args: str, timeout: float = 120, **extra: str
        ) -> subprocess.CompletedProcess[str]:
    """``datavc ARGS`` in a subprocess in ``cwd``; ``extra`` goes to the environment."""
    return subprocess.run([sys.executable, "-m", "datavc", *args], cwd=cwd, env=env(**extra),
                          capture_output=True, text=True, timeout=timeout)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env(), check=True,
                          capture_output=True, text=True).stdout


def files(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative POSIX path → bytes); directories as ``path/``."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, names in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        pre = "" if rel == "." else rel + "/"
        if not dirnames and not names and pre:
            out[pre] = b""
        for name in names:
            out[pre + name] = (Path(dirpath) / name).read_bytes()
    return out


def assert_old_or_new(data: Path, *versions: dict[str, bytes]) -> None:
    """Every path under ``data`` holds the bytes of one of ``versions`` (a directory: one
    that some version has, perhaps not yet filled), or is a temp leftover."""
    for path, content in files(data).items():
        if os.path.basename(path.rstrip("/")).startswith(TMP_MARK):
            continue
        if path.endswith("/"):
            assert any(k.startswith(path) for v in versions for k in v), f"stray dir {path}"
            continue
        assert any(v.get(path) == content for v in versions), f"torn or stray file {path}"


def litter(root: Path) -> list[str]:
    """Temp files of interrupted writers in the work tree a user (and git) sees: anywhere
    but ``.git`` and ``.datavc``."""
    found = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".datavc")]
        rel = Path(dirpath).relative_to(root)
        found += [(rel / n).as_posix() for n in names if n.startswith(TMP_MARK)]
    return sorted(found)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A throw-away directory on a memory file system when there is one (see fast_tmp)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=fast_tmp()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
