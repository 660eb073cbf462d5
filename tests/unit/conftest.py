"""Fixtures shared by the unit tests: an object store and an empty workspace directory."""

from __future__ import annotations

import pytest

from tests.unit.stores import PublishingStore


@pytest.fixture
def store(tmp_path) -> PublishingStore:
    """An object store whose objects are named as soon as they are staged."""
    s = PublishingStore(str(tmp_path / "cache"))
    s.ensure_layout()
    return s


@pytest.fixture
def ws(tmp_path):
    """An empty workspace directory."""
    (tmp_path / "ws").mkdir()
    return tmp_path / "ws"
