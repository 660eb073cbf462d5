"""lock: one writer at a time (flock), exit 4 when busy, stale pids reported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from datavc.errors import LockedError
from datavc.lock import repo_lock


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "tmp" / "lock")


def _content(path) -> str:
    with open(path) as f:
        return f.read()


def test_lock_records_the_holder_and_clears_on_release(path):
    with repo_lock(path, what="add"):
        assert _content(path) == f"{os.getpid()} add\n"
    assert _content(path) == ""


def test_second_holder_is_refused_with_exit_4(path):
    with repo_lock(path, what="add"):
        with pytest.raises(LockedError) as info:
            with repo_lock(path, what="gc"):
                pytest.fail("entered a held lock")
        assert info.value.exit_code == 4
        assert f"pid {os.getpid()}" in info.value.message and path in info.value.message
        assert info.value.hint
        assert _content(path) == f"{os.getpid()} add\n"  # the refused one changed nothing


def test_lock_is_released_after_an_exception(path):
    with pytest.raises(RuntimeError):
        with repo_lock(path):
            raise RuntimeError("boom")
    with repo_lock(path):
        pass


def test_lock_held_by_another_process(path):
    with repo_lock(path, what="push"):
        code = ("import sys\nfrom datavc.lock import repo_lock\nfrom datavc.errors import "
                "LockedError\ntry:\n    with repo_lock(sys.argv[1]): pass\n"
                "except LockedError as e:\n    print(e.message); sys.exit(e.exit_code)\n")
        proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 4 and f"pid {os.getpid()}" in proc.stdout


def test_lock_of_a_killed_process_is_free_and_reported(path, capsys):
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write("999999999 add\n")  # the holder died without cleaning up
    with repo_lock(path):
        assert _content(path).startswith(f"{os.getpid()} ")
    err = capsys.readouterr().err
    assert "stale" in err and "999999999" in err


def test_no_warning_for_a_clean_lock_file(path, capsys):
    with repo_lock(path):
        pass
    with repo_lock(path):
        pass
    assert capsys.readouterr().err == ""
