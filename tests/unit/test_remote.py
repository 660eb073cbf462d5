"""Remotes: one conformance suite run against every backend (a directory, and S3 through a
real moto server on 127.0.0.1), then what is particular to each, open_remote and redact."""

from __future__ import annotations

import io
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from datavc import remote_base
from datavc.errors import (
    ConfigError,
    DatavcError,
    IntegrityError,
    ObjectMissingError,
    RemoteError,
)
from datavc.hashing import Oid, hash_bytes
from datavc.remote import SECRET_KEYS, LocalRemote, S3Remote, open_remote, redact
from tests.s3server import CREDENTIALS, REGION, free_port

MIB = 1 << 20
PREFIX = "team/project"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to connect anywhere but 127.0.0.1."""
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            assert address[0] == "127.0.0.1", f"connection to {address} attempted"
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def make_remote(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if kind == "local":
        return LocalRemote(str(tmp_path / "remote"))
    bucket = request.getfixturevalue("s3_bucket")
    return S3Remote(bucket, PREFIX, endpoint_url=request.getfixturevalue("s3_server"),
                    region=REGION, path_style=True, multipart_threshold=8 * MIB,
                    part_size=8 * MIB, **CREDENTIALS)


@pytest.fixture(params=["local", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    r = make_remote(request.param, request, tmp_path)
    yield r
    r.close()


@pytest.fixture
def local(tmp_path: Path) -> LocalRemote:
    return LocalRemote(str(tmp_path / "remote"))


@pytest.fixture
def s3(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    r = make_remote("s3", request, tmp_path)
    yield r
    r.close()


class Files:
    """Cache-like source files for puts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.n = 0

    def add(self, data: bytes) -> tuple[Oid, str, int]:
        self.n += 1
        path = self.root / f"f{self.n}"
        path.write_bytes(data)
        return hash_bytes(data), str(path), len(data)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path / "src")


def fetch(remote: Any, oid: Oid) -> bytes:
    sink = io.BytesIO()
    remote.get(oid, sink)
    return sink.getvalue()


def plant(remote: Any, key: str, data: bytes = b"junk") -> None:
    """Write ``key`` (relative to the remote's root) behind the remote's back."""
    if isinstance(remote, LocalRemote):
        path = Path(remote.root, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        remote._client().put_object(Bucket=remote.bucket, Key=f"{PREFIX}/{key}", Body=data)


def spy(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list:
    calls: list = []
    original = getattr(obj, name)

    def wrapper(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


def random_oids(n: int, seed: int) -> list[Oid]:
    rng = random.Random(seed)
    return [Oid(rng.randbytes(16)) for _ in range(n)]


# ------------------------------------------------------------------ conformance


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * MIB + 1, 20 * MIB],
                         ids=["empty", "1B", "1kB", "3MiB-streamed", "20MiB"])
def test_put_get_round_trip(remote, files, size):
    data = random.Random(size).randbytes(size)
    oid, path, n = files.add(data)
    assert remote.missing([oid]) == {oid}
    remote.put(oid, path, n)
    assert remote.missing([oid]) == set()
    assert fetch(remote, oid) == data
    assert list(remote.iter_oids()) == [oid]


def test_layout_is_the_cache_layout(remote, files, s3_client_or_none):
    oid, path, n = files.add(b"layout")
    remote.put(oid, path, n)
    key = f"objects/{oid.hex[:2]}/{oid.hex[2:]}"
    if isinstance(remote, LocalRemote):
        stored = Path(remote.root, key)
        assert stored.read_bytes() == b"layout"
        assert stored.stat().st_mode & 0o222 == 0, "objects are read-only"
        assert os.listdir(Path(remote.root, "tmp")) == []
    else:
        got = s3_client_or_none.get_object(Bucket=remote.bucket, Key=f"{PREFIX}/{key}")
        assert got["Body"].read() == b"layout"


@pytest.fixture
def s3_client_or_none(request: pytest.FixtureRequest) -> Any:
    if "s3" in request.node.callspec.id:
        return request.getfixturevalue("s3_client")
    return None


def test_get_of_a_missing_object_names_it(remote):
    oid = hash_bytes(b"never stored")
    with pytest.raises(ObjectMissingError) as info:
        fetch(remote, oid)
    assert not isinstance(info.value, RemoteError)
    assert info.value.exit_code == 1
    assert str(oid) in str(info.value)


def test_put_is_idempotent(remote, files):
    oid, path, n = files.add(b"twice")
    remote.put(oid, path, n)
    remote.put(oid, path, n)
    assert fetch(remote, oid) == b"twice"
    assert list(remote.iter_oids()) == [oid]


def test_missing_probes_each_id_when_few(remote, files, monkeypatch):
    stored = [files.add(bytes([i]) * 10) for i in range(3)]
    for oid, path, n in stored:
        remote.put(oid, path, n)
    absent = [Oid(bytes([b]) + bytes(15)) for b in range(0, 250, 25)]
    wanted = [oid for oid, _, _ in stored] + absent
    assert len({o.digest[0] for o in wanted}) == len(wanted), "one id per prefix"
    probes = spy(monkeypatch, remote, "_exists")
    lists = spy(monkeypatch, remote, "_list_prefix")
    assert remote.missing(wanted) == set(absent)
    assert len(probes) == len(wanted) and lists == []


def test_missing_lists_prefixes_when_many(remote, files, monkeypatch):
    stored = [files.add(b"obj %d" % i) for i in range(40)]
    for oid, path, n in stored:
        remote.put(oid, path, n)
    absent = random_oids(2000, seed=1)
    probes = spy(monkeypatch, remote, "_exists")
    lists = spy(monkeypatch, remote, "_list_prefix")
    whole = spy(monkeypatch, remote, "_list_all") if hasattr(remote, "_list_all") else None
    assert remote.missing([oid for oid, _, _ in stored] + absent) == set(absent)
    if whole is not None and not any(o.digest[0] == lists[0][0] for o, _, _ in stored):
        assert len(whole) == 1 and len(lists) == 1, "S3: a small remote listed whole, once"
    else:
        assert len(lists) > 200, "most prefixes listed"
    assert len(probes) < 100, "few ids probed one by one"


def test_missing_of_nothing(remote):
    assert remote.missing([]) == set()


def test_iter_oids_skips_and_reports_junk(remote, files):
    stored = {files.add(b"x%d" % i) for i in range(5)}
    for oid, path, n in stored:
        remote.put(oid, path, n)
    hexd = next(iter(stored))[0].hex
    junk = ["objects/README", f"objects/{hexd[:2]}/short", f"objects/{hexd[:2]}/" + "g" * 30,
            f"objects/{hexd[:2]}/{hexd[2:].upper()}", f"objects/{hexd[:2]}/{hexd[2:]}.tmp"]
    for key in junk:
        plant(remote, key)
    plant(remote, f"objects/{hexd[:2].upper()}/{hexd[2:]}")
    plant(remote, "packs/reserved")
    plant(remote, "elsewhere")
    seen: list[str] = []
    assert set(remote.iter_oids(on_junk=seen.append)) == {oid for oid, _, _ in stored}
    assert set(junk) <= set(seen)
    assert any(k.startswith(f"objects/{hexd[:2].upper()}") for k in seen)
    assert all(k.startswith("objects/") for k in seen)
    assert len(list(remote.iter_oids())) == 5


def test_iter_listed_gives_each_object_its_size_and_when_it_was_stored(remote, files):
    before = time.time()
    stored = {files.add(b"y" * i) for i in (0, 1, 5000)}
    for oid, path, n in stored:
        remote.put(oid, path, n)
    plant(remote, "objects/README")
    seen: list[str] = []
    listed = {x.oid: x for x in remote.iter_listed(on_junk=seen.append)}
    assert seen == ["objects/README"]
    assert {oid: n for oid, _, n in stored} == {oid: x.size for oid, x in listed.items()}
    for x in listed.values():  # S3's LastModified has whole seconds
        assert before - 2 <= x.stored <= time.time() + 2


def test_delete(remote, files):
    oid, path, n = files.add(b"doomed")
    remote.put(oid, path, n)
    remote.delete(oid)
    assert remote.missing([oid]) == {oid}
    with pytest.raises(ObjectMissingError):
        fetch(remote, oid)
    remote.delete(oid)  # absent: not an error
    assert list(remote.iter_oids()) == []


def test_put_and_get_from_eight_threads(remote, files):
    blobs = [random.Random(i).randbytes(i * 7919 % 200_000) for i in range(24)]
    objects = [files.add(b) for b in blobs]
    jobs = objects + objects[:8]  # some objects are put by two threads at once
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda o: remote.put(*o), jobs))
        got = list(pool.map(lambda o: fetch(remote, o[0]), objects))
    assert got == blobs
    assert remote.missing([o[0] for o in objects]) == set()
    assert sorted(remote.iter_oids()) == sorted({o[0] for o in objects})


@pytest.mark.parametrize("size", [100, 3 * MIB, 20 * MIB], ids=["single", "streamed",
                                                                  "multipart"])
def test_put_of_content_not_matching_its_id_publishes_nothing(remote, files, size,
                                                              s3_client_or_none):
    data = random.Random(1).randbytes(size)
    _, path, n = files.add(data)
    wrong = hash_bytes(data + b"!")
    with pytest.raises(IntegrityError) as info:
        remote.put(wrong, path, n)
    assert str(wrong) in str(info.value)
    assert remote.missing([wrong]) == {wrong}
    assert_no_litter(remote, s3_client_or_none)


def test_put_of_a_file_of_another_size_publishes_nothing(remote, files, s3_client_or_none):
    oid, path, n = files.add(b"12345")
    for size in (n - 1, n + 1):
        with pytest.raises(IntegrityError):
            remote.put(oid, path, size)
    assert remote.missing([oid]) == {oid}
    assert_no_litter(remote, s3_client_or_none)


def assert_no_litter(remote: Any, client: Any) -> None:
    if isinstance(remote, LocalRemote):
        assert os.listdir(Path(remote.root, "tmp")) == []
    else:
        assert client.list_multipart_uploads(Bucket=remote.bucket).get("Uploads", []) == []
        assert client.list_objects_v2(Bucket=remote.bucket).get("KeyCount") == 0


def test_describe_and_repr_carry_no_credentials(remote):
    text = remote.describe() + repr(remote)
    assert CREDENTIALS["secret_access_key"] not in text
    if isinstance(remote, LocalRemote):
        assert remote.describe() == remote.root
    else:
        assert remote.describe().startswith(f"s3://{remote.bucket}/{PREFIX} (endpoint http://")


# ------------------------------------------------------------------ directory remote


def test_local_remote_creates_its_directory_lazily(tmp_path, files):
    root = tmp_path / "remote"
    r = LocalRemote(f"file://{root}")
    oid, path, n = files.add(b"lazy")
    assert r.missing([oid]) == {oid} and list(r.iter_oids()) == []
    assert not root.exists()
    r.put(oid, path, n)
    assert (root / "objects" / oid.hex[:2] / oid.hex[2:]).is_file()


def test_local_put_removes_only_stale_temps(local, files):
    tmp = Path(local.tmp_dir)
    tmp.mkdir(parents=True)
    (tmp / "stale").write_bytes(b"old")
    (tmp / "young").write_bytes(b"in use by another machine")
    old = time.time() - 2 * 24 * 3600
    os.utime(tmp / "stale", (old, old))
    local.put(*files.add(b"x"))
    assert os.listdir(tmp) == ["young"]


def test_local_put_failing_at_rename_leaves_no_temp(local, files, monkeypatch):
    oid, path, n = files.add(b"x")

    def broken_rename(src: str, dst: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(RemoteError) as info:
        local.put(oid, path, n)
    assert info.value.exit_code == 5
    monkeypatch.undo()
    assert os.listdir(local.tmp_dir) == [] and local.missing([oid]) == {oid}


def test_local_put_of_an_unreadable_source_is_a_local_error(local, tmp_path):
    with pytest.raises(DatavcError) as info:
        local.put(hash_bytes(b""), str(tmp_path / "absent"), 0)
    assert "absent" in str(info.value) and not isinstance(info.value, RemoteError)


@pytest.mark.parametrize("path", ["relative/dir", "", "file://host/abs", "file:///a?x=1"])
def test_local_remote_refuses_paths_that_are_not_absolute(path):
    with pytest.raises(ConfigError):
        LocalRemote(path)


# ------------------------------------------------------------------ S3 remote


def test_s3_failed_multipart_upload_is_aborted(s3, files, s3_client, monkeypatch):
    oid, path, n = files.add(random.Random(2).randbytes(20 * MIB))
    client = s3._client()
    upload_part = client.upload_part
    calls = []

    def flaky(**kwargs: Any) -> Any:
        calls.append(kwargs["PartNumber"])
        if len(calls) == 2:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, "UploadPart")
        return upload_part(**kwargs)

    monkeypatch.setattr(client, "upload_part", flaky)
    with pytest.raises(RemoteError) as info:
        s3.put(oid, path, n)
    assert info.value.exit_code == 5 and "InternalError" in str(info.value)
    assert calls == [1, 2]
    assert_no_litter(s3, s3_client)
    monkeypatch.undo()
    s3.put(oid, path, n)  # and the next attempt goes through, in order
    assert fetch(s3, oid) == Path(path).read_bytes()


@pytest.mark.parametrize("store_honours_range", [True, False])
def test_s3_get_resumes_a_broken_download(s3, files, monkeypatch, store_honours_range):
    from botocore.exceptions import ResponseStreamingError

    data = random.Random(3).randbytes(3 * MIB + 5)
    oid, path, n = files.add(data)
    s3.put(oid, path, n)
    client = s3._client()
    get_object = client.get_object
    ranges: list[str | None] = []

    class Breaking:
        def __init__(self, body: Any) -> None:
            self.body, self.reads = body, 0

        def read(self, amt: int) -> bytes:
            self.reads += 1
            if self.reads == 2:
                raise ResponseStreamingError(error="connection reset")
            return self.body.read(amt)

        def close(self) -> None:
            self.body.close()

    def breaking(**kwargs: Any) -> Any:
        ranges.append(kwargs.get("Range"))
        resp = get_object(**kwargs)
        if len(ranges) == 1:
            resp["Body"] = Breaking(resp["Body"])
        elif not store_honours_range:
            resp.pop("ContentRange", None)
        return resp

    monkeypatch.setattr(client, "get_object", breaking)
    if store_honours_range:
        assert fetch(s3, oid) == data
    else:
        with pytest.raises(RemoteError, match="ignored the Range"):
            fetch(s3, oid)
    assert ranges == [None, f"bytes={MIB}-"]


def test_s3_unreachable_endpoint_is_a_remote_error_in_bounded_time(aws_env):
    oid = hash_bytes(b"x")
    r = S3Remote("bucket1", "p", endpoint_url=f"http://127.0.0.1:{free_port()}",
                 region=REGION, access_key_id="AKIAIDENTIFIER", secret_access_key="s3cr3t-value",
                 session_token="token-value", connect_timeout=1, read_timeout=1, max_attempts=2)
    start = time.monotonic()
    for call in (lambda: r.missing([oid]), lambda: fetch(r, oid),
                 lambda: list(r.iter_oids())):
        with pytest.raises(RemoteError) as info:
            call()
        text = str(info.value) + repr(r) + r.describe()
        assert info.value.exit_code == 5 and info.value.hint
        assert "unreachable" in text and "127.0.0.1" in text
        for secret in ("AKIAIDENTIFIER", "s3cr3t-value", "token-value"):
            assert secret not in text
    assert time.monotonic() - start < 20
    r.close()


def test_s3_silent_endpoint_times_out_in_bounded_time(aws_env):
    """A server that accepts connections and never answers: the read timeout bounds it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        r = S3Remote("bucket1", endpoint_url=f"http://127.0.0.1:{server.getsockname()[1]}",
                     region=REGION, connect_timeout=1, read_timeout=0.5, max_attempts=2,
                     **CREDENTIALS)
        start = time.monotonic()
        with pytest.raises(RemoteError, match="unreachable") as info:
            r.missing([hash_bytes(b"x")])
        assert time.monotonic() - start < 15
        assert "ReadTimeout" in str(info.value)
        r.close()


def test_s3_missing_bucket_is_a_remote_error(s3_server, aws_env, files):
    r = S3Remote("no-such-bucket", endpoint_url=s3_server, path_style=True, **CREDENTIALS)
    with pytest.raises(RemoteError) as info:
        r.put(*files.add(b"x"))
    assert "NoSuchBucket" in str(info.value) and "create the bucket" in str(info.value)
    with pytest.raises(RemoteError):
        list(r.iter_oids())
    r.close()


def test_s3_credentials_from_the_environment(s3_server, s3_bucket, files):
    r = S3Remote(s3_bucket, endpoint_url=s3_server)  # aws_env provides them
    oid, path, n = files.add(b"env")
    r.put(oid, path, n)
    assert fetch(r, oid) == b"env"
    r.close()


def test_s3_without_any_credentials(s3_server, aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    r = S3Remote("bucket1", endpoint_url=s3_server)
    with pytest.raises(RemoteError) as info:
        r.missing([hash_bytes(b"x")])
    assert "no credentials" in str(info.value)
    r.close()


def test_s3_unknown_profile_is_a_config_error(s3_server, aws_env):
    r = S3Remote("bucket1", endpoint_url=s3_server, profile="nobody")
    with pytest.raises(ConfigError, match="nobody"):
        r.missing([hash_bytes(b"x")])
    r.close()


@pytest.mark.parametrize("endpoint", ["http://user:pw@127.0.0.1:9000", "ftp://127.0.0.1",
                                      "http://127.0.0.1:9000/?X-Amz-Signature=pw", "http://",
                                      "http://127.0.0.1:notaport"])
def test_s3_bad_endpoint_is_a_config_error_without_secrets(endpoint):
    with pytest.raises(ConfigError) as info:
        S3Remote("bucket1", endpoint_url=endpoint)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(("bucket", "prefix"), [("", ""), ("b/c", ""), ("bucket1", "a//b"),
                                                ("bucket1", "a/../b")])
def test_s3_bad_bucket_or_prefix_is_a_config_error(bucket, prefix):
    with pytest.raises(ConfigError):
        S3Remote(bucket, prefix)


def test_s3_partial_credentials_are_a_config_error():
    with pytest.raises(ConfigError) as info:
        S3Remote("bucket1", access_key_id="AKIAONLY")
    assert "AKIAONLY" not in str(info.value)


# ------------------------------------------------------------------ the batched check


def fake_store(present: set[bytes]) -> tuple[Any, Any, list, list]:
    probes: list = []
    listed: list = []

    def probe(oid: Oid) -> bool:
        probes.append(oid)
        return oid.digest in present

    def list_prefix(p: int) -> Any:
        for d in sorted(present):
            if d[0] == p:
                listed.append(d)
                yield d

    return probe, list_prefix, probes, listed


def test_missing_lists_a_small_remote():
    present = {o.digest for o in random_oids(300, seed=2)}
    wanted = random_oids(3000, seed=3) + [Oid(d) for d in present]
    probe, list_prefix, probes, _ = fake_store(present)
    got = remote_base.missing(wanted, probe=probe, list_prefix=list_prefix, page=1000)
    assert got == {o for o in wanted if o.digest not in present}
    assert probes == []


def test_missing_probes_when_the_remote_is_huge():
    present = {o.digest for o in random_oids(200_000, seed=4)}
    wanted = random_oids(300, seed=5)
    probe, list_prefix, probes, listed = fake_store(present)
    got = remote_base.missing(wanted, probe=probe, list_prefix=list_prefix, page=100)
    assert got == {o for o in wanted if o.digest not in present}
    busiest = max(sum(o.digest[0] == p for o in wanted) for p in range(256))
    assert len(listed) <= (busiest - 1) * 100 + 1, "the sample stops at the probing cost"
    assert len(probes) >= 300 - busiest


def test_missing_probes_when_no_prefix_has_two_ids():
    wanted = [Oid(bytes([i]) + bytes(15)) for i in range(256)]
    probe, list_prefix, probes, listed = fake_store({wanted[0].digest})
    assert remote_base.missing(wanted, probe=probe, list_prefix=list_prefix,
                               page=1000) == set(wanted[1:])
    assert len(probes) == 256 and listed == []


# ------------------------------------------------------------------ open_remote, redact


def test_open_remote_s3():
    endpoint = "http://127.0.0.1:9000"
    r = open_remote("storage", {"url": "s3://my-bucket/team/data/", "endpoint_url": endpoint,
                                "region": "eu-west-1", "path_style": True,
                                "access_key_id": "AKIA", "secret_access_key": "hidden"},
                    jobs=4)
    assert isinstance(r, S3Remote)
    assert (r.bucket, r.prefix, r.region, r.path_style, r.jobs) == (
        "my-bucket", "team/data", "eu-west-1", True, 4)
    assert "hidden" not in repr(r) and "hidden" not in repr(vars(r))


@pytest.mark.parametrize("url", ["file:///srv/remote", "/srv/remote", "/srv/x/../remote/"])
def test_open_remote_directory(url):
    r = open_remote("backup", {"url": url})
    assert isinstance(r, LocalRemote) and r.root == "/srv/remote"


def test_open_remote_relative_path_needs_a_base(tmp_path):
    r = open_remote("backup", {"url": "../remote"}, base_dir=str(tmp_path / "repo"))
    assert isinstance(r, LocalRemote) and r.root == str(tmp_path / "remote")
    with pytest.raises(ConfigError):
        open_remote("backup", {"url": "../remote"})


@pytest.mark.parametrize(("settings", "needle"), [
    ({}, "no url"),
    ({"url": ""}, "no url"),
    ({"url": "/srv/r", "colour": "blue"}, "unknown"),
    ({"url": "s3://b1/p", "path_style": "yes"}, "true or false"),
    ({"url": 42}, "a string"),
    ({"url": "s3://b1/p", "secret_access_key": 12345}, "***"),
    ({"url": "/srv/r", "endpoint_url": "http://127.0.0.1:9000"}, "only apply to s3"),
    ({"url": "gs://bucket/p"}, "unsupported"),
    ({"url": "s3://AKIA:hunter2@bucket1/p"}, "carries credentials"),
    ({"url": "s3://bucket1:9000/p"}, "s3://BUCKET/PREFIX"),
    ({"url": "s3://bucket1/p?token=hunter2"}, "s3://BUCKET/PREFIX"),
    ({"url": "s3://bucket1/p", "access_key_id": "AKIA"}, "both"),
])
def test_open_remote_refuses_bad_settings(settings, needle):
    with pytest.raises(ConfigError) as info:
        open_remote("storage", settings)
    assert info.value.exit_code == 6
    assert needle in str(info.value)
    assert "hunter2" not in str(info.value) and "12345" not in str(info.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("s3://bucket/prefix", "s3://bucket/prefix"),
    ("https://key:secret@host:9000/b?X-Amz-Signature=sig#frag", "https://***@host:9000/b?***"),
    ("https://token@host/b", "https://***@host/b"),
    ("http://[::1]:9000/b", "http://[::1]:9000/b"),
    ("/plain/path", "/plain/path"),
    ("http://[bad", "<unparsable URL>"),
])
def test_redact(url, shown):
    assert redact(url) == shown


def test_secret_keys():
    assert frozenset({"access_key_id", "secret_access_key", "session_token"}) == SECRET_KEYS


def test_no_thread_is_left_behind(s3, files):
    before = threading.active_count()
    s3.missing(random_oids(600, seed=6))
    s3.close()
    assert threading.active_count() <= before


def test_a_batch_publishes_together_or_not_at_all(remote, files):
    """Inside a batch a directory remote defers durability to end_batch (one pair of sync
    barriers): nothing is visible before it, everything after a commit, nothing after an
    abort. S3 puts are durable at once; the batch changes nothing there."""
    a, b = files.add(b"batched a"), files.add(b"batched b")
    remote.begin_batch()
    remote.put(*a)
    if isinstance(remote, LocalRemote):
        assert remote.missing([a[0]]) == {a[0]}
    remote.end_batch(commit=True)
    assert remote.missing([a[0]]) == set() and fetch(remote, a[0]) == b"batched a"
    remote.begin_batch()
    remote.put(*b)
    remote.end_batch(commit=False)
    if isinstance(remote, LocalRemote):
        assert remote.missing([b[0]]) == {b[0]}
        assert not list(Path(remote.tmp_dir).iterdir())  # no temp left behind


def test_the_streamed_body_hashes_what_is_sent_across_rewinds(tmp_path):
    from datavc.remote_s3 import _HashingReader

    data = random.Random(4).randbytes(3 * MIB)
    path = tmp_path / "blob"
    path.write_bytes(data)
    with open(path, "rb") as f:
        body = _HashingReader(f, len(data))
        body.read(MIB)
        body.seek(0)  # botocore read it for a checksum, or a retry: the hash starts over
        assert body.read() == data and body.clean and body.got == len(data)
        assert body.hasher.digest() == hash_bytes(data).digest
        body.seek(5)  # anything else: what was sent is unknown
        assert not body.clean


def test_a_connection_broken_below_botocore_is_a_remote_error():
    """urllib3 may raise past botocore (a reset while a response is read): exit 5, not a
    traceback."""
    from urllib3.exceptions import ProtocolError

    from datavc.errors import RemoteError
    from datavc.remote_s3 import S3Remote

    rem = S3Remote("bucket", "p", endpoint_url="http://127.0.0.1:9")
    err = rem._translate(ProtocolError("Connection broken", ConnectionResetError(104, "reset")),
                         "download", hash_bytes(b"x"))
    assert isinstance(err, RemoteError) and err.exit_code == 5
    assert "connection to s3://bucket/p" in err.message and "ProtocolError" in err.message
    assert rem._translate(ValueError("a bug"), "download", None) is None  # bugs stay bugs


def _lister_of_all(present: set[bytes], calls: list) -> Any:
    def list_all() -> Any:
        calls.append(1)
        yield from sorted(present)

    return list_all


def test_missing_lists_an_empty_or_small_remote_in_one_listing():
    """A first push: the busiest prefix is empty, so one listing of everything answers."""
    wanted = random_oids(5000, seed=7)
    for present in (set(), {o.digest for o in random_oids(50, seed=8)} | {wanted[9].digest}):
        probe, list_prefix, probes, listed = fake_store(present)
        calls: list = []
        got = remote_base.missing(wanted, probe=probe, list_prefix=list_prefix, page=1000,
                                  list_all=_lister_of_all(present, calls))
        assert got == {o for o in wanted if o.digest not in present}
        assert calls == [1] and probes == []
        busiest = max(range(256), key=lambda p: sum(o.digest[0] == p for o in wanted))
        assert all(d[0] == busiest for d in listed)  # no other prefix was listed on its own


def test_missing_lists_prefixes_when_the_whole_listing_runs_long():
    wanted = random_oids(3000, seed=9)
    busiest = max(range(256), key=lambda p: sum(o.digest[0] == p for o in wanted))
    present = {d for d in (o.digest for o in random_oids(9000, seed=10)) if d[0] != busiest}
    probe, list_prefix, probes, _ = fake_store(present)
    calls: list = []
    got = remote_base.missing(wanted, probe=probe, list_prefix=list_prefix, page=1000,
                              list_all=_lister_of_all(present, calls))
    assert got == {o for o in wanted if o.digest not in present}
    assert calls == [1]  # tried, cut short after 4 pages, then prefix by prefix


def test_s3_first_push_check_costs_three_listings(s3, s3_server):
    """The request count: an empty S3 remote answers 5,000 ids with three ListObjectsV2
    (its packs, the busiest prefix, then all objects at once)."""
    calls = []
    real = s3._call

    def counting(method, *args, **kwargs):
        calls.append(method)
        return real(method, *args, **kwargs)

    s3._call = counting
    wanted = random_oids(5000, seed=11)
    assert s3.missing(wanted) == set(wanted)
    assert calls == ["list_objects_v2"] * 3
