"""datavc.Repo as a library: the facade's own invariants."""

from __future__ import annotations

import os

from datavc import objects, state
from datavc.repo import Repo
from tests.conftest import gen
from tests.unit.stores import staged


def _count_reads(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = objects.store_fd

    def counting(fd, path, *args, **kwargs):
        seen.append(path)
        return real(fd, path, *args, **kwargs)

    monkeypatch.setattr(objects, "store_fd", counting)
    monkeypatch.setattr("datavc.parallel.store_fd", counting)
    return seen


def test_add_reads_each_new_file_once(repo: Repo, scm, monkeypatch):
    gen(scm, {"data": {f"f{i}": f"content {i}" for i in range(50)}})
    reads = _count_reads(monkeypatch)
    [res] = repo.add(["data"])
    assert sorted(reads) == sorted(str(scm / "data" / f"f{i}") for i in range(50))
    assert res.hashed == 50 and res.nfiles == 50
    assert staged(repo.store.tmp_dir) == []


def test_re_add_reads_nothing(repo: Repo, scm, monkeypatch):
    gen(scm, {"data": {"a": "1", "b": {"c": "2"}}})
    repo.add(["data"])
    os.utime(scm / "data" / "a", ns=(10**18, 10**18))  # old mtimes: not racily clean
    os.utime(scm / "data" / "b" / "c", ns=(10**18, 10**18))
    repo.add(["data"])
    reads = _count_reads(monkeypatch)
    [res] = repo.add(["data"])
    assert reads == [] and res.hashed == 0 and not res.changed


def test_a_removed_cache_object_is_stored_again_on_re_add(repo: Repo, scm):
    gen(scm, {"data": {"a": "1"}})
    os.utime(scm / "data" / "a", ns=(10**18, 10**18))
    [res] = repo.add(["data"])
    [(_, entry)] = repo.ls_manifest("data.datavc")
    path = repo.store.path(entry.oid)
    os.chmod(path, 0o644)
    os.unlink(path)
    repo.add(["data"])
    assert repo.store.has(entry.oid)


def _age_cache(repo: Repo) -> None:
    import time

    old = time.time_ns() - 3600 * 10**9  # each call another past moment, as real changes
    for sub in os.listdir(repo.store.objects_dir):
        os.utime(os.path.join(repo.store.objects_dir, sub), ns=(old, old))


def _counting_presence(repo: Repo, monkeypatch) -> list[int]:
    looked: list[int] = []
    real = repo.store.present_digests

    def counting(digests):
        looked.append(len(digests))
        return real(digests)

    monkeypatch.setattr(repo.store, "present_digests", counting)
    return looked


def test_re_add_trusts_the_presence_memo_until_an_object_goes(repo: Repo, scm, monkeypatch):
    monkeypatch.setattr("datavc.state.file_system_type", lambda path: "ext4")
    gen(scm, {"data": {"a": "1", "b": {"c": "2"}}})
    os.utime(scm / "data" / "a", ns=(10**18, 10**18))
    os.utime(scm / "data" / "b" / "c", ns=(10**18, 10**18))
    repo.add(["data"])
    looked = _counting_presence(repo, monkeypatch)
    _age_cache(repo)
    repo.add(["data"])  # lists the cache once, and remembers it held everything
    assert len(looked) == 1
    [res] = repo.add(["data"])
    assert len(looked) == 1 and res.hashed == 0 and not res.changed  # the memo answered
    [(_, entry)] = [e for e in repo.ls_manifest("data.datavc") if e[1].name == "a"]
    path = repo.store.path(entry.oid)
    os.chmod(path, 0o644)
    os.unlink(path)  # an object goes: the fan-out directory's stamp changes
    _age_cache(repo)
    repo.add(["data"])
    # looked again: the tree memo's tree is counted (one missing), so the tree is built and
    # checked once more, and the object restored
    assert len(looked) == 3 and repo.store.has(entry.oid)


def test_an_add_that_stored_a_big_tree_leaves_status_a_trusted_presence_memo(
        repo: Repo, scm, monkeypatch):
    monkeypatch.setattr("datavc.state.file_system_type", lambda path: "ext4")
    monkeypatch.setattr("datavc.worktree.PRESENCE_WAIT_FILES", 2)  # "big" from 2 files
    gen(scm, {"data": {"a": "1", "b": {"c": "2"}}})
    repo.add(["data"])  # stores objects, then waits for a stamp it can trust
    looked = _counting_presence(repo, monkeypatch)
    [st] = repo.status(["data"])
    assert st.state == "clean" and st.not_in_cache == 0 and looked == []  # the memo answered
    [(_, entry)] = [e for e in repo.ls_manifest("data.datavc") if e[1].name == "a"]
    path = repo.store.path(entry.oid)
    os.chmod(path, 0o644)
    os.unlink(path)  # an object goes: the stamp the add left no longer matches
    _age_cache(repo)
    [st] = repo.status(["data"])
    assert st.not_in_cache == 1 and len(looked) == 1


def test_an_add_that_stored_a_small_tree_does_not_wait_for_a_stamp(repo: Repo, scm,
                                                                   monkeypatch):
    monkeypatch.setattr("datavc.state.file_system_type", lambda path: "ext4")
    waits: list[int] = []
    real = state.settled_fanout_stamp

    def settled(objects_dir, max_wait_ns=state.FINE_WINDOW_NS):
        waits.append(max_wait_ns)
        return real(objects_dir, max_wait_ns)

    monkeypatch.setattr("datavc.worktree.settled_fanout_stamp", settled)
    gen(scm, {"data": {"a": "1", "b": {"c": "2"}}})
    repo.add(["data"])
    assert waits == [0]  # the change is too recent and the tree too small: no memo yet
    looked = _counting_presence(repo, monkeypatch)
    _age_cache(repo)
    [st] = repo.status(["data"])
    assert st.not_in_cache == 0 and len(looked) == 1  # counted, and remembered
    [st] = repo.status(["data"])
    assert st.not_in_cache == 0 and len(looked) == 1


def _dag_of_empty_dirs(repo: Repo, scm, depth: int) -> None:
    """A pointer to a tree whose every level names the level below twice: 2**depth paths
    from `depth` listings, with no file at all."""
    from datavc import listing, manifest
    from datavc.hashing import hash_bytes
    from datavc.manifest import Pointer

    data = listing.encode([])
    oid = repo.store.add_bytes(data)
    for _ in range(depth):
        rows = [[name, listing.DIR, oid.digest, 0, 0o755, 0] for name in (b"a", b"b")]
        data = listing.encode(rows)
        oid = repo.store.add_bytes(data)
    repo.store.publish()
    assert oid == hash_bytes(data)
    (scm / "data.datavc").write_bytes(Pointer("dir", oid, 0, 0).dumps())
    assert manifest.loads((scm / "data.datavc").read_bytes(), where="x").nfiles == 0


def test_hostile_dag_of_empty_directories_is_bounded(repo: Repo, scm, monkeypatch):
    import pytest

    from datavc.errors import InvalidInputError
    from datavc.tree import Budget

    monkeypatch.setattr(Budget, "EMPTY_DIR_ALLOWANCE", 500)
    _dag_of_empty_dirs(repo, scm, depth=16)  # 65,536 paths, 17 listings
    with pytest.raises(InvalidInputError, match="names more directories"):
        repo.checkout(["data"])
    with pytest.raises(InvalidInputError, match="names more directories"):
        repo.ls_manifest("data.datavc")
    (scm / "data").mkdir()
    with pytest.raises(InvalidInputError, match="names more directories"):
        repo.status(["data"])


def test_only_an_empty_directory_changed_is_modified(repo: Repo, scm):
    gen(scm, {"data": {"a": "1"}})
    repo.add(["data"])
    (scm / "data" / "empty").mkdir()
    [st] = repo.status(["data"])
    assert st.state == "modified"
    assert [(c.path, c.change, c.kind) for c in st.changes] == [("data/empty", "added", "dir")]
    repo.commit(["data"])
    [st] = repo.status(["data"])
    assert st.state == "clean"


def test_exec_bits_are_not_a_change_where_files_are_cache_links(repo: Repo, scm):
    gen(scm, {"data": {"run.sh": "#!/bin/sh\n", "x": "x"}})
    os.chmod(scm / "data" / "run.sh", 0o755)
    repo.add(["data"])  # recorded 0o755 under the default (copy) cache type
    (scm / ".datavc" / "config.toml").write_text('[core]\nformat = 1\n[cache]\n'
                                                  'type = ["hardlink"]\n')
    linked = Repo(scm)
    linked.checkout(["data"], force=True)
    [st] = linked.status(["data"])
    assert st.state == "clean", st


def test_one_publish_for_all_targets_of_an_add(repo: Repo, scm, monkeypatch):
    gen(scm, {"a": {"x": "same"}, "b": {"y": "same", "z": "other"}, "c.bin": "c"})
    publishes = []
    real = repo.store.publish
    monkeypatch.setattr(repo.store, "publish", lambda: (publishes.append(1), real())[1])
    reads = _count_reads(monkeypatch)
    results = repo.add(["a", "b", "c.bin"])
    assert len(publishes) == 1
    assert len(reads) == 4  # each file once, although 'same' is staged by two targets
    for r in results:
        assert repo.store.has(r.oid)


def test_read_pointer_and_tracked_at_a_revision(repo: Repo, scm):
    import pytest

    from datavc.errors import DatavcError, InvalidInputError
    from tests.conftest import git

    gen(scm, {"data": {"a": "1"}, "m.bin": "m"})
    repo.add(["data"])
    repo.commit(message="one")
    first = repo.read_pointer("data")
    gen(scm, {"data": {"a": "2"}})
    repo.add(["data", "m.bin"])
    repo.commit(message="two")
    assert repo.read_pointer("data", "HEAD~1") == first
    assert repo.read_pointer("data", "HEAD") == repo.read_pointer("data") != first
    assert repo.tracked("HEAD~1") == ["data"]
    assert repo.tracked("HEAD") == repo.tracked() == ["data", "m.bin"]
    with pytest.raises(DatavcError, match="not tracked by datavc at revision 'HEAD~1'"):
        repo.read_pointer("m.bin", "HEAD~1")
    (scm / "m.bin.datavc").write_text('{"datavc": 99}\n')
    git(scm, "commit", "-qam", "hostile")
    with pytest.raises(InvalidInputError, match="at revision 'HEAD'"):
        repo.read_pointer("m.bin", "HEAD")
    assert repo.resolve("HEAD~2") == git(scm, "rev-parse", "HEAD~2").strip()


def test_diff_and_log_as_library_calls(repo: Repo, scm):
    """Repo.diff/log return typed records (no printing): the API mirrors the CLI."""
    from datavc.repo import DiffStat, LogEntry
    from datavc.treediff import Change

    gen(scm, {"data": {"a": "1", "b": "22"}})
    repo.add(["data"])
    first = repo.commit(message="v1").git_commit
    (scm / "data" / "a").write_text("111")
    (scm / "data" / "b").rename(scm / "data" / "b2")
    assert [(c.path, c.change) for c in repo.diff()] == [("data/a", "modified"),
                                                          ("data/b2", "renamed")]
    second = repo.commit(message="v2").git_commit
    changes = repo.diff(first, second, "data")
    assert all(isinstance(c, Change) for c in changes)
    assert DiffStat.of(changes) == DiffStat(added=0, modified=1, deleted=0, renamed=1,
                                            size_delta=2)
    assert repo.diff(second, second) == []
    entries = repo.log("data")
    assert all(isinstance(e, LogEntry) for e in entries)
    assert [(e.commit, e.change, e.nfiles) for e in entries] == [
        (second, "modified", 2), (first, "added", 2)]


def test_repo_fills_every_hook_of_its_core():
    from datavc.repo_core import RepoCore

    for name in ("_fetch_object", "_remote_status"):  # RepoCore's only NotImplementedError
        assert getattr(Repo, name) is not getattr(RepoCore, name), name
