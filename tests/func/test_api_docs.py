"""docs/api.md cannot drift: its ```python blocks run, in order, as one script; every public
method of datavc.Repo and every field of the result records is documented there; and
examples/python_api/example.py runs."""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datavc.listing import Entry
from datavc.manifest import Pointer
from datavc.repo import (
    AddResult,
    CheckoutResult,
    CommitResult,
    DiffStat,
    LogEntry,
    LsEntry,
    Repo,
    TargetStatus,
)
from datavc.treediff import Change

ROOT = Path(__file__).resolve().parents[2]
API_MD = ROOT / "docs" / "api.md"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_the_python_blocks_of_api_md_run(tmp_path: Path):
    blocks = re.findall(r"^```python\n(.*?)^```", API_MD.read_text(encoding="utf-8"),
                        flags=re.S | re.M)
    assert len(blocks) >= 5
    script = tmp_path / "api_md.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    proc = _run([str(script)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_examples_python_api_runs(tmp_path: Path):
    proc = _run([str(ROOT / "examples" / "python_api" / "example.py")], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("ok")
    assert "refused (exit code 3)" in proc.stdout


def _public_methods() -> list[str]:
    names = {name for cls in Repo.__mro__ if cls is not object for name in vars(cls)}
    return sorted(name for name in names
                  if not name.startswith("_") and callable(getattr(Repo, name))
                  and not isinstance(inspect.getattr_static(Repo, name), property))


@pytest.mark.parametrize("name", _public_methods())
def test_every_public_repo_method_is_in_api_md(name):
    assert f"`Repo.{name}(" in API_MD.read_text(encoding="utf-8"), (
        f"Repo.{name} is not documented in docs/api.md")


@pytest.mark.parametrize("cls", [AddResult, CommitResult, TargetStatus, Change, DiffStat,
                                 LogEntry, CheckoutResult, LsEntry, Entry, Pointer],
                         ids=lambda c: c.__name__)
def test_every_field_of_the_result_records_is_in_api_md(cls):
    text = API_MD.read_text(encoding="utf-8")
    match = re.search(rf"^### `{cls.__name__}`\n(.*?)(?=^#)", text, flags=re.S | re.M)
    assert match, f"docs/api.md has no section for {cls.__name__}"
    for field in dataclasses.fields(cls):
        assert f"`{field.name}`" in match.group(1), (
            f"docs/api.md, {cls.__name__}: field `{field.name}` is not documented")
