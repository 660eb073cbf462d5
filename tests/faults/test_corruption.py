"""Corrupted cache objects and hostile manifests, through the real CLI.

Cache corruption follows git's t1060 patterns: a flipped bit, a truncated object, a
zero-length object, garbage appended, a misnamed object (the bytes of another object
under this name) and a missing object. ``datavc checkout`` must never put bytes that do
not match their id into the workspace: a corrupt object is refused (exit 3) and the
workspace file keeps its old bytes; a missing object is reported and its file left alone
(exit 1).

Hostile manifests (what a malicious clone can contain): pointers whose listings, crafted
here in the canonical msgpack encoding and stored under their correct ids, name
``../outside``, ``.git/hooks/x``, ``.GIT``, absolute paths, names colliding by case or
Unicode normalisation; hostile pointer names; a symlink planted where a directory goes.
``datavc checkout`` refuses (exit 6 for unsafe input) and writes nothing outside the
work tree: a sentinel directory outside stays byte-identical.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest
import xxhash

from tests.conftest import gen
from tests.faults.oracle import bad_objects, cli, files, git, litter, scratch

A = b"version A of f.txt\n" * 50
B = b"version B of f.txt\n" * 60
G = b"g.txt never changes\n" * 40


def obj(root: Path, content: bytes) -> Path:
    hexd = xxhash.xxh3_128_hexdigest(content)
    return root / ".datavc" / "cache" / "objects" / hexd[:2] / hexd[2:]


def put_object(root: Path, content: bytes) -> bytes:
    """Store ``content`` in the cache under its correct name; return its digest."""
    path = obj(root, content)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return xxhash.xxh3_128_digest(content)


def flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:]


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "flipped-bit": flip,
    "truncated": lambda d: d[: len(d) // 2],
    "zero-length": lambda d: b"",
    "appended": lambda d: d + b"\0",
    "misnamed": lambda d: G,  # another object's bytes under this name
}


def corrupt(root: Path, content: bytes, how: str) -> None:
    path = obj(root, content)
    assert path.read_bytes() == content
    os.chmod(path, 0o644)
    path.write_bytes(CORRUPTIONS[how](content))


@pytest.fixture
def sandbox() -> Iterator[Path]:
    with scratch("datavc-corrupt-") as base:
        yield base


def _make_repo(root: Path, link: str) -> str:
    """A repository with two commits: v1 (f.txt = A) and v2 (f.txt = B), at v2."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    assert cli(root, "init").returncode == 0
    with open(root / ".datavc" / "config.toml", "a") as f:
        f.write(f'\n[cache]\ntype = ["{link}"]\n')
    gen(root, {"data": {"f.txt": A, "g.txt": G, "sub": {"h.bin": b"h" * 300}}})
    r = cli(root, "add", "data")
    assert r.returncode == 0, r
    r = cli(root, "commit", "-m", "v1")
    assert r.returncode == 0, r
    v1 = git(root, "rev-parse", "HEAD").strip()
    f = root / "data" / "f.txt"
    f.unlink()  # a hardlinked file is the object itself: never edit it in place
    f.write_bytes(B)
    r = cli(root, "commit", "-m", "v2")
    assert r.returncode == 0, r
    return v1


@pytest.fixture(scope="module")
def templates() -> Iterator[dict[str, tuple[Path, str]]]:
    with scratch("datavc-corrupt-tpl-") as base:
        yield {link: (base / link, _make_repo(base / link, link))
               for link in ("copy", "hardlink")}


@pytest.fixture
def make_repo(templates: dict[str, tuple[Path, str]], sandbox: Path
              ) -> Callable[..., tuple[Path, str]]:
    """A copy of the two-commit repository (hardlinks become plain copies: harmless)."""

    def make(link: str = "copy") -> tuple[Path, str]:
        src, v1 = templates[link]
        return Path(shutil.copytree(src, sandbox / "repo", symlinks=True)), v1

    return make


@pytest.mark.parametrize("link", ["copy", "hardlink"])
@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_corrupt_object_is_never_checked_out_over_a_file(make_repo: Callable, how: str,
                                                         link: str) -> None:
    root, v1 = make_repo(link)
    before = files(root / "data")
    git(root, "checkout", v1, "--", "data.datavc")
    corrupt(root, A, how)
    r = cli(root, "checkout")
    assert r.returncode == 3, r
    assert "corrupt" in r.stderr and "Traceback" not in r.stderr, r
    assert files(root / "data") == before  # f.txt keeps B; nothing else moved
    assert litter(root) == []


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_corrupt_object_is_never_checked_out_into_empty_workspace(make_repo: Callable,
                                                                  how: str) -> None:
    root, v1 = make_repo()
    git(root, "checkout", v1, "--", "data.datavc")
    for p in sorted((root / "data").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    corrupt(root, A, how)
    r = cli(root, "checkout")
    assert r.returncode == 3, r
    assert "Traceback" not in r.stderr, r
    got = files(root / "data")
    assert "f.txt" not in got, "corrupt bytes reached the workspace"
    assert all(got[p] in (G, b"h" * 300, b"") for p in got)
    assert litter(root) == []


def test_missing_object_is_reported_and_file_left_alone(make_repo: Callable) -> None:
    root, v1 = make_repo()
    git(root, "checkout", v1, "--", "data.datavc")
    obj(root, A).unlink()
    r = cli(root, "checkout")
    assert r.returncode == 1, r
    assert "data/f.txt" in r.stderr + r.stdout and "Traceback" not in r.stderr, r
    assert (root / "data" / "f.txt").read_bytes() == B  # left as it was

    (root / "data" / "f.txt").unlink()
    r = cli(root, "checkout")
    assert r.returncode == 1, r
    assert "data/f.txt" in r.stderr + r.stdout, r
    assert files(root / "data") == {"g.txt": G, "sub/h.bin": b"h" * 300}


def test_corrupt_listing_refuses_before_touching_the_workspace(make_repo: Callable) -> None:
    root, v1 = make_repo()
    git(root, "checkout", v1, "--", "data.datavc")
    (root / "data" / "new.txt").write_bytes(b"would be deleted by v1")
    listing = next(
        e["oid"] for e in json.loads(cli(root, "ls-manifest", "--json", "data.datavc").stdout)
        if e["path"] == "data/sub")
    before = files(root / "data")
    hexd = listing.removeprefix("xxh128:")
    path = root / ".datavc" / "cache" / "objects" / hexd[:2] / hexd[2:]
    os.chmod(path, 0o644)
    path.write_bytes(flip(path.read_bytes()))
    r = cli(root, "checkout", "--force")
    assert r.returncode == 3, r
    assert files(root / "data") == before


# ------------------------------------------------------------ hostile manifests

def listing(rows: list[tuple[bytes, str, bytes, int, int, int]]) -> bytes:
    """A listing in the canonical encoding (docs/format.md §3): sorted rows."""
    return msgpack.packb(["datavc.listing", 1, [list(r) for r in sorted(rows)]],
                         use_bin_type=True)


PWNED = b"pwned\n"


def file_row(root: Path, name: bytes) -> tuple[bytes, str, bytes, int, int, int]:
    return (name, "file", put_object(root, PWNED), len(PWNED), 0o644, 1)


def dir_row(root: Path, name: bytes, rows: list) -> tuple[bytes, str, bytes, int, int, int]:
    size = sum(r[3] for r in rows)
    nfiles = sum(r[5] for r in rows)
    return (name, "dir", put_object(root, listing(rows)), size, 0o755, nfiles)


def write_pointer(root: Path, target: str, rows: list) -> None:
    digest = put_object(root, listing(rows))
    doc = {"datavc": 1, "kind": "dir", "oid": "xxh128:" + digest.hex(),
           "size": sum(r[3] for r in rows), "nfiles": sum(r[5] for r in rows)}
    (root / f"{target}.datavc").write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")


@pytest.fixture
def hostile(sandbox: Path) -> Iterator[tuple[Path, Path]]:
    """A fresh repository and, beside it, a sentinel directory nothing may write to."""
    root = sandbox / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    assert cli(root, "init").returncode == 0
    outside = sandbox / "outside"
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"do not touch\n")
    before = files(sandbox / "outside"), files(root / ".git")
    yield root, outside
    assert files(sandbox / "outside") == before[0], "something was written outside"
    assert files(root / ".git") == before[1], "something was written into .git"
    assert bad_objects(root) == []


HOSTILE: dict[str, Callable[[Path, Path], list]] = {
    "dotdot-name": lambda r, o: [file_row(r, b"../outside/pwned")],
    "dotdot-dir": lambda r, o: [dir_row(r, b"..", [dir_row(r, b"outside",
                                                           [file_row(r, b"pwned")])])],
    "dotdot-deep": lambda r, o: [dir_row(r, b"ok", [dir_row(r, b"..", [
        dir_row(r, b"..", [dir_row(r, b"outside", [file_row(r, b"pwned")])])])])],
    "git-hooks-name": lambda r, o: [file_row(r, b".git/hooks/x")],
    "git-hooks-dirs": lambda r, o: [dir_row(r, b".git", [dir_row(r, b"hooks", [
        file_row(r, b"post-checkout")])])],
    "GIT-upper": lambda r, o: [dir_row(r, b".GIT", [file_row(r, b"config")])],
    "git-trailing-dot": lambda r, o: [dir_row(r, b".git.", [file_row(r, b"config")])],
    "git-short-name": lambda r, o: [dir_row(r, b"GIT~1", [file_row(r, b"config")])],
    "datavc-dir": lambda r, o: [dir_row(r, b".datavc", [file_row(r, b"config.toml")])],
    "absolute": lambda r, o: [file_row(r, os.fsencode(o / "pwned"))],
    "case-collision": lambda r, o: [file_row(r, b"README"), file_row(r, b"readme")],
    "nfc-nfd-collision": lambda r, o: [file_row(r, "\u00e9".encode()),
                                       file_row(r, "e\u0301".encode())],
    "empty-name": lambda r, o: [file_row(r, b"")],
    "nul-in-name": lambda r, o: [file_row(r, b"a\0b")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_listing_is_refused(hostile: tuple[Path, Path], case: str) -> None:
    root, outside = hostile
    write_pointer(root, "data", HOSTILE[case](root, outside))
    r = cli(root, "checkout")
    assert r.returncode == 6, r
    assert "Traceback" not in r.stderr and r.stderr.startswith("datavc: error:"), r
    assert not (root / "data").exists(), "checkout wrote part of a refused tree"


@pytest.mark.parametrize("name", [".git", ".GIT", ".git.", "..", ".datavc"])
def test_hostile_pointer_name_is_refused(hostile: tuple[Path, Path], name: str) -> None:
    """``<name>.datavc`` in a clone would make ``<name>`` a checkout target."""
    root, _ = hostile
    write_pointer(root, name, [file_row(root, b"config")])
    r = cli(root, "checkout")
    assert r.returncode == 6, r
    assert "Traceback" not in r.stderr, r


@pytest.mark.parametrize("force", [False, True])
def test_symlink_planted_in_workspace_is_not_followed(hostile: tuple[Path, Path],
                                                      force: bool) -> None:
    """data/sub is a symlink to a directory outside; the manifest puts files in data/sub."""
    root, outside = hostile
    write_pointer(root, "data", [dir_row(root, b"sub", [file_row(root, b"sentinel"),
                                                        file_row(root, b"new")])])
    (root / "data").mkdir()
    (root / "data" / "sub").symlink_to(outside, target_is_directory=True)
    r = cli(root, "checkout", *(["--force"] if force else []))
    assert r.returncode == (6 if force else 1), r  # unsafe / a conflict (not cached)
    assert "Traceback" not in r.stderr, r
    assert (root / "data" / "sub").is_symlink()


def test_symlinked_target_is_not_followed(hostile: tuple[Path, Path]) -> None:
    """The tracked directory itself replaced by a symlink to a directory outside."""
    root, outside = hostile
    write_pointer(root, "data", [file_row(root, b"sentinel"), file_row(root, b"new")])
    (root / "data").symlink_to(outside, target_is_directory=True)
    for args, code in ((["checkout"], 1), (["checkout", "--force"], 6)):
        r = cli(root, *args)
        assert r.returncode == code, r
        assert "Traceback" not in r.stderr, r
    assert (root / "data").is_symlink()
