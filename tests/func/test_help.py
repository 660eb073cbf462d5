"""Every command has --help with an example; --version works."""

from __future__ import annotations

import pytest

import datavc
from datavc.cli import cli
from tests.func.helpers import ok

COMMANDS = sorted(cli.commands)


def test_the_documented_core_commands_exist():
    assert {"init", "add", "commit", "checkout", "status", "hash-object", "cat-object",
            "ls-manifest", "ls"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(tmp_path, run, command):
    r = ok(run(command, "--help", cwd=tmp_path))  # works outside a repository too
    assert "Example" in r.out, r
    assert f"Usage: datavc {command}" in r.out


def test_short_help_flag(tmp_path, run):
    assert ok(run("add", "-h", cwd=tmp_path)).out == ok(run("add", "--help", cwd=tmp_path)).out


def test_top_level_help_lists_every_command(tmp_path, run):
    r = ok(run("--help", cwd=tmp_path))
    for command in COMMANDS:
        assert command in r.out
    assert "datavc init" in r.out  # the typical session


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(tmp_path, run, flag):
    r = ok(run(flag, cwd=tmp_path))
    assert r.out.strip() == f"datavc, version {datavc.__version__}"


def test_no_arguments_prints_usage(tmp_path, run):
    r = run(cwd=tmp_path)
    assert r.code in (0, 2) and "Traceback" not in r.err
    assert "Usage: datavc" in r.out + r.err
