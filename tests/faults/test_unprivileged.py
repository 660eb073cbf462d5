"""Protections that rest on permission bits, checked as an unprivileged user.

Root ignores mode bits, so a read-only workspace file "protects" nothing when the suite runs as
root. Here datavc runs as uid/gid 65534 (via setpriv when the suite is root), in a repository
owned by that user, and the kernel enforces the bits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import gen

NOBODY = 65534
SETPRIV = shutil.which("setpriv")

pytestmark = pytest.mark.skipif(
    os.geteuid() == 0 and SETPRIV is None, reason="running as root and setpriv is missing")


def as_user(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    prefix = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] \
        if os.geteuid() == 0 else []
    env = {**os.environ, "HOME": str(cwd)}
    return subprocess.run([*prefix, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def datavc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return as_user([sys.executable, "-m", "datavc", *args], cwd)


@pytest.fixture(scope="module")
def can_run() -> None:
    """The unprivileged user must reach this Python and this checkout of datavc."""
    probe = as_user([sys.executable, "-c", "import datavc.cli"], Path(tempfile.gettempdir()))
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot import datavc from here: {probe.stderr[-200:]}")


@pytest.fixture
def repo(can_run) -> Iterator[Path]:
    """A datavc repo (no git) owned by the unprivileged user, hardlink cache."""
    top = Path(tempfile.mkdtemp(prefix="datavc-unpriv-"))
    top.chmod(0o755)
    root = top / "repo"
    root.mkdir()
    gen(root, {"data": {"a.txt": "alpha", "sub": {"b.bin": b"\0beta"}}})
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(top)], check=True)
    r = datavc("init", "--no-scm", cwd=root)
    assert r.returncode == 0, r.stderr
    (root / ".datavc/config.toml").write_text('[core]\nformat = 1\n[cache]\ntype = ["hardlink"]\n')
    if os.geteuid() == 0:
        os.chown(root / ".datavc/config.toml", NOBODY, NOBODY)
    try:
        yield root
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(top)], check=False)
        shutil.rmtree(top, ignore_errors=True)


def test_hardlinked_files_really_refuse_writes(repo):
    r = datavc("add", "data", cwd=repo)
    assert r.returncode == 0, r.stderr
    probe = as_user([sys.executable, "-c", "open('data/a.txt', 'a').write('x')"], repo)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr
    assert (repo / "data/a.txt").read_text() == "alpha"
    r = datavc("status", cwd=repo)
    assert r.returncode == 0 and "up to date" in r.stdout, r


def test_in_place_edit_after_chmod_is_caught_by_the_next_checkout(repo):
    assert datavc("add", "data", cwd=repo).returncode == 0
    edit = as_user(["sh", "-c", "chmod u+w data/a.txt && printf EDIT >> data/a.txt"], repo)
    assert edit.returncode == 0, edit.stderr
    r = datavc("status", cwd=repo)
    assert r.returncode == 0 and "modified" in r.stdout
    r = datavc("checkout", "--force", cwd=repo)  # the shared object is corrupt now
    assert r.returncode == 3 and "corrupt" in r.stderr and "Traceback" not in r.stderr


def test_unreadable_workspace_file_is_a_resource_error_naming_it(repo):
    os.chmod(repo / "data/sub/b.bin", 0o000)
    r = datavc("add", "data", cwd=repo)
    assert r.returncode == 7, r
    assert "data/sub/b.bin" in r.stderr and "permission denied" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (repo / "data.datavc").exists()


def test_read_only_cache_is_a_resource_error(repo):
    assert datavc("status", cwd=repo).returncode == 0
    objects = repo / ".datavc/cache/objects"
    for d in [objects, *objects.iterdir(), repo / ".datavc/cache/tmp"]:
        d.chmod(0o555)
    r = datavc("add", "data", cwd=repo)
    assert r.returncode == 7, r
    assert "permission denied" in r.stderr and "Traceback" not in r.stderr
    assert not (repo / "data.datavc").exists()
