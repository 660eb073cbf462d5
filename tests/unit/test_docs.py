"""Docs that cannot drift: docs/cli.md is generated from click, every command has an example
and a row in README.md, every exit code and error class is in docs/exit-codes.md, the
worked examples in docs/format.md are what the code produces today, and docs/json.md names
every key of every --json document."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from datavc import errors, listing
from datavc.hashing import hash_bytes
from datavc.listing import Entry
from datavc.manifest import Pointer

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts/gen_cli_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
COMMANDS = GEN.commands()
NAMES = [ctx.command_path for ctx, _ in COMMANDS]


def test_cli_md_is_generated_from_click():
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == GEN.render(), (
        "docs/cli.md is out of date: run `python scripts/gen_cli_docs.py`")


def test_there_are_commands():
    assert "datavc add" in NAMES and "datavc status" in NAMES


@pytest.mark.parametrize(("ctx", "cmd"), COMMANDS, ids=NAMES)
def test_every_command_has_help_with_an_example(ctx, cmd):
    assert cmd.help, f"`{ctx.command_path}` has no help text"
    assert "Example" in cmd.help, f"`{ctx.command_path} --help` shows no example"


def _readme_commands() -> list[str]:
    rows = []
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`(datavc [^`]*)`\s*\|", line)
        if m:
            rows.append(m.group(1))
    return rows


@pytest.mark.parametrize("name", NAMES)
def test_every_command_is_in_the_readme_table(name):
    rows = _readme_commands()
    assert any(row == name or row.startswith(name + " ") for row in rows), (
        f"`{name}` is missing from the command table in README.md")


def _error_classes() -> list[type[errors.DatavcError]]:
    return [obj for obj in vars(errors).values()
            if isinstance(obj, type) and issubclass(obj, errors.DatavcError)]


def test_every_exit_code_is_documented():
    text = (DOCS / "exit-codes.md").read_text(encoding="utf-8")
    documented = {int(m) for m in re.findall(r"^\|\s*(\d+)\s*\|", text, flags=re.M)}
    codes = {cls.exit_code for cls in _error_classes()} | {0, 2}
    assert codes <= documented, f"exit codes missing from docs/exit-codes.md: {codes - documented}"


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_is_named_in_exit_codes_md(cls):
    text = (DOCS / "exit-codes.md").read_text(encoding="utf-8")
    assert f"`{cls.__name__}`" in text, f"{cls.__name__} is not in docs/exit-codes.md"


# --- docs/format.md: the worked examples are regenerated and must match ----------------------

README, MEOW, RUN = b"hello\n", b"meow", b"#!/bin/sh\necho hi\n"


def _hexdump(data: bytes) -> str:
    return "\n".join(f"{i:04x}: " + " ".join(f"{b:02x}" for b in data[i:i + 16])
                     for i in range(0, len(data), 16))


def _example():
    cats = listing.encode_entries([Entry("1.txt", "file", hash_bytes(MEOW), len(MEOW))])
    root = listing.encode_entries([
        Entry("run.sh", "file", hash_bytes(RUN), len(RUN), 0o755),
        Entry("README", "file", hash_bytes(README), len(README)),
        Entry("cats", "dir", hash_bytes(cats), len(MEOW), 0o755, 1),
    ])
    return cats, root


def test_format_md_listing_example_matches_the_encoder():
    text = (DOCS / "format.md").read_text(encoding="utf-8")
    cats, root = _example()
    for data in (cats, root):
        assert _hexdump(data) in text, "docs/format.md: a listing hex dump is out of date"
        assert str(hash_bytes(data)) in text
        assert listing.decode(data, where="example")
    for content in (README, MEOW, RUN, b""):
        assert str(hash_bytes(content)) in text
    empty = listing.encode_entries([])
    assert " ".join(f"{b:02x}" for b in empty) in " ".join(text.split())
    assert str(hash_bytes(empty)) in text


def test_format_md_pointer_example_matches_the_writer():
    text = (DOCS / "format.md").read_text(encoding="utf-8")
    _, root = _example()
    size = len(README) + len(MEOW) + len(RUN)
    pointer = Pointer("dir", hash_bytes(root), size, 3).dumps().decode()
    assert pointer in text, "docs/format.md: the pointer manifest example is out of date"


# --- docs/json.md: every --json shape is documented, and its examples have exactly its keys ---


def _json_sections() -> dict[str, str]:
    text = (DOCS / "json.md").read_text(encoding="utf-8")
    parts = re.split(r"^## (datavc [a-z -]+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _json_shapes():
    from datavc.audit import Evidence
    from datavc.config import RemoteInfo
    from datavc.fsck import Problem
    from datavc.hashing import hash_bytes as h
    from datavc.maintain import CheckProblem, CheckResult, FsckResult, GcResult, LevelReport
    from datavc.repo import (
        AddResult,
        CheckoutResult,
        CommitResult,
        DagResult,
        DiffStat,
        LogEntry,
        LsEntry,
        Reason,
        ReproResult,
        StageAddResult,
        StageRun,
        TargetStatus,
        TransferResult,
        TrustResult,
    )
    from datavc.transfer import Transfer
    from datavc.treediff import Change

    add = AddResult("data", "data.datavc", h(b""), "dir", 0, 0, 0, True, [("data/p", "symlink")])
    skipped = add.to_dict()["skipped"][0]
    change = Change("data/a", "added", None, h(b""), None, 0)
    status = TargetStatus("data", "data.datavc", "modified", [change]).to_dict()
    entry = {"path": "data/a", **Entry("a", "file", h(b""), 0).to_dict()}
    stat = DiffStat.of([change]).to_dict()
    problem = CheckProblem("data", "invalid", "").to_dict()
    check = CheckResult(["data"], None, [CheckProblem("data", "invalid", "")]).to_dict()
    evidence = Evidence("data-dir", "raw", 0, 100).to_dict()
    level = LevelReport(0, "", "", [], None, [Evidence("data-dir", "raw", 0)], False).to_dict()
    fsck_problem = Problem("corrupt", "cache", None).to_dict()
    fsck_doc = FsckResult(0, [Problem("corrupt", "cache", None)]).to_dict()
    transfer = TransferResult("s", "push", Transfer()).to_dict()
    checkout = CheckoutResult("data", 0, 0, [], []).to_dict()
    diff = {"a": None, "b": None, "workspace": True, "changes": [change.to_dict()], "stat": stat}
    log = LogEntry("0" * 40, "A", "a@example.com", "2026-01-01T00:00:00+00:00", "v1", "added",
                   h(b""), 0, 0).to_dict()
    reason = Reason("dep", "raw", "changed")
    stage_run = StageRun("a", "would-run", [reason]).to_dict()
    repro = ReproResult(True, [StageRun("a", "would-run", [reason])]).to_dict()
    # command: (type of the document, objects whose keys the section's tables must name,
    #           further objects that may appear in its example)
    return {
        "datavc add": (list, [add.to_dict(), skipped], []),
        "datavc commit": (dict, [CommitResult([add], None).to_dict()], [add.to_dict(), skipped]),
        "datavc checkout": (list, [CheckoutResult("data", 0, 0, [], []).to_dict()], []),
        "datavc status": (list, [status, change.to_dict()], []),
        "datavc ls-manifest": (list, [entry], []),
        "datavc ls": (list, [LsEntry("data/a", "file", h(b""), 0, False).to_dict()], []),
        "datavc diff": (dict, [diff, stat], [change.to_dict()]),  # change: see status
        "datavc log": (list, [log], []),
        "datavc push": (dict, [transfer], []),
        "datavc pull": (dict, [{"checkout": []}], [{**transfer, "checkout": []}, checkout]),
        "datavc check": (dict, [check, problem], []),
        "datavc level": (dict, [level, evidence], []),
        "datavc install": (list, [{"hook": "", "action": ""}], []),
        "datavc gc": (list, [GcResult("cache", True, 0, 0, 0, 0).to_dict()], []),
        "datavc fsck": (dict, [fsck_doc, fsck_problem], []),
        "datavc repro": (dict, [repro, stage_run, reason.to_dict()], []),
        "datavc dag": (dict, [DagResult("text", "", {}).to_dict(), {"name": "", "upstream": []}],
                       []),
        "datavc stage add": (dict, [StageAddResult("a", "datavc.toml", True).to_dict()], []),
        "datavc trust": (dict, [TrustResult("/r", "0", "/t").to_dict()], []),
        "datavc remote list": (list, [RemoteInfo("s", "s3://b/p", True, {}, False).to_dict()],
                               [{"endpoint_url": "", "profile": "", "secret_access_key": ""}]),
    }


def _objects(doc):
    """Every JSON object in ``doc``, at any depth."""
    if isinstance(doc, dict):
        yield doc
        for value in doc.values():
            yield from _objects(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _objects(value)


@pytest.mark.parametrize("command", ["datavc add", "datavc commit", "datavc checkout",
                                     "datavc status", "datavc ls", "datavc ls-manifest",
                                     "datavc diff", "datavc log", "datavc remote list",
                                     "datavc push", "datavc pull", "datavc check",
                                     "datavc level", "datavc install", "datavc gc",
                                     "datavc fsck", "datavc repro", "datavc dag",
                                     "datavc stage add", "datavc trust"])
def test_json_md_documents_every_key(command):
    import json

    sections = _json_sections()
    assert command in sections, f"docs/json.md has no section for `{command} --json`"
    body = sections[command]
    top, shapes, nested = _json_shapes()[command]
    documented = set(re.findall(r"^\|\s*`([a-z_]+)`\s*\|", body, flags=re.M))
    for shape in shapes:
        missing = set(shape) - documented
        assert not missing, f"docs/json.md, {command}: undocumented keys {sorted(missing)}"
    blocks = re.findall(r"```json\n(.*?)```", body, flags=re.S)
    assert len(blocks) == 1, f"docs/json.md, {command}: expected one JSON example"
    example = json.loads(blocks[0])
    assert isinstance(example, top), f"docs/json.md, {command}: the example is not a {top}"
    keysets = [set(shape) for shape in shapes + nested]
    for obj in _objects(example):
        assert set(obj) in keysets, f"docs/json.md, {command}: example keys {sorted(obj)}"
