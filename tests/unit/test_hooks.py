"""hooks: installed idempotently, chained with existing hooks, removed cleanly."""

from __future__ import annotations

import os
import subprocess

from datavc import hooks


def write_hook(path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def test_install_is_idempotent_and_uninstall_removes(tmp_path):
    d = tmp_path / "hooks"
    first = hooks.install(str(d), command="echo datavc")
    assert {c.action for c in first} == {"installed"}
    assert {c.action for c in hooks.install(str(d), command="echo datavc")} == {"unchanged"}
    for name in hooks.HOOKS:
        assert os.access(d / name, os.X_OK) and hooks.ours(str(d / name))
    assert {c.action for c in hooks.uninstall(str(d))} == {"removed"}
    assert not any((d / n).exists() for n in hooks.HOOKS)
    assert {c.action for c in hooks.uninstall(str(d))} == {"absent"}


def test_an_existing_hook_is_chained_first_and_restored(tmp_path):
    d = tmp_path / "hooks"
    d.mkdir()
    log = tmp_path / "log"
    write_hook(d / "pre-commit", f'echo theirs "$@" >> {log}')
    changes = {c.hook: c.action for c in hooks.install(str(d), command=f"echo ours >> {log};"
                                                                        " true")}
    assert changes["pre-commit"] == "chained"
    subprocess.run([str(d / "pre-commit"), "x"], check=True)
    assert log.read_text().splitlines() == ["theirs x", "ours"]
    hooks.uninstall(str(d))
    assert "theirs" in (d / "pre-commit").read_text()
    assert not (d / ("pre-commit" + hooks.CHAINED)).exists()


def test_a_failing_chained_hook_stops_datavc_and_fails(tmp_path):
    d = tmp_path / "hooks"
    d.mkdir()
    log = tmp_path / "log"
    write_hook(d / "pre-push", "cat > /dev/null; exit 3")
    hooks.install(str(d), command=f"echo ours >> {log}")
    r = subprocess.run([str(d / "pre-push"), "origin", "url"], input=b"refs x\n")
    assert r.returncode == 3 and not log.exists()


def test_pre_push_passes_its_input_to_the_chained_hook(tmp_path):
    d = tmp_path / "hooks"
    d.mkdir()
    got = tmp_path / "got"
    write_hook(d / "pre-push", f"cat > {got}")
    hooks.install(str(d), command="true")
    subprocess.run([str(d / "pre-push"), "origin", "url"], input=b"refs/heads/main abc\n",
                   check=True)
    assert got.read_text() == "refs/heads/main abc\n"
