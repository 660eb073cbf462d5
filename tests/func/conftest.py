"""Fixtures for the CLI tests (the shared ``scm``/``run`` fixtures live in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


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
