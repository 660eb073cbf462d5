"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the moto S3 server.

Every request is read in full and, unless a fault is chosen for it, forwarded to the
upstream server; the response is read in full and passed back. A fault is chosen per
request, either by a schedule of :class:`Rule` s ("the 1st GET of every object key", "every
PUT") or by a seeded RNG (``rate`` and ``faults``). The RNG decision for a request depends
only on the seed, the method, the path and how many times that method and path were seen
before, so it does not depend on the order in which the client's threads run.

Faults (``FAULTS``):

- ``drop``: close the connection before forwarding, without a response;
- ``lost-reply``: forward the request (the store acts on it), then close without a response;
- ``reset``: forward, send the status line, the headers and half the body, then reset the
  connection (RST); a response without a body is cut inside its headers;
- ``truncate``: forward, send the headers with Content-Length intact and half the body,
  then close the connection normally (FIN); a response without a body is cut inside its
  status line;
- ``500``: an S3 ``InternalError``; ``503``: an S3 ``SlowDown`` (XML error bodies);
- ``flip``: flip one byte of a GET response body, or of a PUT / UploadPart request body
  before forwarding it (requests without a body pass unchanged);
- ``stall``: send nothing for ``stall_seconds`` (longer than the client's read timeout,
  bounded, and cut short when the proxy stops), then close the connection.

Like S3 (and unlike moto, which stores whatever arrives), the proxy refuses a request body
that does not match the digests its headers declare, ``x-amz-content-sha256``,
``x-amz-checksum-crc32`` or ``Content-MD5``, with ``400 XAmzContentSHA256Mismatch`` /
``BadDigest``: so a flipped upload byte is refused as it would be by the real store. With
``checksums=False`` the proxy strips the ``x-amz-checksum-*`` headers from responses, as a
store that keeps no checksums would, leaving the client's own hashing as the only check.

Everything is bounded: sockets have timeouts, a connection serves at most
``MAX_REQUESTS_PER_CONNECTION`` requests, bodies at most ``MAX_BODY`` bytes, a stall at most
``MAX_STALL`` seconds, the log at most ``MAX_EVENTS`` requests. The proxy listens on
127.0.0.1 only and forwards only to a ``http://127.0.0.1:PORT`` upstream. :func:`fault_proxy`
(a context manager) and the ``s3_proxy`` fixture start it on a free port and stop it
afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import random
import socket
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

FAULTS = ("drop", "lost-reply", "reset", "truncate", "500", "503", "flip", "stall")
MAX_BODY = 64 << 20
MAX_STALL = 10.0
MAX_REQUESTS_PER_CONNECTION = 1000
MAX_CHUNKS = 100_000
MAX_EVENTS = 100_000
SOCKET_TIMEOUT = 30.0
_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                  "trailer", "upgrade", "content-length", "expect"})
_ERRORS = {"500": (500, "InternalError", "We encountered an internal error. Please try again."),
           "503": (503, "SlowDown", "Please reduce your request rate.")}


@dataclass(frozen=True)
class Rule:
    """Inject ``fault`` into requests that match: ``method`` (None: any), only keys under
    ``objects/`` unless ``objects_only`` is false, and only the ``nth`` occurrences (1-based)
    of that method on that path (None: every one). ``limit`` caps how often the rule fires
    in all (None: no cap)."""

    fault: str
    method: str | None = None
    nth: frozenset[int] | None = None
    objects_only: bool = True
    limit: int | None = None

    def __post_init__(self) -> None:
        assert self.fault in FAULTS, self.fault


@dataclass(frozen=True)
class Event:
    """One request seen: its method, path (no query), occurrence number and fault (or None)."""

    method: str
    path: str
    n: int
    fault: str | None


@dataclass
class _Plan:
    rules: tuple[Rule, ...] = ()
    seed: int = 0
    rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    fired: Counter[int] = field(default_factory=Counter)


class FaultProxy:
    """The proxy; :attr:`url` is its endpoint. Configure with :meth:`schedule`,
    :meth:`randomly` or :meth:`clear`; :attr:`events` records every request."""

    def __init__(self, upstream: str, *, stall_seconds: float = 2.0,
                 checksums: bool = True) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname != "127.0.0.1" or parts.port is None:
            raise ValueError(f"upstream must be http://127.0.0.1:PORT, not {upstream!r}")
        self.upstream = ("127.0.0.1", parts.port)
        self.stall_seconds = min(stall_seconds, MAX_STALL)
        self.checksums = checksums
        self.events: list[Event] = []
        self._plan = _Plan()
        self._seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="s3proxy", daemon=True)

    # ------------------------------------------------------------------ control

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for sock in list(self._server.active):  # idle keep-alive connections end now
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)

    def schedule(self, *rules: Rule) -> None:
        """Inject faults by these rules (the first that matches wins); counts restart."""
        with self._lock:
            self._plan = _Plan(rules=tuple(rules))
            self._seen.clear()
            self.events.clear()

    def randomly(self, *, seed: int, rate: float, faults: Iterable[str] = FAULTS) -> None:
        """Inject a fault into each request with probability ``rate``, picked from
        ``faults`` by an RNG seeded from ``seed`` and the request (see the module doc)."""
        faults = tuple(faults)
        assert faults and set(faults) <= set(FAULTS), faults
        with self._lock:
            self._plan = _Plan(seed=seed, rate=rate, faults=faults)
            self._seen.clear()
            self.events.clear()

    def clear(self) -> None:
        """No faults from now on."""
        self.schedule()

    def fired(self, fault: str | None = None) -> list[Event]:
        """The requests that got a fault (``fault``, or any)."""
        with self._lock:
            return [e for e in self.events
                    if e.fault is not None and (fault is None or e.fault == fault)]

    # ------------------------------------------------------------------ decisions

    def _decide(self, method: str, path: str, has_body: bool) -> str | None:
        is_object = "/objects/" in path
        flippable = method == "GET" or has_body
        with self._lock:
            self._seen[method, path] += 1
            n = self._seen[method, path]
            plan = self._plan
            fault = None
            for i, rule in enumerate(plan.rules):
                if rule.method is not None and rule.method != method:
                    continue
                if rule.objects_only and not is_object:
                    continue
                if rule.nth is not None and n not in rule.nth:
                    continue
                if rule.limit is not None and plan.fired[i] >= rule.limit:
                    continue
                if rule.fault == "flip" and not flippable:
                    continue  # nothing to flip: the request passes, the rule is not used up
                plan.fired[i] += 1
                fault = rule.fault
                break
            if not plan.rules and plan.rate > 0:
                rng = random.Random(f"{plan.seed}:{method}:{path}:{n}")
                if rng.random() < plan.rate:
                    fault = rng.choice(plan.faults)
            if fault == "flip" and not flippable:
                fault = None  # nothing to flip: pass the request through
            if len(self.events) < MAX_EVENTS:
                self.events.append(Event(method, path, n, fault))
            return fault

    def _flip_at(self, path: str, size: int) -> int:
        return random.Random(f"flip:{self._plan.seed}:{path}:{size}").randrange(size)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    proxy: FaultProxy

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resets: set[socket.socket] = set()
        self.active: set[socket.socket] = set()

    def shutdown_request(self, request: Any) -> None:
        if request in self.resets:
            self.resets.discard(request)
            self.close_request(request)  # no shutdown(SHUT_WR) first: the close is an RST
            return
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up, or a fault that cut the connection: expected here


class _Abort(Exception):
    """Stop serving this connection (after a fault cut it)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.active.add(self.connection)

    def finish(self) -> None:
        self.server.active.discard(self.connection)
        super().finish()

    def handle(self) -> None:
        self.close_connection = True
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                self.handle_one_request()
            except (_Abort, OSError):
                return
            if self.close_connection:
                return

    def _any(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        path = urlsplit(self.path).path
        fault = proxy._decide(self.command, path, bool(body))
        if fault == "drop":
            raise _Abort
        if fault == "stall":
            proxy._stopping.wait(proxy.stall_seconds)
            raise _Abort
        if fault in _ERRORS:
            self._s3_error(*_ERRORS[fault], path)
            return
        if fault == "flip" and body:
            at = proxy._flip_at(path, len(body))
            body = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1:]
        bad = _bad_digest(self.headers, body)
        if bad is not None:  # what S3 answers; moto stores whatever arrives
            self._s3_error(400, *bad, path)
            return
        status, reason, headers, data = self._forward(body)
        if fault == "lost-reply":
            raise _Abort
        if not proxy.checksums:
            headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum-")]
        if fault == "flip" and self.command == "GET" and data and status in (200, 206):
            at = proxy._flip_at(path, len(data))
            data = data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]
        head = self._head(status, reason, headers, len(data))
        if fault == "reset":
            cut = head[:len(head) // 2] if not data or self.command == "HEAD" \
                else head + data[:len(data) // 2]
            self.wfile.write(cut)
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.server.resets.add(self.connection)  # closed without a FIN: an RST
            raise _Abort
        if fault == "truncate":  # a reply without a body is cut inside its status line
            cut = head[:len("HTTP/1.1 2")] if not data or self.command == "HEAD" \
                else head + data[:len(data) // 2]
            self.wfile.write(cut)
            self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
            raise _Abort
        self.wfile.write(head + (b"" if self.command == "HEAD" else data))
        self.wfile.flush()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            total = 0
            for _ in range(MAX_CHUNKS):
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    for _ in range(MAX_CHUNKS):  # trailers, up to the empty line
                        if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    raise _Abort
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)
            raise _Abort
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise _Abort
        return self.rfile.read(length) if length else b""

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.server.proxy.upstream, timeout=SOCKET_TIMEOUT)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read(MAX_BODY + 1)
            if len(data) > MAX_BODY:
                raise _Abort
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def _head(self, status: int, reason: str, headers: list[tuple[str, str]],
              length: int) -> bytes:
        lines = [f"HTTP/1.1 {status} {reason}"]
        for k, v in headers:
            if k.lower() in _HOP:
                if self.command == "HEAD" and k.lower() == "content-length":
                    lines.append(f"{k}: {v}")  # a HEAD reports the object's size
                continue
            lines.append(f"{k}: {v}")
        if self.command != "HEAD":
            lines.append(f"Content-Length: {length}")
        lines.append("Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _s3_error(self, status: int, code: str, message: str, path: str) -> None:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message><Resource>{path}</Resource>"
                f"<RequestId>s3proxy</RequestId></Error>").encode()
        headers = [("Content-Type", "application/xml")]
        if self.command == "HEAD":
            headers.append(("Content-Length", "0"))
            body = b""
        self.wfile.write(self._head(status, "Error", headers, len(body)) + body)
        self.wfile.flush()


def _bad_digest(headers: Any, body: bytes) -> tuple[str, str] | None:
    """The S3 error for a request body that does not match the digests its headers
    declare (the signed payload hash, a flexible checksum, Content-MD5), as S3 checks them."""
    sha = headers.get("x-amz-content-sha256", "")
    if len(sha) == 64 and hashlib.sha256(body).hexdigest() != sha.lower():
        return "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header " \
            "does not match what was computed."
    crc = headers.get("x-amz-checksum-crc32")
    if crc is not None and base64.b64encode(struct.pack(">I", zlib.crc32(body))).decode() != crc:
        return "BadDigest", "The CRC32 you specified did not match the calculated checksum."
    md5 = headers.get("Content-MD5")
    if md5 is not None and base64.b64encode(hashlib.md5(body).digest()).decode() != md5:
        return "BadDigest", "The Content-MD5 you specified did not match what we received."
    return None


@contextlib.contextmanager
def fault_proxy(upstream: str, *, stall_seconds: float = 2.0) -> Iterator[FaultProxy]:
    """A running proxy in front of ``upstream``, stopped on exit."""
    proxy = FaultProxy(upstream, stall_seconds=stall_seconds).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def s3_proxy(s3_server: str) -> Iterator[FaultProxy]:
    """A proxy in front of the session's moto server, for one test module; each test
    should set its own schedule."""
    with fault_proxy(s3_server) as proxy:
        yield proxy
