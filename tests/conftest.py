"""Shared fixtures: real directories, real git repositories, the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import datavc

pytest_plugins = ["tests.s3server"]  # s3_server (moto on 127.0.0.1), aws_env, s3_client, s3_bucket

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def gen(root: Path, spec: dict, prefix: str = "") -> None:
    """Create files from a nested dict: str/bytes values are contents, dicts directories."""
    for name, value in spec.items():
        path = root / prefix / name
        if isinstance(value, dict):
            path.mkdir(parents=True, exist_ok=True)
            gen(root, value, f"{prefix}{name}/")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(value.encode() if isinstance(value, str) else value)


def read_tree(root: Path) -> dict:
    """The inverse of :func:`gen` (bytes contents), for comparing whole trees."""
    out: dict = {}
    for entry in sorted(root.iterdir()):
        out[entry.name] = read_tree(entry) if entry.is_dir() else entry.read_bytes()
    return out


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "_home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DATAVC_CRASH_AT", raising=False)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def scm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty git work tree (with a user configured), as the current directory."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.com")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def repo(scm: Path) -> datavc.Repo:
    """A datavc repository in a fresh git work tree (the current directory)."""
    from datavc.repo import Repo

    return Repo.init(scm)


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout: {self.out}\nstderr: {self.err}>"


@pytest.fixture
def run() -> Callable[..., CliResult]:
    """Run ``datavc ARGS`` in a real subprocess; returns exit code, stdout, stderr."""

    def _run(*args: str, cwd: Path | None = None, env: dict | None = None,
             input: bytes | None = None) -> CliResult:
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run([sys.executable, "-m", "datavc", *args], cwd=cwd,
                              env=full_env, capture_output=True, input=input, timeout=300)
        return CliResult(subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace")))

    return _run
