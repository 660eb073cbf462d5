"""Layers go one way (DESIGN.md §7, STYLE.md §2): checked by reading every import with ast.

Each module of datavc may import only modules listed before it in ORDER. A new module must be
placed in ORDER here, at the lowest layer whose modules it needs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import datavc

PKG = Path(datavc.__file__).parent

ORDER = [
    "errors", "crash", "report",  # leaves: exceptions, crash points, the reporter interface
    "hashing", "paths", "fsutil", "lock", "pack", "walk",
    "objects", "listing", "manifest",
    "state", "parallel", "tree", "treediff", "merge", "reader", "gc", "fsck",
    "links", "workspace",
    "scm", "hooks", "audit", "config", "trust",
    "pipeline", "stagelock",  # datavc.toml and datavc.lock: parsed, validated, the graph
    "remote_base", "remote_local", "remote_s3", "remote",  # remotes: protocol, backends
    "transfer",  # push and fetch over a remote
    "runcache",  # the run-cache: keys, entries, the index, what a run's outputs need
    "results",  # the result records of the commands
    "repo_core", "worktree",  # the facade's base; add, commit, checkout, status
    "history", "sync",  # reading across revisions; remotes, push, fetch, pull
    "maintain",  # check, level, install/uninstall, gc, fsck
    "pipelines_api",  # repro, dag, stage add, trust
    "repo",  # the facade: Repo assembled from the parts above, and their re-exports
    "datavc",  # the package itself (datavc/__init__.py): re-exports Repo lazily
    "progress", "cli", "__main__",  # the click shell
]
CLICK_ALLOWED = {"cli", "progress"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "datavc"


def _package_of(name: str, path: Path) -> list[str]:
    """The package a module lives in, as parts below datavc."""
    parts = [] if name == "datavc" else name.split(".")
    return parts if path.name == "__init__.py" else parts[:-1]


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _internal(parts: list[str]) -> str:
    """The longest known module named by ``parts`` (below datavc)."""
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULES:
            return ".".join(parts[:n])
    return "datavc"


def imports(name: str, source: str | None = None) -> tuple[set[str], set[str]]:
    """(internal modules, top-level external packages) that ``name`` imports anywhere."""
    path = MODULES[name]
    internal: set[str] = set()
    external: set[str] = set()
    source = path.read_text() if source is None else source
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top, *rest = alias.name.split(".")
                if top == "datavc":
                    internal.add(_internal(rest))
                else:
                    external.add(top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path)
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "datavc":
                target = node.module.split(".")[1:]
            else:
                external.add((node.module or "").split(".")[0])
                continue
            for alias in node.names:
                sub = ".".join([*target, alias.name])
                internal.add(sub if sub in MODULES else _internal(target))
    internal.discard(name)
    return internal, external


def test_every_module_has_a_place_in_the_order():
    unplaced = sorted(set(MODULES) - set(ORDER))
    assert not unplaced, f"add {unplaced} to ORDER in {__file__}"
    assert len(ORDER) == len(set(ORDER))


def test_the_parser_sees_known_imports():
    assert imports("objects")[0] == {"crash", "fsutil", "errors", "hashing", "pack"}
    assert "click" in imports("cli")[1] and "datavc" in imports("cli")[0]
    assert {"config", "fsutil", "scm"} <= imports("repo_core")[0]
    assert {"history", "results", "maintain"} <= imports("repo")[0]


def test_the_parser_sees_hidden_and_absolute_imports():
    source = ("def f():\n    from .repo import Repo\n    import click.testing\n"
              "import datavc.cli\nfrom datavc import workspace\nfrom . import __version__\n")
    internal, external = imports("objects", source)
    assert internal == {"repo", "cli", "workspace", "datavc"} and external == {"click"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_only_lower_layers(name):
    if name not in ORDER:
        pytest.fail(f"{name} is not placed in ORDER")
    rank = ORDER.index(name)
    internal, _ = imports(name)
    upward = sorted(dep for dep in internal if dep not in ORDER or ORDER.index(dep) > rank)
    assert not upward, f"datavc.{name} imports higher layers: {upward}"


@pytest.mark.parametrize("name", sorted(set(MODULES) - CLICK_ALLOWED))
def test_only_the_shell_imports_click(name):
    assert "click" not in imports(name)[1]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_nothing_but_main_imports_cli(name):
    if name != "__main__":
        assert "cli" not in imports(name)[0]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_repo_is_imported_only_above_it(name):
    if "repo" in imports(name)[0]:
        assert name in {"datavc", "cli", "__main__"}


def test_importing_the_core_does_not_load_click():
    code = ("import sys, datavc, datavc.repo\n"
            "assert 'click' not in sys.modules, 'click loaded'\n"
            "import datavc as d\nassert d.Repo is datavc.repo.Repo\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_import_datavc_stays_cheap():
    code = "import sys, datavc\nassert 'datavc.repo' not in sys.modules\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
