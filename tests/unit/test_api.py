"""Reading tracked data as of any revision: ``Repo.open``/``Repo.read_bytes`` and the
module-level ``datavc.open``/``datavc.read_bytes`` (docs/api.md)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

import datavc
from datavc import reader
from datavc.errors import (
    DatavcError,
    IntegrityError,
    InvalidInputError,
    ObjectMissingError,
    UnsafePathError,
    UsageError,
)
from datavc.repo import Repo
from tests.conftest import gen, git
from tests.func.helpers import corrupt

BIG = bytes(range(256)) * 64  # 16 KiB, streamed once WHOLE_MAX is patched below it
V1 = {"data": {"a.txt": "a one\n", "sub": {"deep": {"x.bin": "x one\n"}, "big": BIG},
               "other": {"y": "y\n"}},
      "m.bin": "model one\n"}
V2 = {"data": {"a.txt": "a two\n", "sub": {"deep": {"x.bin": "x two\n"}, "big": BIG}},
      "m.bin": "model two\n"}


def _write(root: Path, spec: dict) -> None:
    for name in ("data", "m.bin"):
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    gen(root, spec)


@pytest.fixture
def hist(repo: Repo, scm: Path) -> Repo:
    """data/ and m.bin committed as V1 (HEAD~1), then as V2 (HEAD, and the work tree)."""
    _write(scm, V1)
    repo.add(["data", "m.bin"])
    repo.commit(message="v1")
    _write(scm, V2)
    repo.commit(message="v2")
    return repo


@pytest.fixture
def streamed(monkeypatch):
    """Objects over 1 KiB are streamed and verified at their end, not when opened (and the
    buffer is smaller than BIG, so a short read does not read it all)."""
    monkeypatch.setattr(reader, "WHOLE_MAX", 1024)
    monkeypatch.setattr(reader, "BUFFER_SIZE", 512)


def _object(repo: Repo, path: str, rev: str | None = None) -> Path:
    with repo.open(path, rev) as f:
        return Path(repo.store.path(f.raw.oid))


# --- reading ---------------------------------------------------------------------------


def test_read_at_head_at_an_older_rev_and_in_the_work_tree(hist: Repo):
    assert hist.read_bytes("data/a.txt") == b"a two\n"
    assert hist.read_bytes("data/a.txt", "HEAD") == b"a two\n"
    assert hist.read_bytes("data/a.txt", "HEAD~1") == b"a one\n"
    assert hist.read_bytes("data/sub/deep/x.bin", "HEAD~1") == b"x one\n"
    assert hist.read_bytes("data/other/y", "HEAD~1") == b"y\n"
    assert hist.read_bytes("m.bin", "HEAD~1") == b"model one\n"  # a file target
    assert hist.read_bytes("m.bin") == b"model two\n"
    sha = git(hist.root, "rev-parse", "HEAD~1").strip()
    assert hist.read_bytes("data/a.txt", sha[:12]) == b"a one\n"


def test_work_tree_reads_follow_the_manifests_not_the_workspace_files(hist: Repo, scm):
    (scm / "data" / "a.txt").write_text("edited, not committed\n")
    (scm / "m.bin").unlink()
    assert hist.read_bytes("data/a.txt") == b"a two\n"
    assert hist.read_bytes("m.bin") == b"model two\n"


def test_module_level_functions_take_paths_relative_to_the_repo_root(hist: Repo, scm,
                                                                     tmp_path, monkeypatch):
    monkeypatch.chdir(scm / "data" / "sub")
    assert datavc.read_bytes("data/a.txt", rev="HEAD~1") == b"a one\n"
    monkeypatch.chdir(tmp_path)
    assert datavc.read_bytes("data/a.txt", "HEAD~1", repo=scm) == b"a one\n"
    assert datavc.read_bytes("data/a.txt", repo=hist) == b"a two\n"
    assert datavc.read_bytes(scm / "data" / "a.txt", "HEAD~1", repo=scm) == b"a one\n"
    with datavc.open(Path("m.bin"), rev="HEAD~1", repo=str(scm)) as f:
        assert f.read() == b"model one\n"
    with pytest.raises(UsageError, match="not inside the repository"):
        datavc.read_bytes(tmp_path / "elsewhere", repo=scm)


def test_the_file_object(hist: Repo):
    with hist.open("data/sub/big", "HEAD~1") as f:
        assert isinstance(f, io.BufferedReader)
        assert f.name == "data/sub/big" and f.mode == "rb"
        assert f.readable() and f.seekable() and not f.writable()
        assert f.raw.verified and f.raw.size == len(BIG) and f.raw.oid == datavc.Oid(
            __import__("xxhash").xxh3_128_digest(BIG))
        assert f.read(10) == BIG[:10]
        buf = bytearray(100)
        assert f.readinto(buf) == 100 and bytes(buf) == BIG[10:110]
        assert f.seek(-5, os.SEEK_END) == len(BIG) - 5 and f.read() == BIG[-5:]
        assert f.read() == b""
        f.seek(0)
        assert b"".join(f) == BIG  # iteration yields lines
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()
        with pytest.raises(io.UnsupportedOperation):
            f.write(b"x")
    assert f.closed
    with pytest.raises(ValueError):
        f.read()
    with hist.open("data/a.txt") as f:
        assert list(f) == [b"a two\n"]


def test_streamed_object_supports_random_access(hist: Repo, streamed):
    with hist.open("data/sub/big") as f:
        assert not f.raw.verified
        f.seek(5000)
        assert f.read(10) == BIG[5000:5010]  # the skipped bytes were hashed on the way
        f.seek(100)
        assert f.read(10) == BIG[100:110]
        assert not f.raw.verified
        f.seek(0, os.SEEK_END)
        assert f.read(1) == b""
        assert f.raw.verified
        f.seek(1)
        assert f.read() == BIG[1:]
    with hist.open("data/sub/big") as f:
        assert f.read() == BIG and f.raw.verified


# --- verification --------------------------------------------------------------------------


def test_small_corrupt_object_is_refused_when_opened(hist: Repo):
    corrupt(_object(hist, "data/a.txt", "HEAD~1"), offset=2)
    with pytest.raises(IntegrityError, match="is corrupt") as exc:
        hist.open("data/a.txt", "HEAD~1")
    assert exc.value.exit_code == 3 and "delete the object file" in str(exc.value)
    with pytest.raises(IntegrityError):
        hist.read_bytes("data/a.txt", "HEAD~1")


def test_big_corrupt_object_fails_at_the_end_and_never_hands_out_its_end(hist: Repo,
                                                                        streamed):
    path = _object(hist, "data/sub/big")
    corrupt(path, offset=len(BIG) // 2)
    with hist.open("data/sub/big") as f:  # opening does not read it all
        assert f.read(1000) == BIG[:1000]  # an unverified prefix, as documented
        with pytest.raises(IntegrityError, match="is corrupt") as exc:
            f.read()
        assert exc.value.exit_code == 3
        with pytest.raises(IntegrityError):  # and from then on, every read
            f.read(1)
    with pytest.raises(IntegrityError):
        hist.read_bytes("data/sub/big")
    with hist.open("data/sub/big") as f:
        f.seek(len(BIG) - 10)  # skipping to the end hashes everything first
        with pytest.raises(IntegrityError):
            f.read()
    with reader.open_object(str(path), reader.Found("big", _oid(BIG), len(BIG))) as f:
        buf = bytearray(b"\x01" * len(BIG))
        with pytest.raises(IntegrityError):
            f.raw.readinto(buf)
        assert buf == bytes(len(BIG))  # the caller's buffer holds nothing of it


def test_truncated_object_is_refused_when_opened(hist: Repo, streamed):
    path = _object(hist, "data/sub/big")
    path.chmod(0o644)
    os.truncate(path, 100)
    with pytest.raises(IntegrityError, match="holds 100 bytes where the manifest declares"):
        hist.open("data/sub/big")


def _oid(data: bytes) -> datavc.Oid:
    from datavc.hashing import hash_bytes

    return hash_bytes(data)


# --- missing objects: the one seam for remotes ------------------------------------------------


def test_missing_object_goes_through_fetch_object_and_fails_with_exit_1(hist: Repo,
                                                                        monkeypatch):
    path = _object(hist, "data/a.txt", "HEAD~1")
    saved = path.read_bytes()
    path.unlink()
    with pytest.raises(ObjectMissingError) as exc:
        hist.read_bytes("data/a.txt", "HEAD~1")
    assert exc.value.exit_code == 1
    text = str(exc.value)
    assert "cannot read 'data/a.txt' at revision 'HEAD~1'" in text
    assert str(_oid(b"a one\n")) in text and "no default remote" in text
    asked = []

    def fetch(oid):  # what a remote will do: bring the object into the cache
        asked.append(oid)
        path.write_bytes(saved)

    monkeypatch.setattr(hist, "_fetch_object", fetch)
    assert hist.read_bytes("data/a.txt", "HEAD~1") == b"a one\n"
    assert asked == [_oid(b"a one\n")]


def test_missing_listing_goes_through_fetch_object(hist: Repo, monkeypatch):
    pointer = hist.read_pointer("data", "HEAD~1")
    path = Path(hist.store.path(pointer.oid))
    saved = path.read_bytes()
    path.unlink()
    with pytest.raises(ObjectMissingError, match=f"'data/a.txt' at revision 'HEAD~1'.*"
                                                 f"{pointer.oid}"):
        hist.read_bytes("data/a.txt", "HEAD~1")
    monkeypatch.setattr(hist, "_fetch_object", lambda oid: path.write_bytes(saved))
    assert hist.read_bytes("data/a.txt", "HEAD~1") == b"a one\n"


# --- what is not a tracked file ---------------------------------------------------------


@pytest.mark.parametrize(("path", "rev", "cls", "code", "match"), [
    ("data", None, UsageError, 2, "'data' is a tracked directory, not a file"),
    ("data/sub/deep", "HEAD~1", UsageError, 2, "'data/sub/deep' is a directory in 'data'"),
    ("data/nope", None, DatavcError, 1, "'data/nope' is not tracked by datavc: 'data' has "
                                        "no entry 'nope'"),
    ("data/other/y", "HEAD", DatavcError, 1, "at revision 'HEAD': 'data' has no entry"),
    ("data/a.txt/x", None, DatavcError, 1, "'data/a.txt' is a file, not a directory"),
    ("m.bin/x", None, DatavcError, 1, "'m.bin' is a file, not a directory"),
    ("README", None, DatavcError, 1, "no pointer manifest names it or a directory above"),
    ("m.bin.datavc", None, DatavcError, 1, "not tracked by datavc"),
    ("data/../m.bin", None, UnsafePathError, 6, "relative component"),
    ("./m.bin", None, UnsafePathError, 6, "relative component"),
    ("data//a.txt", None, UnsafePathError, 6, "empty name"),
    (".datavc/config.toml", None, UnsafePathError, 6, ".git or .datavc"),
    (".git/HEAD", "HEAD", UnsafePathError, 6, ".git or .datavc"),
    ("data/.GIT/x", None, UnsafePathError, 6, ".git or .datavc"),
    ("", None, UsageError, 2, "the repository root itself"),
    (".", None, UsageError, 2, "the repository root itself"),
])
def test_paths_that_are_not_tracked_files(hist: Repo, path, rev, cls, code, match):
    with pytest.raises(cls, match=match) as exc:
        hist.open(path, rev)
    assert type(exc.value) is cls and exc.value.exit_code == code
    assert exc.value.hint


def test_a_target_added_later_is_not_tracked_at_an_older_rev(hist: Repo, scm):
    gen(scm, {"new.bin": "new\n"})
    hist.add(["new.bin"])
    assert hist.read_bytes("new.bin") == b"new\n"
    with pytest.raises(DatavcError, match="not tracked by datavc at revision 'HEAD'") as exc:
        hist.read_bytes("new.bin", "HEAD")
    assert exc.value.exit_code == 1 and "--rev HEAD" in str(exc.value)


def test_unknown_revision(hist: Repo):
    with pytest.raises(DatavcError, match="unknown git revision 'nope'") as exc:
        hist.read_bytes("data/a.txt", "nope")
    assert exc.value.exit_code == 1


@pytest.mark.parametrize("mode", ["r", "wb", "rb+", "ab", "b"])
def test_only_binary_reading(hist: Repo, mode):
    with pytest.raises(UsageError, match="binary mode") as exc:
        datavc.open("m.bin", mode=mode)
    assert exc.value.exit_code == 2
    with datavc.open("m.bin", mode="br") as f:
        assert f.read() == b"model two\n"


def test_a_symlinked_directory_above_a_work_tree_pointer_is_refused(repo: Repo, scm):
    gen(scm, {"real": {"d": {"f": "f\n"}}})
    repo.add(["real/d"])
    os.symlink("real", scm / "link")
    with pytest.raises(UnsafePathError, match="goes through the symlink"):
        repo.read_bytes("link/d/f")
    assert repo.read_bytes("real/d/f") == b"f\n"


# --- hostile input ------------------------------------------------------------------------


@pytest.mark.parametrize("doc", ['{"datavc": 99, "kind": "dir"}\n', "{not json\n",
                                 '{"datavc": 1, "kind": "dir", "oid": "xxh128:zz", '
                                 '"size": 0, "nfiles": 0}\n', "x" * 70000])
def test_hostile_pointer_in_history_is_refused_before_anything_is_read(hist: Repo, scm,
                                                                       monkeypatch, doc):
    good = (scm / "data.datavc").read_bytes()
    (scm / "data.datavc").write_text(doc)
    git(scm, "commit", "-qam", "hostile")
    (scm / "data.datavc").write_bytes(good)
    git(scm, "commit", "-qam", "repaired")
    reads: list[object] = []
    monkeypatch.setattr(hist.store, "read_bytes", lambda *a, **k: reads.append(a))
    monkeypatch.setattr(reader, "open_object", lambda *a, **k: reads.append(a))
    with pytest.raises(InvalidInputError, match="data.datavc") as exc:
        hist.read_bytes("data/a.txt", "HEAD~1")
    assert exc.value.exit_code == 6 and reads == []


def test_a_listing_that_does_not_add_up_is_refused(hist: Repo, scm):
    from datavc.manifest import Pointer

    p = hist.read_pointer("data")
    (scm / "data.datavc").write_bytes(Pointer("dir", p.oid, p.size + 1, p.nfiles).dumps())
    with pytest.raises(InvalidInputError, match="does not add up") as exc:
        hist.read_bytes("data/a.txt")
    assert exc.value.exit_code == 6


def test_a_listing_that_lies_about_a_file_size_is_refused(hist: Repo, scm):
    """A sound listing chain whose file entry declares the wrong size for its object."""
    from datavc import listing
    from datavc.manifest import Pointer

    e = listing.Entry("f", "file", _oid(b"12345"), 3)
    data = listing.encode_entries([e])
    gen(scm, {"obj": "12345"})
    hist.hash_object(str(scm / "obj"), write=True)
    oid = hist.store.add_bytes(data)
    hist.store.publish()
    (scm / "evil.datavc").write_bytes(Pointer("dir", oid, 3, 1).dumps())
    with pytest.raises(IntegrityError, match="holds 5 bytes where the manifest declares 3"):
        hist.read_bytes("evil/f")


def test_outer_target_wins_over_a_nested_pointer(hist: Repo, scm):
    """Targets never overlap; in a hostile history that nests them, the outermost one is
    used, as discovery of targets does."""
    (scm / "data" / "sub.datavc").write_bytes((scm / "m.bin.datavc").read_bytes())
    assert hist.read_bytes("data/sub/deep/x.bin") == b"x two\n"


# --- cost -----------------------------------------------------------------------------------


def test_only_the_listings_on_the_path_are_read_once(hist: Repo, monkeypatch):
    read: list[datavc.Oid] = []
    real = hist.store.read_bytes
    monkeypatch.setattr(hist.store, "read_bytes", lambda oid, **k: (read.append(oid),
                                                                    real(oid, **k))[1])
    assert hist.read_bytes("data/sub/deep/x.bin", "HEAD~1") == b"x one\n"
    top = hist.read_pointer("data", "HEAD~1").oid
    assert len(read) == 3 and read[0] == top  # data, data/sub, data/sub/deep
    assert hist.read_bytes("data/sub/big", "HEAD~1") == BIG
    assert hist.read_bytes("data/a.txt", "HEAD~1") == b"a one\n"
    assert len(read) == 3  # ids name immutable content: decoded listings are kept
    assert {p.path for p in hist.ls("data")} >= {"data/a.txt"}


def test_the_listing_cache_is_bounded(hist: Repo, monkeypatch):
    monkeypatch.setattr(reader.Listings, "MAX_ENTRIES", 3)
    listings = hist._listings
    hist.read_bytes("data/sub/deep/x.bin", "HEAD~1")
    assert sum(len(d.entries) for d in listings._held.values()) <= 3


def test_import_star_does_not_shadow_the_builtin_open():
    namespace: dict[str, object] = {}
    exec("from datavc import *", namespace)
    assert "open" not in namespace and "read_bytes" in namespace


def test_works_without_git_for_the_work_tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    repo = Repo.init(tmp_path, no_scm=True)
    gen(tmp_path, {"d": {"f": "f\n"}})
    repo.add(["d"])
    assert datavc.read_bytes("d/f") == b"f\n"
    with pytest.raises(DatavcError, match="not in a git work tree"):
        datavc.read_bytes("d/f", rev="HEAD")


def test_an_object_that_shrinks_while_streamed_is_refused(hist: Repo, streamed):
    path = _object(hist, "data/sub/big")
    with hist.open("data/sub/big") as f:
        assert f.read(100) == BIG[:100]
        path.chmod(0o644)
        os.truncate(path, 5000)
        buf = bytearray(len(BIG))
        with pytest.raises(IntegrityError, match="is corrupt"):
            f.readinto(buf)
        assert buf[:412] == BIG[100:512]  # the rest of the buffer filled by the first read
        assert not any(buf[412:])  # of the failed read, nothing


def test_objects_over_16_mib_are_streamed_and_verified_at_their_end(repo: Repo, scm):
    content = os.urandom(1024) * (16 * 1024) + b"!"
    gen(scm, {"big.bin": content})
    repo.add(["big.bin"])
    with repo.open("big.bin") as f:
        assert not f.raw.verified and f.raw.size == reader.WHOLE_MAX + 1
        assert f.read() == content and f.raw.verified
