"""kill -9 in the middle of ``datavc push`` and ``datavc pull``, to a directory remote and
to S3 (moto behind the fault proxy, here without faults: it only watches the requests).

The CLI SIGKILLs itself at a named crash point (``DATAVC_CRASH_AT`` after
``DATAVC_CRASH_AFTER`` hits: ``remote-put-before`` / ``remote-put-after`` around each
upload, ``remote-tmp-written`` in a directory remote, ``remote-part-uploaded`` inside an S3
multipart upload; ``object-tmp-written`` / ``objects-synced`` while fetching), or is killed
from outside once it has sent a chosen number of requests. Afterwards:

* push: every object on the remote hashes to its name, no listing on the remote names an
  object the remote lacks (objects before listings), nothing lies outside ``objects/`` and
  the remote's ``tmp/``; a killed S3 multipart upload stays open and invisible, nothing
  under its key; a rerun completes the push;
* pull: the cache holds only objects that hash to their names, the workspace only the
  source's bytes; a rerun converges to the exact bytes and leaves no temp file.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.oracle import bad_objects, cache_tmp_files, env, files, litter, scratch
from tests.faults.s3proxy import FaultProxy, s3_proxy  # noqa: F401
from tests.faults.test_remote_faults import (
    PLACEHOLDER,
    SHIM,
    Template,
    assert_local_sound,
    bucket_objects,
    cache_ids,
    copy_repo,
    dangling,
    datavc,
    listing_rows,
    new_repo,
    ok,
    open_uploads,
    raw_client,
    upload_cache,
    wrong,
)

LAST = -3  # DATAVC_CRASH_AFTER counted from the end: among the listings, pushed last


@pytest.fixture(scope="module")
def tpl(s3_proxy: FaultProxy) -> Iterator[Template]:  # noqa: F811
    with scratch("datavc-pushkill-tpl-") as base:
        root = base / "repo"
        new_repo(root, f"s3://{PLACEHOLDER}/proj", s3_proxy.url)
        ok(datavc(root, "remote", "add", "disk", "../remote")[0])  # next to the repo
        yield Template(root, files(root / "data"), cache_ids(root))


@pytest.fixture
def work() -> Iterator[Path]:
    with scratch("datavc-pushkill-") as path:
        yield path


@pytest.fixture
def moto(s3_server: str) -> Iterator[Any]:
    client = raw_client(s3_server)
    yield client
    client.close()


@pytest.fixture
def proxy(s3_proxy: FaultProxy) -> FaultProxy:  # noqa: F811
    s3_proxy.clear()
    return s3_proxy


class Remote:
    """Inspect one test's remote from outside: a directory or a bucket."""

    def __init__(self, kind: str, work: Path, request: pytest.FixtureRequest) -> None:
        self.kind, self.name = kind, "disk" if kind == "dir" else "storage"
        self.path = work / "remote"
        self.bucket = request.getfixturevalue("s3_bucket") if kind == "s3" else None
        self.client = request.getfixturevalue("moto") if kind == "s3" else None

    def objects(self) -> dict[str, bytes]:
        if self.client is not None:
            return bucket_objects(self.client, self.bucket)
        return {p.parent.name + p.name: p.read_bytes()
                for p in (self.path / "objects").glob("*/*")}

    def strays(self) -> list[str]:
        """Anything but objects under their names and temps in the temp area."""
        if self.client is not None:
            return sorted(k for k in self.objects() if len(k) != 32)
        out = []
        for dirpath, _, names in os.walk(self.path):
            rel = Path(dirpath).relative_to(self.path)
            for name in names:
                parts = (rel / name).parts
                if parts[0] == "tmp" and len(parts) == 2:
                    continue
                if parts[0] != "objects" or len(parts) != 3 or len(parts[1] + parts[2]) != 32:
                    out.append((rel / name).as_posix())
        return out

    def uploads(self) -> list[str]:
        return open_uploads(self.client, self.bucket) if self.client is not None else []

    def fill(self, root: Path) -> None:
        """Hold every cache object of ``root`` (as a finished push would)."""
        if self.client is not None:
            upload_cache(self.client, self.bucket, root)
            return
        for name, data in cache_ids(root).items():
            dest = self.path / "objects" / name[:2] / name[2:]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)

    def assert_sound(self) -> dict[str, bytes]:
        objects = self.objects()
        assert wrong(objects) == []
        assert dangling(objects) == []
        assert self.strays() == []
        return objects


def killed(r: subprocess.CompletedProcess[str], what: str) -> None:
    assert r.returncode == -signal.SIGKILL, f"{what} not reached: {r}"


def kill_when(root: Path, ready: Callable[[], bool], *args: str, limit: float = 30) -> int:
    """Run ``datavc ARGS`` and SIGKILL it (by its pid) once ``ready()``; its exit status
    (0 when it finished first)."""
    proc = subprocess.Popen([sys.executable, "-c", SHIM, *args], cwd=root, env=env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + limit
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        _, err = proc.communicate(timeout=limit)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert b"Traceback" not in err, err
    return proc.returncode


# ---------------------------------------------------------------------- push

@pytest.mark.parametrize(("kind", "point", "after"), [
    ("dir", "remote-put-before", 0),
    ("dir", "remote-tmp-written", 4),
    ("dir", "remote-put-after", 7),
    ("dir", "remote-put-after", LAST),
    ("s3", "remote-put-before", 3),
    ("s3", "remote-part-uploaded", 0),
    ("s3", "remote-put-after", 7),
    ("s3", "remote-put-after", LAST),
])
def test_kill_during_push(kind, point, after, tpl, work, proxy, request):
    remote = Remote(kind, work, request)
    root = copy_repo(tpl.root, work / "repo", bucket=remote.bucket)
    if after < 0:
        after += len(tpl.ids)
    r, _ = datavc(root, "push", "-r", remote.name, "-j", "2", DATAVC_CRASH_AT=point,
                  DATAVC_CRASH_AFTER=str(after))
    killed(r, f"{point}/{after}")
    on_remote = remote.assert_sound()
    assert len(on_remote) < len(tpl.ids)
    # a multipart upload the kill interrupted stays open and invisible (the bucket's
    # lifecycle rule removes it): nothing under its key
    [big] = [k for k, v in tpl.ids.items() if len(v) > 256 << 10]
    assert set(remote.uploads()) <= {f"proj/objects/{big[:2]}/{big[2:]}"}
    if point == "remote-part-uploaded":
        assert remote.uploads() and big not in on_remote
    if point == "remote-tmp-written":
        assert list((remote.path / "tmp").iterdir())  # killed mid-write: a temp, in tmp/
    if after == len(tpl.ids) + LAST and kind == "s3":
        # killed among the listings: on S3 each PUT is visible at once, so some are there;
        # a directory remote publishes one tree level per batch, so none of the killed
        # level's are
        assert any(listing_rows(v) is not None for v in on_remote.values())
    assert_local_sound(root, tpl.expected)

    ok(datavc(root, "push", "-r", remote.name)[0])
    assert remote.assert_sound() == tpl.ids


@pytest.mark.parametrize(("kind", "seed"), [("dir", 1), ("s3", 2)])
def test_sigkill_from_outside_during_push(kind, seed, tpl, work, proxy, request):
    remote = Remote(kind, work, request)
    root = copy_repo(tpl.root, work / "repo", bucket=remote.bucket)
    n = random.Random(seed).randrange(1, len(tpl.ids) - 1)  # objects sent before the kill
    if kind == "s3":
        def ready() -> bool:
            return sum(e.method in ("PUT", "POST") for e in proxy.events) >= n
    else:
        def ready() -> bool:
            return sum(1 for _ in (remote.path / "objects").glob("*/*")) >= n
    code = kill_when(root, ready, "push", "-r", remote.name, "-j", "1")
    assert code in (0, -signal.SIGKILL)
    remote.assert_sound()
    assert_local_sound(root, tpl.expected)
    ok(datavc(root, "push", "-r", remote.name)[0])
    assert remote.assert_sound() == tpl.ids


# ---------------------------------------------------------------------- pull

@pytest.mark.parametrize(("kind", "point", "after"), [
    ("dir", "object-tmp-written", 5),
    ("s3", "object-tmp-written", 2),
    ("s3", "objects-synced", 0),
    pytest.param("s3", "", 6, id="s3-sigkill-from-outside-after-6-downloads"),
])
def test_kill_during_pull(kind, point, after, tpl, work, proxy, request):
    remote = Remote(kind, work, request)
    remote.fill(tpl.root)
    root = copy_repo(tpl.root, work / "repo", bucket=remote.bucket, empty=True)
    if point:
        r, _ = datavc(root, "pull", "-r", remote.name, "-j", "2", DATAVC_CRASH_AT=point,
                      DATAVC_CRASH_AFTER=str(after))
        killed(r, f"{point}/{after}")
    else:
        code = kill_when(root, lambda: sum(e.method == "GET" for e in proxy.events) >= after,
                         "pull", "-r", remote.name, "-j", "1")
        assert code in (0, -signal.SIGKILL)
    assert bad_objects(root) == []  # temps of the killed run may remain in the temp area
    assert litter(root) == []
    data = root / "data"
    for path, content in (files(data) if data.exists() else {}).items():
        assert path.endswith("/") or tpl.expected.get(path) == content, path
    assert len(cache_ids(root)) < len(tpl.ids) or not point

    ok(datavc(root, "pull", "-r", remote.name)[0])
    assert files(root / "data") == tpl.expected
    assert cache_ids(root) == tpl.ids
    assert cache_tmp_files(root) == []
    assert_local_sound(root, tpl.expected)
