"""examples/nightly/run.sh runs end to end with the installed `datavc`, as `make demo` runs
it, and leaves behind what it claims: the script checks each repro's statuses itself; this
test checks the repositories it leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import xxhash

from tests.conftest import git

RUN_SH = Path(__file__).resolve().parents[2] / "examples" / "nightly" / "run.sh"
STAGES = {"user_features", "classifier", "train", "evaluate"}


def test_the_nightly_example_runs_and_leaves_what_it_claims(tmp_path: Path):
    scripts = sysconfig.get_path("scripts")  # where this interpreter's `datavc` is installed
    assert Path(scripts, "datavc").is_file(), f"no datavc in {scripts}"
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
    work = tmp_path / "nightly"
    proc = subprocess.run(["bash", str(RUN_SH), str(work)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.stdout.rstrip().splitlines()[-1].startswith("run.sh: OK")
    assert "FAILED" not in proc.stderr

    project, clone = work / "project", work / "clone"
    lock = json.loads((project / "datavc.lock").read_text())
    assert set(lock["stages"]) == STAGES
    assert json.loads(git(project, "show", "HEAD:datavc.lock")) == lock
    assert lock["stages"]["train"]["params"]["params.toml:train"]["learning_rate"] == 0.5
    metrics = json.loads((project / "metrics.json").read_text())
    assert metrics["held_out_days"] == ["day-08"]
    assert metrics["log_loss"] < metrics["baseline_log_loss"]
    assert sorted(p.name for p in (project / "data" / "raw" / "logs").iterdir()) == [
        f"day-{d:02}.jsonl" for d in range(1, 9)]
    assert git(project, "status", "--porcelain") == ""
    assert len(git(project, "log", "--format=%h").split()) == 4

    for out in ("data/features/users.csv", "data/scores/tag_quality.csv"):
        assert (clone / out).read_bytes() == (project / out).read_bytes(), out
    # the clone ends on the learning rate of step 5, restored from the remote's run-cache
    clone_lock = json.loads((clone / "datavc.lock").read_text())
    assert clone_lock["stages"]["train"]["params"]["params.toml:train"]["learning_rate"] == 0.05
    model = clone_lock["stages"]["train"]["outs"]["models/model.json"]["oid"]
    assert xxhash.xxh3_128_hexdigest((clone / "models/model.json").read_bytes()) == \
        model.split(":")[1]
    assert model != lock["stages"]["train"]["outs"]["models/model.json"]["oid"]
    # trust was recorded in the work directory, not in the user's config
    assert (work / "config" / "datavc" / "trust.json").is_file()
    assert not (Path(os.environ["XDG_CONFIG_HOME"]) / "datavc").exists()
