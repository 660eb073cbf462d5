"""The CI examples run the commands they name, and those commands gate as promised."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.conftest import gen, git
from tests.func.helpers import fails, ok

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"


def commands() -> list[list[str]]:
    found = re.findall(r"run: (datavc .*)", (CI / "github-actions.yml").read_text())
    found += re.findall(r"entry: (datavc .*)", (CI / "pre-commit-config.yaml").read_text())
    assert len(found) == 2
    return [shlex.split(c)[1:] for c in found]


def test_the_ci_commands_fail_until_the_data_is_pinned(root, run, tmp_path):
    gen(root, {"data": {"a": "1"}})
    ok(run("add", "data"))
    ok(run("remote", "add", "storage", str(tmp_path / "remote"), "--default"))
    gate, pre_commit = commands()
    fails(run(*gate), 1)  # nothing committed, nothing pushed
    fails(run(*pre_commit), 1)  # data.datavc not staged
    git(root, "add", "data.datavc", ".gitignore", ".datavc/config.toml")
    ok(run(*pre_commit))
    git(root, "commit", "-qm", "v1")
    fails(run(*gate), 1)  # not pushed
    ok(run("push"))
    ok(run(*gate))
