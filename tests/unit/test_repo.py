"""datavc.Repo as a library: the facade's own invariants."""

from __future__ import annotations

import os

from datavc import objects
from datavc.repo import Repo
from tests.conftest import gen


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
    assert os.listdir(repo.store.tmp_dir) == []


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
