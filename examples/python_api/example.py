"""Load the exact training data of a past commit with the datavc Python API.

Run it anywhere (it works in a throw-away directory it removes afterwards):

    python examples/python_api/example.py

It makes a git repository, tracks a small dataset with datavc, commits it, changes it and
commits again, then reads the first version back with ``datavc.open(rev=...)`` while the
work tree keeps the second, and shows that a corrupted cache object is refused.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import datavc
from datavc.errors import IntegrityError


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def make_project(root: Path) -> tuple[datavc.Repo, str]:
    """A repository with data/ committed twice; returns it and the first commit's id."""
    os.chdir(root)
    git("init", "-q")
    git("config", "user.name", "Example")
    git("config", "user.email", "example@example.com")
    repo = datavc.Repo.init(".")
    Path("data/images").mkdir(parents=True)
    Path("data/images/0001.png").write_bytes(b"\x89PNG first image")
    Path("data/train.csv").write_text("image,label\n0001.png,cat\n")
    repo.add(["data"])
    v1 = repo.commit(message="dataset v1").git_commit
    assert v1 is not None

    Path("data/images/0002.png").write_bytes(b"\x89PNG second image")
    Path("data/train.csv").write_text("image,label\n0001.png,dog\n0002.png,cat\n")
    repo.commit(message="dataset v2: relabel 0001, add 0002")
    return repo, v1


def load_labels(repo: datavc.Repo, rev: str | None) -> list[dict[str, str]]:
    """The labels as of ``rev`` (None: as the work-tree manifests record them)."""
    with datavc.open("data/train.csv", rev=rev, repo=repo) as f:
        return list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="datavc-example-"))
    cwd = os.getcwd()
    try:
        repo, v1 = make_project(tmp)
        print("v1 labels:", load_labels(repo, v1))
        print("v2 labels:", load_labels(repo, None))
        assert load_labels(repo, v1) == [{"image": "0001.png", "label": "cat"}]
        assert len(load_labels(repo, "HEAD")) == 2

        images = [e.path for e in repo.ls("data", rev=v1) if e.path.endswith(".png")]
        assert images == ["data/images/0001.png"]
        assert datavc.read_bytes(images[0], rev=v1, repo=repo) == b"\x89PNG first image"
        assert Path("data/train.csv").read_text().count("\n") == 3  # work tree untouched

        # Bytes are verified against their id: flip one byte of the cached object.
        with repo.open("data/train.csv", rev=v1) as f:
            obj = Path(repo.store.path(f.raw.oid))
        obj.chmod(0o644)
        data = bytearray(obj.read_bytes())
        data[0] ^= 0xFF
        obj.write_bytes(bytes(data))
        try:
            load_labels(repo, v1)
        except IntegrityError as exc:
            print(f"refused (exit code {exc.exit_code}): {exc.message}")
        else:
            raise AssertionError("a corrupt object was read")
        print("ok")
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
