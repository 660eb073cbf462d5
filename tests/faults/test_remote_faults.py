"""S3 errors, resets, truncation, timeouts and corrupted bodies during push and pull.

The remote's ``endpoint_url`` points at a fault-injecting proxy (:mod:`tests.faults.s3proxy`)
in front of the moto server. For every fault class, in each direction:

1. *persistent*: every upload (push) or download (pull) of an object fails the same way:
   the command ends with a clear exit 5 (remote), or 3 (integrity: a GET body that keeps
   arriving damaged), within a bounded time, after exactly ``max_attempts`` tries per key;
2. *transient*: the first request of every object key fails: retries make it succeed (a
   damaged upload is refused by the store and not retried: exit 5);
3. a run without faults converges: push completes, pull gives the exact bytes.

After every run: each cache object hashes to its name, the workspace holds only the
source's bytes, no temp file is left in the cache's temp area or the work tree, and every
object on the bucket hashes to its key, with no listing naming an object the bucket lacks
and no incomplete multipart upload left behind.

The CLI runs in a subprocess with the S3 remote's timeouts and attempts made small (the
remote config has no keys for them: the test sets the constructor defaults, see ``SHIM``).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import xxhash

from tests.faults.oracle import bad_objects, cache_tmp_files, env, files, git, litter, scratch
from tests.faults.s3proxy import FAULTS, FaultProxy, Rule, s3_proxy  # noqa: F401

READ_TIMEOUT = 1.0  # seconds; the proxy stalls 2 s
MAX_ATTEMPTS = 2
BOUND = 30.0  # seconds: any faulty command ends well within this
PLACEHOLDER = "placeholder-bucket"
def TRANSIENT(fault: str) -> Rule:  # noqa: N802 - reads as a constant
    """The first request of an object key fails, for the first keys (a bound on the time
    that retries' back-off takes); the retry gets through."""
    return Rule(fault, nth=frozenset({1}), limit=4)


CUT = ("lost-reply", "reset", "truncate")
"""Faults that forward the request and cut the reply: a multipart upload the store started
has an id the client never learnt, so it stays open (for the bucket's lifecycle rule)."""
SHIM = (
    "import sys\n"
    "from datavc import remote_s3\n"
    "knobs = dict(\n"
    f"    connect_timeout=2.0, read_timeout={READ_TIMEOUT}, max_attempts={MAX_ATTEMPTS},\n"
    "    multipart_threshold=256 << 10)\n"
    "defaults = remote_s3.S3Remote.__init__.__kwdefaults__\n"
    "assert set(knobs) <= set(defaults), 'S3Remote lost a keyword: update the shim'\n"
    "defaults.update(knobs)\n"
    "from datavc.cli import main\n"
    "sys.argv[0] = 'datavc'\n"
    "main()\n"
)
"""``python -c SHIM ARGS`` is ``datavc ARGS`` with S3 timeouts of a fraction of a second, 2
attempts and multipart uploads from 256 KiB on (so the big file goes up in parts)."""


# ---------------------------------------------------------------------- shared helpers

def datavc(cwd: Path, *args: str, timeout: float = 60, **extra: str
           ) -> tuple[subprocess.CompletedProcess[str], float]:
    """``datavc ARGS`` through the shim; returns the result and its wall time."""
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-c", SHIM, *args], cwd=cwd, env=env(**extra),
                       capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - start


def ok(r: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert r.returncode == 0, r
    assert "Traceback" not in r.stderr, r
    return r


def make_data(data: Path, *, files_per_dir: int = 2, big: int = 300_000, seed: int = 1) -> None:
    """Files in three levels of directories, an empty file, an empty directory and one
    file above the shim's multipart threshold."""
    rng = random.Random(seed)
    for d in ("", "sub/", "sub/deep/", "other/"):
        for i in range(files_per_dir):
            path = data / f"{d}f{i}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(rng.randint(1, 20_000)))
    (data / "sub/zero").write_bytes(b"")
    (data / "void").mkdir()
    (data / "big.bin").write_bytes(rng.randbytes(big))


def new_repo(root: Path, remote_url: str, endpoint: str | None) -> None:
    """A git work tree with ``data`` added and a default remote ``storage``."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for args in (("init",), ("add", "data"),
                 ("remote", "add", "storage", remote_url, "--default")):
        if args[0] == "add":
            make_data(root / "data")
        ok(datavc(root, *args)[0])
    if endpoint is not None:
        ok(datavc(root, "remote", "modify", "storage", "endpoint_url", endpoint)[0])
        ok(datavc(root, "remote", "modify", "storage", "--local", "access_key_id",
                  "testing")[0])
        ok(datavc(root, "remote", "modify", "storage", "--local", "secret_access_key",
                  "testing")[0])


def copy_repo(template: Path, dest: Path, *, bucket: str | None = None,
              empty: bool = False) -> Path:
    """A copy of ``template``; with ``bucket``, its remote points there; with ``empty``, a
    fresh clone: no cache objects, no stat cache, no ``data`` in the workspace."""
    shutil.copytree(template, dest, symlinks=True)
    if bucket is not None:
        config = dest / ".datavc/config.toml"
        config.write_text(config.read_text().replace(PLACEHOLDER, bucket))
    if empty:
        shutil.rmtree(dest / "data")
        shutil.rmtree(dest / ".datavc/state", ignore_errors=True)
        for obj in (dest / ".datavc/cache/objects").glob("*/*"):
            obj.chmod(0o644)
            obj.unlink()
    return dest


def cache_ids(root: Path) -> dict[str, bytes]:
    """Every cache object: 32 hex digits -> bytes."""
    return {p.parent.name + p.name: p.read_bytes()
            for p in (root / ".datavc/cache/objects").glob("*/*")}


def wrong(objects: dict[str, bytes]) -> list[str]:
    """Objects whose bytes do not hash to their name."""
    return sorted(k for k, v in objects.items() if xxhash.xxh3_128_hexdigest(v) != k)


def listing_rows(data: bytes) -> list[list[Any]] | None:
    """The rows of a listing object, read from outside (``["datavc.listing", 1, [[name,
    kind, digest, ...], ...]]`` in msgpack); None for anything else (a file object)."""
    try:
        top = msgpack.unpackb(data, raw=False)
    except Exception:  # noqa: BLE001 - not msgpack
        return None
    if isinstance(top, list) and len(top) == 3 and top[0] == "datavc.listing":
        return top[2]
    return None


def dangling(objects: dict[str, bytes]) -> list[str]:
    """Listings in ``objects`` that name an object missing from it."""
    return sorted(f"{name} -> {row[2].hex()}" for name, data in objects.items()
                  for row in listing_rows(data) or () if row[2].hex() not in objects)


def raw_client(endpoint: str) -> Any:
    """A boto3 client straight on moto that hands back stored bytes unchecked."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(response_checksum_validation="when_required"))


def bucket_objects(client: Any, bucket: str, prefix: str = "proj/") -> dict[str, bytes]:
    """Every object under ``prefix``: ``ab/<30 hex>`` keys as 32 hex digits, anything
    else under its full key (and :func:`wrong` reports it)."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            key = item["Key"]
            parts = key.removeprefix(prefix).split("/")
            name = parts[1] + parts[2] if len(parts) == 3 and parts[0] == "objects" else key
            out[name] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return out


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ())]


def upload_cache(client: Any, bucket: str, root: Path) -> None:
    """Put every cache object of ``root`` on the bucket, as a push would (no faults)."""
    for name, data in cache_ids(root).items():
        client.put_object(Bucket=bucket, Key=f"proj/objects/{name[:2]}/{name[2:]}", Body=data)


def assert_local_sound(root: Path, expected: dict[str, bytes]) -> None:
    """No wrong byte in the cache or the workspace, no temp file left anywhere."""
    assert bad_objects(root) == []
    assert cache_tmp_files(root) == []
    assert litter(root) == []
    data = root / "data"
    got = files(data) if data.exists() else {}
    for path, content in got.items():
        assert path.endswith("/") or expected.get(path) == content, f"wrong bytes in {path}"


def assert_remote_sound(client: Any, bucket: str, *, uploads_allowed: bool = False
                        ) -> dict[str, bytes]:
    objects = bucket_objects(client, bucket)
    assert wrong(objects) == []
    assert dangling(objects) == []
    if not uploads_allowed:
        assert open_uploads(client, bucket) == []
    return objects


# ---------------------------------------------------------------------- fixtures

@dataclass
class Template:
    root: Path
    expected: dict[str, bytes]
    ids: dict[str, bytes]


@pytest.fixture(scope="module")
def tpl(s3_proxy: FaultProxy) -> Iterator[Template]:  # noqa: F811
    with scratch("datavc-s3faults-tpl-") as base:
        root = base / "repo"
        new_repo(root, f"s3://{PLACEHOLDER}/proj", s3_proxy.url)
        yield Template(root, files(root / "data"), cache_ids(root))


@pytest.fixture
def work() -> Iterator[Path]:
    with scratch("datavc-s3faults-") as path:
        yield path


@pytest.fixture
def moto(s3_server: str, s3_bucket: str) -> Iterator[Any]:
    client = raw_client(s3_server)
    yield client
    client.close()


@pytest.fixture
def proxy(s3_proxy: FaultProxy) -> Iterator[FaultProxy]:  # noqa: F811
    yield s3_proxy
    s3_proxy.clear()


# ---------------------------------------------------------------------- push

def faulty(root: Path, proxy: FaultProxy, fault: str, *args: str
           ) -> subprocess.CompletedProcess[str]:
    r, secs = datavc(root, *args)
    assert secs < BOUND, f"{args} under {fault} took {secs:.1f}s"
    assert "Traceback" not in r.stderr, r
    assert proxy.fired(fault or None), f"{fault or 'no fault'} never fired"
    return r


@pytest.mark.parametrize("fault", FAULTS)
def test_push_under_faults(fault, tpl, work, proxy, moto, s3_bucket):
    root = copy_repo(tpl.root, work / "repo", bucket=s3_bucket)

    proxy.schedule(Rule(fault, method="PUT"))  # every upload, every part
    r = faulty(root, proxy, fault, "push")
    assert r.returncode == 5 and "datavc: error:" in r.stderr and "hint:" in r.stderr, r
    # tried max_attempts times; a refused (damaged) upload is a 400, not retried
    assert max(e.n for e in proxy.events if e.method == "PUT") \
        == (1 if fault == "flip" else MAX_ATTEMPTS)
    if fault == "flip":
        assert "damaged on the way" in r.stderr, r
    assert_remote_sound(moto, s3_bucket, uploads_allowed=fault in CUT)

    proxy.schedule(TRANSIENT(fault))
    r = faulty(root, proxy, fault, "push")
    # a damaged upload is refused by the store, and a 400 is not retried
    assert r.returncode == (5 if fault == "flip" else 0), r
    assert_remote_sound(moto, s3_bucket, uploads_allowed=fault in CUT)

    proxy.clear()
    ok(datavc(root, "push")[0])
    assert assert_remote_sound(moto, s3_bucket, uploads_allowed=fault in CUT) \
        == tpl.ids
    assert_local_sound(root, tpl.expected)


# ---------------------------------------------------------------------- pull

@pytest.mark.parametrize("fault", [*FAULTS, "flip-unchecked"])
def test_pull_under_faults(fault, tpl, work, proxy, moto, s3_bucket):
    """``flip-unchecked``: the store sends no checksum, so only datavc's re-hash sees it."""
    upload_cache(moto, s3_bucket, tpl.root)
    root = copy_repo(tpl.root, work / "repo", bucket=s3_bucket, empty=True)
    proxy.checksums = fault != "flip-unchecked"
    fault = fault.removesuffix("-unchecked")
    try:
        proxy.schedule(Rule(fault, method="GET"))  # every download
        # fetch: pull exits 1 when the damaged object is a listing (test_pull_exit_code_...)
        r = faulty(root, proxy, fault, "fetch")
        assert r.returncode == (3 if fault == "flip" else 5), r
        assert "datavc: error:" in r.stderr and "hint:" in r.stderr, r
        assert max(e.n for e in proxy.events if e.method == "GET") == MAX_ATTEMPTS
        assert_local_sound(root, tpl.expected)

        proxy.schedule(TRANSIENT(fault))
        r = faulty(root, proxy, fault, "pull")
        assert r.returncode == 0, r
        assert files(root / "data") == tpl.expected
        assert_local_sound(root, tpl.expected)
    finally:
        proxy.checksums = True

    proxy.clear()
    ok(datavc(root, "pull")[0])
    assert files(root / "data") == tpl.expected
    assert cache_ids(root) == tpl.ids
    assert_local_sound(root, tpl.expected)
    assert_remote_sound(moto, s3_bucket)


# ---------------------------------------------------------------------- random faults

@pytest.mark.parametrize("seed", [11])
def test_random_faults_never_store_a_wrong_byte(seed, tpl, work, proxy, moto, s3_bucket):
    """Any request may fail in any way (a seeded third of them): push and pull end in
    success or a clear 3 / 5, nothing wrong is stored, and fault-free reruns converge."""
    src = copy_repo(tpl.root, work / "src", bucket=s3_bucket)
    clone = copy_repo(tpl.root, work / "clone", bucket=s3_bucket, empty=True)
    proxy.randomly(seed=seed, rate=0.35)
    r = faulty(src, proxy, "", "push")
    assert r.returncode in (0, 5), r
    pushed = r.returncode == 0
    assert_remote_sound(moto, s3_bucket, uploads_allowed=True)
    r = faulty(clone, proxy, "", "pull")
    # 1: what an unfinished push did not send is missing
    assert r.returncode in ((0, 3, 5) if pushed else (0, 1, 3, 5)), r
    assert_local_sound(clone, tpl.expected)

    proxy.clear()
    ok(datavc(src, "push")[0])
    assert assert_remote_sound(moto, s3_bucket, uploads_allowed=True) == tpl.ids
    ok(datavc(clone, "pull")[0])
    assert files(clone / "data") == tpl.expected
    assert_local_sound(clone, tpl.expected)


def test_pull_exit_code_when_a_listing_keeps_arriving_damaged(tpl, work, proxy, moto,
                                                              s3_bucket):
    upload_cache(moto, s3_bucket, tpl.root)
    root = copy_repo(tpl.root, work / "repo", bucket=s3_bucket, empty=True)
    proxy.schedule(Rule("flip", method="GET"))
    r = faulty(root, proxy, "flip", "pull")
    assert_local_sound(root, tpl.expected)
    assert r.returncode == 3, r
