"""A remote in an S3 bucket (AWS or any S3-compatible store): ``<bucket>/<prefix>/objects/..``.

boto3 is imported on first use. One client, created once under a lock, is shared by every
thread (botocore clients are thread-safe; sessions are not), plus a bounded thread pool
that :meth:`S3Remote.missing` uses for its existence checks and listings. Retries are
botocore's ``standard`` mode: throttling (SlowDown, 503), 5xx and connection errors are
retried with exponential backoff and jitter, ``max_attempts`` in all; then RemoteError.

Uploads below ``multipart_threshold`` are a single PUT of bytes read and verified first;
above it, a multipart upload of ``part_size`` parts in order, completed only after the
whole file hashed to its id and aborted on any failure, so no partial object is ever
visible under its key. A process killed mid-upload leaves an incomplete multipart upload
(invisible, but billed): give the bucket an AbortIncompleteMultipartUpload lifecycle rule.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any
from urllib.parse import urlsplit

import xxhash

from . import crash, pack, parallel
from .errors import (
    ConfigError,
    DatavcError,
    IntegrityError,
    ObjectMissingError,
    RemoteError,
    from_oserror,
)
from .hashing import Oid
from .remote_base import (
    MAX_RUN,
    OBJECTS,
    PACKS,
    RUNS,
    Collect,
    Listed,
    PackShelf,
    Sink,
    missing,
    object_key,
    parse_key,
    redact,
)

MIB = 1 << 20
MULTIPART_THRESHOLD = 16 * MIB
STREAM_PUT = 1 * MIB  # from this size a single PUT streams its body from the file
PART_SIZE = 16 * MIB
MIN_PART_SIZE = 8 * MIB
MAX_PARTS = 10_000
LIST_PAGE = 1000
CHUNK = MIB
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
MAX_ATTEMPTS = 5
JOBS = 8
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DAMAGED_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})
_PART_CHECKSUMS = ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1",
                   "ChecksumSHA256")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


class _Secrets:
    """Credentials, kept out of every repr and message."""

    __slots__ = ("access_key_id", "secret_access_key", "session_token")

    def __init__(self, access_key_id: str | None, secret_access_key: str | None,
                 session_token: str | None) -> None:
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigError("set both access_key_id and secret_access_key, or neither",
                              hint="or leave both to AWS_* variables or a profile")
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token

    def __repr__(self) -> str:
        return "<credentials>"

    def values(self) -> list[str]:
        return [v for v in (self.access_key_id, self.secret_access_key, self.session_token)
                if v]


class S3Remote:
    """Objects in ``s3://bucket/prefix``. Credentials come from the arguments, else from
    botocore's usual chain (AWS_* variables, ``profile``, shared files, instance roles)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None,
                 path_style: bool = False, access_key_id: str | None = None,
                 secret_access_key: str | None = None, session_token: str | None = None,
                 jobs: int = JOBS, multipart_threshold: int = MULTIPART_THRESHOLD,
                 part_size: int = PART_SIZE, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, max_attempts: int = MAX_ATTEMPTS) -> None:
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
            raise ConfigError(f"invalid S3 key prefix {prefix!r}",
                              hint="use s3://BUCKET/PATH/TO/DIR without empty, . or .. parts")
        if endpoint_url is not None:
            check_endpoint(endpoint_url)
        if part_size < MIN_PART_SIZE or not 1 <= jobs <= 256 or max_attempts < 1:
            raise ConfigError("S3 remote: part_size must be at least 8 MiB, jobs 1 to 256 "
                              "and max_attempts at least 1")
        self.bucket, self.prefix = bucket, prefix
        self._base = f"{prefix}/" if prefix else ""
        self.endpoint_url, self.region, self.profile = endpoint_url, region, profile
        self.path_style, self.jobs = path_style, jobs
        self.multipart_threshold, self.part_size = multipart_threshold, part_size
        self.timeouts = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self._secrets = _Secrets(access_key_id, secret_access_key, session_token)
        self._lock = threading.Lock()
        self._client_obj: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self.packing = True  # push many small objects as packs
        self._shelf = PackShelf(self._pack_files, self._read_index, run=self._run)

    def __repr__(self) -> str:
        return f"S3Remote({self.describe()!r})"

    def describe(self) -> str:
        url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        if self.endpoint_url:
            url += f" (endpoint {redact(self.endpoint_url)})"
        return url

    def begin_batch(self) -> None:
        """A PUT is durable when acknowledged: nothing to defer."""

    def end_batch(self, *, commit: bool) -> None:
        """Nothing was deferred."""

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            client, self._client_obj = self._client_obj, None
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None:
            client.close()

    # ------------------------------------------------------------------ plumbing

    def _client(self) -> Any:
        client = self._client_obj
        if client is not None:
            return client
        with self._lock:
            if self._client_obj is None:
                self._client_obj = self._make_client()
            return self._client_obj

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        parallel.return_big_buffers()  # many threads, each streaming MiB-sized pieces

        config = Config(
            connect_timeout=self.timeouts[0], read_timeout=self.timeouts[1],
            # total_max_attempts: botocore's max_attempts counts retries, one attempt fewer
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            max_pool_connections=max(10, 2 * self.jobs),
            s3={"addressing_style": "path" if self.path_style else "auto"})
        s = self._secrets
        try:
            session = boto3.session.Session(
                profile_name=self.profile, aws_access_key_id=s.access_key_id,
                aws_secret_access_key=s.secret_access_key, aws_session_token=s.session_token)
            return session.client("s3", endpoint_url=self.endpoint_url,
                                  region_name=self.region, config=config)
        except Exception as exc:
            err = self._translate(exc, "connect to", None)
            if err is None and isinstance(exc, ValueError):
                err = ConfigError(f"cannot use remote {self.describe()}: {self._scrub(exc)}",
                                  hint="check the remote's endpoint_url and region")
            if err is None:
                raise
            raise err from None

    def _call(self, method: str, action: str, oid: Oid | str | None, **kwargs: Any) -> Any:
        """One client call; every botocore failure becomes a DatavcError. ``oid`` names
        what the call is about in messages (an id, or a text such as ``pack <P>``); with
        one, a missing key is ObjectMissingError."""
        client = self._client()
        try:
            return getattr(client, method)(Bucket=self.bucket, **kwargs)
        except Exception as exc:
            err = self._translate(exc, action, oid)
            if err is None:
                raise
            raise err from None

    def _translate(self, exc: Exception, action: str,
                   oid: Oid | str | None) -> DatavcError | None:
        from botocore import exceptions as bx

        thing = f"object {oid}" if isinstance(oid, Oid) else oid
        what = f"{action} {thing}" if thing is not None else action
        where = self.describe()
        if isinstance(exc, bx.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if thing is not None and code in _MISSING_CODES:
                return ObjectMissingError(f"{thing} is not on remote {where}",
                                          hint="push it from a clone that has it")
            return RemoteError(f"cannot {what} on {where}: {code or 'error'} (HTTP {status})",
                               hint=_client_hint(code, status))
        if isinstance(exc, bx.ProfileNotFound):
            return ConfigError(f"remote {where}: AWS profile {self.profile!r} not found",
                               hint="fix the remote's profile or your ~/.aws/config")
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
            return RemoteError(f"no credentials found for remote {where}",
                               hint="set access_key_id and secret_access_key with `datavc "
                                    "remote modify --local`, or AWS_* variables, or a profile")
        if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError
                      | bx.ConnectionClosedError | bx.ReadTimeoutError):
            return RemoteError(f"cannot {what}: remote {where} unreachable after "
                               f"{self.max_attempts} attempts ({type(exc).__name__})",
                               hint="check the network and the remote's endpoint_url, then "
                                    "run the command again")
        if isinstance(exc, bx.BotoCoreError):
            return RemoteError(f"cannot {what} on {where}: {self._scrub(exc)}",
                               hint="run the command again; if it keeps failing, check the "
                                    "remote's settings")
        if isinstance(exc, _stream_errors()):  # a connection broken below botocore
            return RemoteError(f"cannot {what}: connection to {where} broken "
                               f"({type(exc).__name__})",
                               hint="check the network, then run the command again")
        return None

    def _scrub(self, exc: object) -> str:
        """``str(exc)`` with every URL redacted and no credential in it."""
        text = _URL.sub(lambda m: redact(m.group(0)), str(exc))
        for secret in self._secrets.values():
            text = text.replace(secret, "***")
        return text

    def _key(self, oid: Oid) -> str:
        return self._base + object_key(oid)

    def _run(self, fn: Callable[..., Any], items: list) -> Iterable:
        if len(items) < 2:
            return list(map(fn, items))
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="datavc-s3")
            pool = self._pool
        return list(pool.map(fn, items))

    # ------------------------------------------------------------------ reading

    def missing(self, oids: Iterable[Oid]) -> set[Oid]:
        """Per-object checks are HEAD requests, listings ListObjectsV2 pages, both run on
        the thread pool. A bucket that does not exist answers HEAD with 404 like a missing
        key, so its objects look missing here; put and listing then raise RemoteError."""
        packed = self._shelf.get()
        return missing((o for o in oids if o.digest not in packed), probe=self._exists,
                       list_prefix=self._list_prefix, page=LIST_PAGE, run=self._run,
                       list_all=self._list_all)

    def locate(self, oids: Iterable[Oid]) -> dict[Oid, pack.Packed]:
        return self._shelf.get().locate(oids)

    def _pack_files(self) -> Iterator[tuple[str, int, float]]:
        for key, item in self._list_items(f"{PACKS}/"):
            yield key[len(PACKS) + 1:], _int(item.get("Size")), _stored(item)

    def _read_index(self, name: str) -> bytes:
        got = Collect(pack.MAX_INDEX, lambda: pack.PackError("longer than an index may be"))
        try:
            self._get_key(self._pack_key(name, pack.INDEX_SUFFIX), f"pack index {name}", got)
        except ObjectMissingError:
            return b""
        return b"".join(got.parts)

    def _pack_key(self, name: str, suffix: str = pack.PACK_SUFFIX) -> str:
        return f"{self._base}{PACKS}/{name}{suffix}"

    def iter_packs(self, *, on_junk: Callable[[str], object] | None = None
                   ) -> list[pack.PackInfo]:
        return self._shelf.scan(on_junk)

    def read_range(self, name: str, start: int, length: int, sink: Sink) -> None:
        if length > 0:
            self._get_key(self._pack_key(name), f"pack {name}", sink, start, length)

    def _exists(self, oid: Oid) -> bool:
        try:
            self._call("head_object", "check", oid, Key=self._key(oid))
        except ObjectMissingError:
            return False
        return True

    def _list(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix`` (relative to the root), page by page, lazily."""
        return (key for key, _ in self._list_items(prefix))

    def _list_items(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (key relative to the root, listing item) under ``prefix``, lazily."""
        kwargs: dict[str, Any] = {"Prefix": self._base + prefix}
        while True:
            page = self._call("list_objects_v2", "list objects", None, **kwargs)
            for item in page.get("Contents", ()):
                yield item["Key"][len(self._base):], item
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _list_all(self) -> Iterator[bytes]:
        return self._digests(f"{OBJECTS}/")

    def _list_prefix(self, prefix: int) -> Iterator[bytes]:
        return self._digests(f"{OBJECTS}/{prefix:02x}/")

    def _digests(self, prefix: str) -> Iterator[bytes]:
        """The digest of every well-formed object key under ``prefix``, lazily."""
        for key in self._list(prefix):
            digest = parse_key(key)
            if digest is not None:
                yield digest

    def iter_oids(self, *, on_junk: Callable[[str], object] | None = None) -> Iterator[Oid]:
        return (listed.oid for listed in self.iter_listed(on_junk=on_junk))

    def iter_listed(self, *, on_junk: Callable[[str], object] | None = None
                    ) -> Iterator[Listed]:
        for key, item in self._list_items(f"{OBJECTS}/"):
            digest = parse_key(key)
            if digest is not None:
                yield Listed(Oid(digest), _int(item.get("Size")), _stored(item))
            elif on_junk is not None:
                on_junk(key)

    def get(self, oid: Oid, sink: Sink) -> None:
        """Streams the body; a connection broken mid-body resumes with a Range request
        from the last byte written (the key names immutable content), ``max_attempts``
        times in all. A body that fails the store's own checksum (botocore checks it when
        the store sends one) raises IntegrityError: the caller may try once more. A packed
        object is a ranged read of its pack."""
        at = self._shelf.get().get(oid.digest)
        if at is not None:
            with contextlib.suppress(ObjectMissingError):  # the pack gone: maybe loose too
                self.read_range(at.pack, at.offset, at.size, sink)
                return
        self._get_key(self._key(oid), f"object {oid}", sink)

    def _get_key(self, key: str, what: str, sink: Sink, start: int = 0,
                 length: int = -1) -> None:
        """Bytes ``[start, start + length)`` of ``key`` (``length`` -1: to the end)."""
        done, broken = 0, 0
        if length >= 0:
            sink = _Limited(sink, length, f"{what} from {self.describe()}")
        while True:
            if 0 <= length <= done:
                return
            end = "" if length < 0 else str(start + length - 1)
            extra = {"Range": f"bytes={start + done}-{end}"} if done or start or end else {}
            resp = self._call("get_object", "download", what, Key=key, **extra)
            body = resp["Body"]
            if extra and not str(resp.get("ContentRange", "")).startswith(
                    f"bytes {start + done}-"):
                body.close()
                raise RemoteError(f"cannot download {what} from {self.describe()}: the store "
                                  f"ignored the Range request", hint="run the command again")
            try:
                done, error = _drain(body, sink, done)
            finally:
                body.close()
            if error is None:
                return
            if isinstance(error, _checksum_error()):
                # the whole body arrived and failed the store's checksum: damaged bytes, not
                # a broken connection (resuming would ask for a range past the end)
                raise IntegrityError(
                    f"{what} arrived from {self.describe()} with other content (the "
                    f"store's checksum did not match); it was not stored",
                    hint="run the command again; if it keeps failing, push the object again "
                         "from a clone that has it")
            broken += 1
            if broken >= self.max_attempts:
                raise RemoteError(f"cannot download {what} from {self.describe()}: "
                                  f"connection broken {broken} times ({type(error).__name__})",
                                  hint="check the network, then run the command again")

    # ------------------------------------------------------------------ writing

    def put(self, oid: Oid, path: str, size: int) -> None:
        self._put_file(self._key(oid), oid, path, size)

    def put_packs(self, built: list[tuple[str, bytes]]) -> None:
        """Each pack is uploaded (and verified against the digest its index records, as an
        object is), then its index: a PUT is visible and durable when acknowledged, so the
        index never comes first. Two writers of one name write the same bytes."""
        self._shelf.get()  # read before the pool runs `one`, which adds to it

        def one(item: tuple[str, bytes]) -> None:
            tmp, index = item
            digest, info = pack.own_index(index, time.time())
            self._put_file(self._pack_key(info.name), Oid(digest), tmp, info.size)
            crash.point("remote-pack-put")
            self._call("put_object", "upload", f"pack index {info.name}",
                       Key=self._pack_key(info.name, pack.INDEX_SUFFIX), Body=index)
            self._shelf.added(info)

        for _ in self._run(one, built):
            pass

    def delete_pack(self, name: str) -> None:
        for suffix in (pack.INDEX_SUFFIX, pack.PACK_SUFFIX):
            with contextlib.suppress(ObjectMissingError):
                self._call("delete_object", "delete", f"pack {name}",
                           Key=self._pack_key(name, suffix))

    def _put_file(self, key: str, oid: Oid, path: str, size: int) -> None:
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise from_oserror(exc, path, "read") from None
        with f:
            if size >= self.multipart_threshold:
                self._put_multipart(key, oid, f, path, size)
            elif size >= STREAM_PUT:
                self._put_streamed(key, oid, f, path, size)
            else:
                data = _read(f, size + 1, path)
                self._verify(oid, path, xxhash.xxh3_128_digest(data), len(data), size)
                self._call("put_object", "upload", oid, Key=key, Body=data)

    def _put_streamed(self, key: str, oid: Oid, f: IO[bytes], path: str, size: int) -> None:
        """One PUT whose body is read from the file as it is sent (memory stays at a
        chunk, not the file). The file is hashed first, so nothing unverified is sent; the
        bytes sent are hashed again on the way and, should they differ (the file changed in
        between), the object is deleted before the error is raised."""
        hasher, got = xxhash.xxh3_128(), 0
        while chunk := _read(f, CHUNK, path):
            hasher.update(chunk)
            got += len(chunk)
        self._verify(oid, path, hasher.digest(), got, size)
        f.seek(0)
        body = _HashingReader(f, size)
        self._call("put_object", "upload", oid, Key=key, Body=body, ContentLength=size)
        if body.clean and (body.hasher.digest() != oid.digest or body.got != size):
            with contextlib.suppress(ObjectMissingError):
                self._call("delete_object", "delete", oid, Key=key)
            raise IntegrityError(f"'{path}' changed while it was uploaded as object {oid}; "
                                 f"the upload to {self.describe()} was removed",
                                 hint="run `datavc fsck`, then push again")

    def _put_multipart(self, key: str, oid: Oid, f: IO[bytes], path: str, size: int) -> None:
        upload = self._call("create_multipart_upload", "start upload of", oid, Key=key)
        ids = {"Key": key, "UploadId": upload["UploadId"]}
        part_size = max(self.part_size, math.ceil(size / MAX_PARTS / MIB) * MIB)
        try:
            hasher, total, parts = xxhash.xxh3_128(), 0, []
            for number in itertools.count(1):
                data = _read(f, min(part_size, size + 1 - total), path)
                if not data:
                    break
                hasher.update(data)
                total += len(data)
                if total > size:
                    break
                resp = self._call("upload_part", "upload part of", oid, PartNumber=number,
                                  Body=data, **ids)
                parts.append({"PartNumber": number, "ETag": resp["ETag"],
                              **{k: resp[k] for k in _PART_CHECKSUMS if k in resp}})
                crash.point("remote-part-uploaded")
            self._verify(oid, path, hasher.digest(), total, size)
            self._call("complete_multipart_upload", "complete upload of", oid,
                       MultipartUpload={"Parts": parts}, **ids)
        except BaseException:
            self._abort(ids)
            raise

    def _abort(self, ids: dict[str, str]) -> None:
        """Best effort: a failed abort leaves an invisible upload for the lifecycle rule."""
        with contextlib.suppress(Exception):  # the original failure is what matters
            self._client().abort_multipart_upload(Bucket=self.bucket, **ids)

    def _verify(self, oid: Oid, path: str, digest: bytes, got: int, size: int) -> None:
        if digest != oid.digest or got != size:
            raise IntegrityError(
                f"'{path}' does not hold object {oid} ({got} bytes read, {size} expected): "
                f"not uploaded to {self.describe()}",
                hint="run `datavc fsck` to find and repair corrupt cache objects")

    def delete(self, oid: Oid) -> None:
        with contextlib.suppress(ObjectMissingError):  # S3 says 204; some stores say 404
            self._call("delete_object", "delete", oid, Key=self._key(oid))

    # ------------------------------------------------------------ run-cache entries

    def get_run(self, key: Oid) -> bytes | None:
        try:
            resp = self._call("get_object", "download run-cache entry", key,
                              Key=self._base + object_key(key, RUNS))
        except ObjectMissingError:
            return None
        body = resp["Body"]
        try:
            data = body.read(MAX_RUN + 1)
        except _stream_errors() as exc:
            raise RemoteError(f"cannot download run-cache entry {key} from "
                              f"{self.describe()}: {type(exc).__name__}",
                              hint="run the command again") from None
        finally:
            body.close()
        if len(data) > MAX_RUN:
            raise RemoteError(f"run-cache entry {key} on {self.describe()} is larger than "
                              f"{MAX_RUN} bytes")
        return bytes(data)

    def put_run(self, key: Oid, data: bytes) -> None:
        self._call("put_object", "upload run-cache entry", None,
                   Key=self._base + object_key(key, RUNS), Body=data)

    def iter_runs(self) -> Iterator[Oid]:
        for name in self._list(f"{RUNS}/"):
            digest = parse_key(name, RUNS)
            if digest is not None:
                yield Oid(digest)

    def delete_run(self, key: Oid) -> None:
        with contextlib.suppress(ObjectMissingError):
            self._call("delete_object", "delete run-cache entry", key,
                       Key=self._base + object_key(key, RUNS))


class _Limited:
    """Passes on at most ``left`` bytes; a store sending more than the range it was asked
    for is broken (RemoteError), not a reason to write on and on."""

    def __init__(self, sink: Sink, left: int, what: str) -> None:
        self.sink, self.left, self.what = sink, left, what

    def write(self, data: bytes, /) -> object:
        self.left -= len(data)
        if self.left < 0:
            raise RemoteError(f"cannot download {self.what}: the store sent more bytes than "
                              f"the range asked for", hint="check the remote's endpoint_url")
        return self.sink.write(data)


class _HashingReader:
    """A file body for botocore that hashes what is read from it, in order. botocore may
    read it to compute a checksum and seek back to 0 (the hash starts over); any other seek
    makes the hash of the sent bytes unknown (``clean`` false)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.size = f, size
        self.hasher, self.got, self.clean = xxhash.xxh3_128(), 0, True

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hasher.update(data)
        self.got += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        where = self.f.seek(pos, whence)
        if where == 0:
            self.hasher, self.got = xxhash.xxh3_128(), 0
        elif where != self.got:
            self.clean = False
        return where

    def tell(self) -> int:
        return self.f.tell()

    def __len__(self) -> int:
        return self.size


def check_endpoint(url: str) -> None:
    """An ``http(s)://HOST[:PORT][/PATH]`` URL without user-info, query or fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"endpoint_url {redact(url)} is not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"endpoint_url {redact(url)} carries credentials",
                          hint="remove them; set access_key_id and secret_access_key with "
                               "`datavc remote modify --local`")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment:
        raise ConfigError(f"endpoint_url {redact(url)} must be http(s)://HOST[:PORT]",
                          hint="for example http://127.0.0.1:9000")


def _read(f: IO[bytes], n: int, path: str) -> bytes:
    try:
        return f.read(n)
    except OSError as exc:
        raise from_oserror(exc, path, "read") from None


def _stream_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError
    from urllib3.exceptions import HTTPError

    return (BotoCoreError, HTTPError, http.client.HTTPException, ConnectionError, TimeoutError)


def _checksum_error() -> type[BaseException] | tuple[()]:
    """botocore's error for a response body that fails its checksum (when it has one)."""
    from botocore import exceptions as bx

    return getattr(bx, "FlexibleChecksumError", ())


def _drain(body: Any, sink: Sink, done: int) -> tuple[int, BaseException | None]:
    """Copy ``body`` into ``sink``; return (bytes written in all, the read error or None)."""
    errors = _stream_errors()
    while True:
        try:
            chunk = body.read(CHUNK)
        except errors as exc:
            return done, exc
        if not chunk:
            return done, None
        sink.write(chunk)
        done += len(chunk)


def _int(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _stored(item: dict[str, Any]) -> float:
    """When a listed object was stored; a store that does not say makes it brand new (gc's
    grace then keeps it: never delete on a guess)."""
    when = item.get("LastModified")
    try:
        return float(when.timestamp())  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError, OverflowError, OSError):
        return time.time()


def _client_hint(code: str, status: object) -> str:
    if code == "NoSuchBucket":
        return "create the bucket, or fix the remote's url"
    if code in _DAMAGED_CODES:
        return "the upload was damaged on the way and the store refused it; run the command again"
    if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                 "ExpiredToken", "InvalidToken"):
        return "check the remote's credentials and their permissions on the bucket"
    if isinstance(status, int) and status >= 500 or code in ("SlowDown", "Throttling"):
        return "the store kept failing after retries; run the command again later"
    return "check the remote's url, endpoint_url and region"
