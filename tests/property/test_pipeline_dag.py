"""Random small pipelines: after changing one input file, exactly the stages downstream of it
(whose inputs' content really changes) rerun, and a second repro runs nothing; touching
every file reruns nothing; changing the input back restores every rerun stage from the
run-cache without executing; and a parallel run writes the same lock as a serial one."""

from __future__ import annotations

import json
import os
import sys
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.property.helpers import Sandbox

# out.py OUT IN...: OUT = the sorted inputs' bytes joined, and a line in runs.log
SCRIPT = """\
import sys
out, ins = sys.argv[1], sys.argv[2:]
open(out, "wb").write(b"|".join(open(p, "rb").read() for p in ins))
open("runs.log", "a").write(out + "\\n")
"""


@st.composite
def dags(draw):
    """Stage i reads its own input file in_i and the outputs of some earlier stages."""
    n = draw(st.integers(1, 5))
    ups = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=i))) if i else []
           for i in range(n)]
    changed = draw(st.integers(0, n - 1))
    return ups, changed


def downstream(ups: list[list[int]], start: int) -> set[int]:
    found = {start}
    for i in range(len(ups)):  # stages are in topological order
        if any(u in found for u in ups[i]):
            found.add(i)
    return found


def runs(box: Sandbox) -> set[str]:
    log = box.root / "runs.log"
    out = set(log.read_text().split()) if log.exists() else set()
    log.unlink(missing_ok=True)
    return out


@settings(max_examples=8, deadline=None, database=None)
@given(dag=dags())
def test_only_downstream_stages_rerun(dag):
    ups, changed = dag
    box = Sandbox()
    try:
        (box.root / "out.py").write_text(SCRIPT)
        toml = []
        for i, deps in enumerate(ups):
            (box.root / f"in_{i}").write_text(f"input {i}")
            ins = [f"in_{i}", *(f"out_{u}" for u in deps)]
            cmd = json.dumps([sys.executable, "out.py", f"out_{i}", *ins])
            toml.append(f"[stages.s{i}]\ncmd = {cmd}\ndeps = {json.dumps(ins)}\n"
                        f"outs = [\"out_{i}\"]\n")
        (box.root / "datavc.toml").write_text("\n".join(reversed(toml)))
        box.repo.trust()
        box.repo.repro()
        assert runs(box) == {f"out_{i}" for i in range(len(ups))}
        assert {s.status for s in box.repo.repro().stages} == {"up-to-date"}
        assert runs(box) == set()
        (box.root / f"in_{changed}").write_text("changed")
        result = box.repo.repro(jobs=2)
        expect = {f"out_{i}" for i in downstream(ups, changed)}
        assert runs(box) == expect
        assert {s.name for s in result.stages if s.status == "ran"} == \
            {f"s{i}" for i in downstream(ups, changed)}
        assert {s.status for s in box.repo.repro().stages} == {"up-to-date"}
        assert runs(box) == set()
        for path in box.root.iterdir():  # timestamps are not content
            if path.is_file():
                os.utime(path, ns=(time.time_ns() + 10**10,) * 2)
        assert {s.status for s in box.repo.repro().stages} == {"up-to-date"}
        assert runs(box) == set()
        parallel_lock = (box.root / "datavc.lock").read_bytes()
        (box.root / f"in_{changed}").write_text(f"input {changed}")
        result = box.repo.repro(jobs=3)
        assert runs(box) == set()  # back to seen inputs: restored, nothing executed
        assert {s.name for s in result.stages if s.status == "restored"} == \
            {f"s{i}" for i in downstream(ups, changed)}
        first_lock = (box.root / "datavc.lock").read_bytes()
        box.repo.repro(force=True)  # serially, every command executed
        assert (box.root / "datavc.lock").read_bytes() == first_lock
        (box.root / f"in_{changed}").write_text("changed")
        box.repo.repro(jobs=1, run_cache=False)
        assert (box.root / "datavc.lock").read_bytes() == parallel_lock
    finally:
        box.close()
