"""The generated pipeline of the `pipeline` scenario, and the checks of what a repro did.

A linear chain of N stages: s000 copies data/input.txt to out/s000.txt, stage i copies
out/s(i-1).txt to out/s(i).txt. Both tools get the same command for every stage,
`cp DEP OUT` run by `/bin/sh -c` (datavc: `shell = true`; DVC: `$SHELL -c`, with SHELL set to
/bin/sh by the harness), written as datavc.toml and as the equivalent dvc.yaml.

Only the standard library; run.py does the timing.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

INPUT = "data/input.txt"
INPUT_LINES = 64  # of 64 characters each: 4 KiB


@dataclass(frozen=True)
class Stage:
    name: str
    dep: str
    out: str

    @property
    def cmd(self) -> str:
        return f"cp {self.dep} {self.out}"


def linear(n: int) -> list[Stage]:
    """The chain of n stages, s000 first."""
    width = max(3, len(str(n - 1)))
    names = [f"s{i:0{width}d}" for i in range(n)]
    outs = [f"out/{name}.txt" for name in names]
    return [Stage(name, INPUT if i == 0 else outs[i - 1], outs[i])
            for i, name in enumerate(names)]


def _q(text: str) -> str:
    """A quoted string, valid in TOML and YAML alike (the names and paths are ASCII)."""
    return json.dumps(text)


def datavc_toml(stages: list[Stage]) -> str:
    return "".join(f"[stages.{s.name}]\ncmd = {_q(s.cmd)}\ndeps = [{_q(s.dep)}]\n"
                   f"outs = [{_q(s.out)}]\nshell = true\n\n" for s in stages)


def dvc_yaml(stages: list[Stage]) -> str:
    return "stages:\n" + "".join(f"  {s.name}:\n    cmd: {_q(s.cmd)}\n    deps:\n"
                                 f"      - {_q(s.dep)}\n    outs:\n      - {_q(s.out)}\n"
                                 for s in stages)


def input_bytes(seed: int, version: int) -> bytes:
    """The input file's content: version 0 for the first run, 1, 2, ... for each change."""
    rng = random.Random(f"{seed}:pipeline:input:{version}")
    return b"".join(rng.randbytes(32).hex().encode() + b"\n" for _ in range(INPUT_LINES))


def write_input(root: Path, seed: int, version: int = 0) -> None:
    (root / INPUT).parent.mkdir(parents=True, exist_ok=True)
    (root / INPUT).write_bytes(input_bytes(seed, version))


def write_pipeline(repo: Path, tool: str, stages: list[Stage]) -> None:
    """The empty out/ directory and the tool's pipeline file."""
    (repo / "out").mkdir()
    if tool == "datavc":
        (repo / "datavc.toml").write_text(datavc_toml(stages))
    else:
        (repo / "dvc.yaml").write_text(dvc_yaml(stages))


def files(stages: list[Stage]) -> list[str]:
    """Every dependency and output of the chain."""
    return [INPUT, *(s.out for s in stages)]


def snapshot(repo: Path, stages: list[Stage]) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every dependency and output, (-1, -1) if missing; a run or a
    restore changes them."""
    out = {}
    for rel in files(stages):
        try:
            st = os.stat(repo / rel)
            out[rel] = (st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            out[rel] = (-1, -1)
    return out


def touch_all(repo: Path, stages: list[Stage]) -> None:
    """New timestamps on every dependency and output, same content."""
    now = time.time_ns()
    for rel in files(stages):
        os.utime(repo / rel, ns=(now, now))


def check_outputs(repo: Path, stages: list[Stage]) -> str:
    """Why the chain's outputs are not all copies of the input; "" when they are."""
    want = (repo / INPUT).read_bytes()
    wrong = [s.out for s in stages
             if not (repo / s.out).is_file() or (repo / s.out).read_bytes() != want]
    return f"{len(wrong)} outputs differ from the input: {wrong[:3]}" if wrong else ""


def check_unchanged(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
                    ) -> str:
    changed = sorted(k for k in before if before[k] != after.get(k))
    return (f"a no-op rewrote or replaced {len(changed)} files (inode or mtime changed): "
            f"{changed[:3]}" if changed else "")


def check_ran(tool: str, out: str, stages: list[Stage]) -> str:
    """Why stdout does not report every stage as executed, in order; "" when it does."""
    prefix = "Ran stage '" if tool == "datavc" else "Running stage '"
    ran = [line[len(prefix):].split("'")[0] for line in out.splitlines()
           if line.startswith(prefix)]
    want = [s.name for s in stages]
    if ran != want:
        return f"{len(ran)} of {len(want)} stages reported as run (first {ran[:3]})"
    return ""


UP_TO_DATE = {"datavc": "Everything is up to date.", "dvc": "Data and pipelines are up to date."}


def check_noop(tool: str, out: str, stages: list[Stage]) -> str:
    """Why stdout of a repro (or a dry run / status) is not "nothing to run"."""
    if UP_TO_DATE[tool] not in out:
        return f"no {UP_TO_DATE[tool]!r} in stdout: {out.strip()[-300:]!r}"
    if tool == "dvc":
        skipped = sum(1 for line in out.splitlines() if line.endswith("didn't change, skipping"))
        if "Running stage" in out or skipped not in (0, len(stages)):
            return f"DVC ran stages or skipped only {skipped} of {len(stages)}"
    return ""


def check_json_noop(tool: str, out: str, stages: list[Stage]) -> str:
    """datavc `repro --json`: every stage up to date; DVC `status --json`: `{}`."""
    try:
        doc = json.loads(out)
    except ValueError as exc:
        return f"stdout is not JSON: {exc}"
    if tool == "dvc":
        return "" if doc == {} else f"dvc status --json is not empty: {str(doc)[:300]}"
    got = [(st["name"], st["status"]) for st in doc["stages"]]
    want = [(s.name, "up-to-date") for s in stages]
    if doc["failed"] or got != want:
        bad = [g for g in got if g[1] != "up-to-date"]
        return f"repro --json: {len(bad)} stages not up to date: {bad[:3]}"
    return ""
