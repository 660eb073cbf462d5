"""Fixtures for the CLI tests (the shared ``scm``/``run`` fixtures live in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.func.helpers import ok


@pytest.fixture
def root(scm: Path, repo) -> Path:
    """A git work tree (the current directory) where `datavc init` ran.

    Initialised in-process (the shared ``repo`` fixture) to save one interpreter start per
    test; `datavc init` itself is tested through the CLI in test_init.py.
    """
    return scm


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A sentinel directory outside the repository, which no command may ever write to."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "x").write_text("sentinel x\n")
    (out / "y").write_text("sentinel y\n")
    return out


@pytest.fixture(params=["dir", "s3"])
def remote(request, root, run, tmp_path) -> dict:
    """A default remote named `storage`, of each kind; returns how to inspect it."""
    if request.param == "dir":
        where = tmp_path / "remote"
        ok(run("remote", "add", "storage", str(where), "--default"))
        return {"kind": "dir", "path": where}
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_server")
    ok(run("remote", "add", "storage", f"s3://{bucket}/proj", "--default"))
    ok(run("remote", "modify", "storage", "endpoint_url", endpoint))
    ok(run("remote", "modify", "storage", "--local", "access_key_id", "testing"))
    ok(run("remote", "modify", "storage", "--local", "secret_access_key", "testing"))
    return {"kind": "s3", "bucket": bucket, "client": request.getfixturevalue("s3_client")}
