"""Reading history: for random trees committed at several revisions, ``read_bytes(p, rev)``
gives exactly the bytes ``p`` had at ``rev``, for every file of every revision, through
both verification paths (objects read whole and streamed); a path that is not a file at
``rev`` is refused with exit 1 or 2, never answered with another revision's bytes."""

from __future__ import annotations

import shutil
from typing import Any
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from datavc import reader
from datavc.errors import DatavcError
from tests.conftest import gen
from tests.property.helpers import Sandbox, git
from tests.property.test_roundtrip import SETTINGS, TREES, files_of


def _replace_data(box: Sandbox, tree: dict[str, Any]) -> None:
    if box.data.exists():
        for p in box.data.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(box.data)
    box.data.mkdir()
    gen(box.data, tree)


@SETTINGS
@given(trees=st.lists(TREES, min_size=1, max_size=3), whole_max=st.sampled_from([0, 64]))
def test_read_bytes_at_every_revision(trees: list[dict[str, Any]], whole_max: int) -> None:
    box = Sandbox()
    try:
        revs = []
        for n, tree in enumerate(trees):
            _replace_data(box, tree)
            if n == 0:
                box.repo.add([str(box.data)])
            box.repo.commit(message=f"v{n}")
            revs.append((git(box.root, "rev-parse", "HEAD").strip(), files_of(tree)))
        everything = {p for _, files in revs for p in files}
        with mock.patch.object(reader, "WHOLE_MAX", whole_max):
            for rev, files in [*revs, (None, revs[-1][1])]:
                for path, content in files.items():
                    assert box.repo.read_bytes(path, rev) == content, (path, rev)
                for path in everything - set(files):
                    try:
                        box.repo.read_bytes(path, rev)
                    except DatavcError as exc:
                        assert exc.exit_code in (1, 2), exc
                    else:
                        raise AssertionError(f"{path} read at {rev}, where it is no file")
    finally:
        box.close()
