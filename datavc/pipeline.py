"""``datavc.toml``: the pipeline's stages, parsed and validated once, and their graph.

Pure: no I/O beyond what the caller hands in. A pipeline file is untrusted input (it comes
with a clone): its size is bounded, its schema strict, every path is validated like a
manifest's, no output is declared twice (or inside another output), and a cycle is refused
with the error naming it. Stage ``b`` depends on stage ``a`` when a dependency of ``b`` and an
output of ``a`` are the same path or one lies inside the other.

Schema (docs/format.md §8)::

    [stages.NAME]
    cmd = "python src/x.py"         # or a list of argv strings
    deps = ["src/x.py", "data/raw"] # paths (files or directories)
    outs = ["data/x"]               # paths the command writes
    params = ["params.toml:x.seed"] # "FILE:SECTION" or "FILE:SECTION.KEY"
    shell = false                   # run cmd (and probes) through /bin/sh
    probes = {users = "sqlite3 app.db 'select max(updated) from users'"}
                                    # NAME = command whose stdout is hashed: a dependency
                                    # that is not a file
"""

from __future__ import annotations

import bisect
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from typing import Any

from . import config
from .errors import InvalidInputError, UsageError
from .paths import split_relpath

FILENAME = "datavc.toml"
MAX_BYTES = 1 << 20
MAX_STAGES = 10_000
STAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_KEY = re.compile(r"[A-Za-z0-9_-]+")
_STAGE_KEYS = frozenset({"cmd", "deps", "outs", "params", "shell", "probes"})
MAX_PROBES = 64


@dataclass(frozen=True)
class Param:
    """``FILE:KEY.PATH``: the value at dotted ``keys`` of TOML file ``file``."""

    spec: str
    file: str
    keys: tuple[str, ...]

    @classmethod
    def parse(cls, spec: object, *, where: str) -> Param:
        if not isinstance(spec, str) or ":" not in spec:
            raise InvalidInputError(f"{where}: a param must be 'FILE:SECTION[.KEY]', "
                                    f"not {spec!r}")
        file, _, key = spec.rpartition(":")
        split_relpath(file, where=where)
        keys = tuple(key.split("."))
        if not all(_KEY.fullmatch(k) for k in keys):
            raise InvalidInputError(f"{where}: malformed param key {key!r} in {spec!r}")
        return cls(spec, file, keys)

    def value(self, doc: dict[str, Any], *, where: str) -> Any:
        """The value this param names in the parsed params file ``doc``."""
        node: Any = doc
        for key in self.keys:
            if not isinstance(node, dict) or key not in node:
                raise InvalidInputError(f"{where}: param '{self.spec}' not found in "
                                        f"{self.file}", hint=f"define it in {self.file}")
            node = node[key]
        return node


def argv(cmd: str | tuple[str, ...], shell: bool) -> list[str] | str:
    """What to hand to subprocess: a shell string with ``shell``, else argv."""
    if shell:
        return cmd if isinstance(cmd, str) else shlex.join(cmd)
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


@dataclass(frozen=True)
class Probe:
    """A dependency that is not a file: a command whose standard output is hashed (a
    database table's checksum, an API's version). Its id is that of the bytes it prints."""

    name: str
    cmd: str | tuple[str, ...]

    @property
    def cmd_json(self) -> str | list[str]:
        return self.cmd if isinstance(self.cmd, str) else list(self.cmd)


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str | tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    params: tuple[Param, ...] = ()
    shell: bool = False
    probes: tuple[Probe, ...] = ()

    @property
    def cmd_json(self) -> str | list[str]:
        """The command as recorded in the lock (a string, or a list of argv strings)."""
        return self.cmd if isinstance(self.cmd, str) else list(self.cmd)

    def argv(self) -> list[str] | str:
        """What to hand to subprocess: a shell string with ``shell``, else argv."""
        return argv(self.cmd, self.shell)


@dataclass(frozen=True)
class Pipeline:
    stages: dict[str, Stage]  # in file order
    upstream: dict[str, tuple[str, ...]]  # stage -> the stages it depends on (sorted)
    order: tuple[str, ...]  # a topological order, deterministic
    outs: _Outs = field(default_factory=lambda: _Outs(), compare=False, repr=False)

    def outputs_overlapping(self, path: str) -> list[tuple[str, str]]:
        """(output, stage) for each output that is ``path``, holds it or lies inside it."""
        return [(o, self.outs.owner[o]) for o in self.outs.overlapping(path)]

    def downstream(self, name: str) -> list[str]:
        return sorted(s for s, ups in self.upstream.items() if name in ups)

    def closure(self, names: list[str]) -> list[str]:
        """``names`` and every stage they depend on, in topological order."""
        for name in names:
            if name not in self.stages:
                raise UsageError(f"no stage named '{name}' in {FILENAME}",
                                 hint="see `datavc dag`")
        want: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in want:
                want.add(name)
                todo.extend(self.upstream[name])
        return [s for s in self.order if s in want]


def loads(data: bytes, *, where: str = FILENAME) -> Pipeline:
    """Parse and validate a pipeline file's bytes (exit 6 on anything invalid)."""
    return build(parse_doc(data, where=where), where=where)


def parse_doc(data: bytes, *, where: str = FILENAME) -> dict[str, Any]:
    if len(data) > MAX_BYTES:
        raise InvalidInputError(f"{where} is larger than {MAX_BYTES} bytes")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"{where} is not valid TOML: {exc}") from None


def build(doc: dict[str, Any], *, where: str = FILENAME) -> Pipeline:
    unknown = sorted(set(doc) - {"stages"})
    if unknown:
        raise InvalidInputError(f"{where}: unknown top-level key(s) {unknown}",
                                hint="a pipeline file holds only [stages.NAME] tables")
    table = doc.get("stages", {})
    if not isinstance(table, dict):
        raise InvalidInputError(f"{where}: 'stages' must be a table of [stages.NAME]")
    if len(table) > MAX_STAGES:
        raise InvalidInputError(f"{where}: more than {MAX_STAGES} stages")
    stages = {name: _stage(name, body, where) for name, body in table.items()}
    outs = _check_outs(stages, where)
    upstream = {name: tuple(sorted({outs.owner[o] for d in stage.deps
                                    for o in outs.overlapping(d)}))
                for name, stage in stages.items()}
    return Pipeline(stages, upstream, _toposort(upstream, where), outs)


def _stage(name: str, body: Any, where: str) -> Stage:
    if not STAGE_NAME.fullmatch(name):
        raise InvalidInputError(f"{where}: invalid stage name {name!r}",
                                hint="use letters, digits, '_', '-' and '.' (at most 64)")
    at = f"{where}, stage '{name}'"
    if not isinstance(body, dict):
        raise InvalidInputError(f"{at}: must be a table")
    unknown = sorted(set(body) - _STAGE_KEYS)
    if unknown:
        raise InvalidInputError(f"{at}: unknown key(s) {unknown}",
                                hint=f"known keys: {sorted(_STAGE_KEYS)}")
    shell = body.get("shell", False)
    if not isinstance(shell, bool):
        raise InvalidInputError(f"{at}: 'shell' must be true or false")
    params = tuple(Param.parse(p, where=at) for p in _strings(body, "params", at))
    if len({p.spec for p in params}) != len(params):
        raise InvalidInputError(f"{at}: a param is listed twice")
    return Stage(name, _cmd(body.get("cmd"), at), _paths(body, "deps", at),
                 _paths(body, "outs", at), params, shell, _probes(body.get("probes", {}), at))


def _probes(table: Any, at: str) -> tuple[Probe, ...]:
    if not isinstance(table, dict):
        raise InvalidInputError(f"{at}: 'probes' must be a table of NAME = command")
    if len(table) > MAX_PROBES:
        raise InvalidInputError(f"{at}: more than {MAX_PROBES} probes")
    for name in table:
        if not _KEY.fullmatch(name) or len(name) > 64:
            raise InvalidInputError(f"{at}: invalid probe name {name!r}",
                                    hint="use letters, digits, '_' and '-' (at most 64)")
    return tuple(Probe(name, _cmd(cmd, f"{at}, probe '{name}'"))
                 for name, cmd in sorted(table.items()))


def _cmd(cmd: Any, at: str) -> str | tuple[str, ...]:
    if isinstance(cmd, str) and cmd.strip():
        try:
            shlex.split(cmd)
        except ValueError as exc:
            raise InvalidInputError(f"{at}: cannot split 'cmd': {exc}") from None
        return cmd
    if isinstance(cmd, list) and cmd and all(isinstance(a, str) for a in cmd):
        return tuple(cmd)
    raise InvalidInputError(f"{at}: 'cmd' must be a non-empty string or list of strings")


def _strings(body: dict[str, Any], key: str, at: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"{at}: '{key}' must be a list of strings")
    return value


def _paths(body: dict[str, Any], key: str, at: str) -> tuple[str, ...]:
    paths = _strings(body, key, at)
    for path in paths:
        split_relpath(path, where=f"{at}, {key}")
    if len(set(paths)) != len(paths):
        raise InvalidInputError(f"{at}: a path is listed twice in '{key}'")
    return tuple(paths)


def overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


class _Outs:
    """Output paths and their stages, indexed so that the outputs overlapping a path (the
    path itself, its ancestors, what lies inside it) are found without a scan of all."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}
        self._sorted: list[str] = []

    def add(self, path: str, stage: str) -> None:
        self.owner[path] = stage
        bisect.insort(self._sorted, path)

    def overlapping(self, path: str) -> list[str]:
        parts = path.split("/")
        found = [a for a in ("/".join(parts[:i]) for i in range(1, len(parts) + 1))
                 if a in self.owner]
        prefix = path + "/"
        i = bisect.bisect_left(self._sorted, prefix)
        while i < len(self._sorted) and self._sorted[i].startswith(prefix):
            found.append(self._sorted[i])
            i += 1
        return found


def _check_outs(stages: dict[str, Stage], where: str) -> _Outs:
    outs = _Outs()
    for name, stage in stages.items():
        for out in stage.outs:
            for path in outs.overlapping(out)[:1]:
                other = outs.owner[path]
                same = "the same output" if out == path else "overlapping outputs"
                raise InvalidInputError(
                    f"{where}: stages '{other}' and '{name}' declare {same} "
                    f"('{path}', '{out}')" if other != name else
                    f"{where}: stage '{name}' declares {same} ('{path}', '{out}')",
                    hint="every output belongs to exactly one stage")
            outs.add(out, name)
    return outs


def _toposort(upstream: dict[str, tuple[str, ...]], where: str) -> tuple[str, ...]:
    waiting = {name: set(ups) for name, ups in upstream.items()}
    order: list[str] = []
    ready = sorted(n for n, ups in waiting.items() if not ups)
    while ready:
        name = ready.pop(0)
        order.append(name)
        del waiting[name]
        freed = [n for n, ups in waiting.items() if name in ups]
        for n in freed:
            waiting[n].discard(name)
        ready = sorted(set(ready) | {n for n in freed if not waiting[n]})
    if waiting:
        cycle = find_cycle(waiting)
        raise InvalidInputError(f"{where}: the stages form a cycle: {' -> '.join(cycle)}",
                                hint="a stage cannot depend, directly or not, on its own "
                                     "outputs")
    return tuple(order)


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle in a graph where every node has an edge, as [a, b, ..., a]."""
    start = min(edges)
    path = [start]
    seen = {start: 0}
    while True:
        node = min(n for n in edges[path[-1]] if n in edges)
        if node in seen:
            return [*path[seen[node]:], node]
        seen[node] = len(path)
        path.append(node)


def stage_doc(stage: Stage) -> dict[str, Any]:
    """The ``[stages.NAME]`` table of ``stage``, for writing with ``stage add``."""
    body: dict[str, Any] = {"cmd": stage.cmd_json, "deps": list(stage.deps),
                            "outs": list(stage.outs)}
    if stage.params:
        body["params"] = [p.spec for p in stage.params]
    if stage.shell:
        body["shell"] = True
    if stage.probes:
        body["probes"] = {p.name: p.cmd_json for p in stage.probes}
    return body


def append_stage(text: str, stage: Stage) -> str:
    """``text`` (a pipeline file) with ``stage`` appended, the rest kept byte for byte."""
    table = config.dumps({"stages": {stage.name: stage_doc(stage)}})
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + table


# ------------------------------------------------------------------ rendering the graph

def render(pipe: Pipeline, fmt: str) -> str:
    if fmt == "text":
        lines = []
        for name in pipe.order:
            ups = pipe.upstream[name]
            lines.append(f"{name}" + (f"  <- {', '.join(ups)}" if ups else ""))
        return "\n".join(lines) + ("\n" if lines else "")
    if fmt == "mermaid":
        lines = ["flowchart TD"]
        lines += [f"  {_mid(n)}[\"{n}\"]" for n in pipe.order]
        lines += [f"  {_mid(u)} --> {_mid(n)}" for n in pipe.order for u in pipe.upstream[n]]
        return "\n".join(lines) + "\n"
    if fmt == "dot":
        lines = ["digraph datavc {"]
        lines += [f"  \"{n}\";" for n in pipe.order]
        lines += [f"  \"{u}\" -> \"{n}\";" for n in pipe.order for u in pipe.upstream[n]]
        return "\n".join([*lines, "}"]) + "\n"
    raise UsageError(f"unknown graph format '{fmt}'", hint="use text, mermaid or dot")


def _mid(name: str) -> str:
    """A mermaid node id: stage names may hold '.' and '-', which mermaid ids may not."""
    return "s_" + re.sub(r"[^A-Za-z0-9_]", lambda m: f"_{ord(m.group()):x}_", name)
