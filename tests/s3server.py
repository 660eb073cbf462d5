"""A real S3 endpoint for tests: moto's standalone server in a subprocess on 127.0.0.1.

Import the fixtures into a test module (``from tests.s3server import ...``):

- ``s3_server`` (session): starts ``python -m moto.server`` on a free 127.0.0.1 port, waits
  until it answers, yields its URL, and stops it (by its pid) at the end of the session.
- ``aws_env``: dummy credentials and no route anywhere but 127.0.0.1: no proxies, no
  instance metadata, no shared AWS files, a fixed region.
- ``s3_client``: a boto3 client on the server; ``s3_bucket``: a fresh bucket per test.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
         "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
         "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
         "AWS_ROLE_ARN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
         "https_proxy", "all_proxy")
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start(log: Path) -> tuple[subprocess.Popen, int] | None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in UNSET} | AWS_ENV
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # the port was taken meanwhile, or moto failed
            return None
        if _answers(port):
            return proc, port
        time.sleep(0.05)
    _stop(proc)
    return None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server on 127.0.0.1, for the whole session."""
    log = tmp_path_factory.mktemp("moto") / "server.log"
    for _ in range(3):
        started = _start(log)
        if started is not None:
            break
    else:
        pytest.fail(f"moto server did not start; see {log}")
    proc, port = started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials; nothing can reach an address outside 127.0.0.1."""
    for key in UNSET:
        monkeypatch.delenv(key, raising=False)
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def s3_client(s3_server: str, aws_env: None) -> Iterator[Any]:
    """A plain boto3 client on the moto server, to look behind a remote's back."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3_server: str, s3_client: Any) -> Iterator[str]:
    """A fresh, empty bucket on the moto server; the server forgets everything after."""
    name = f"t-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    conn = http.client.HTTPConnection(*s3_server[len("http://"):].split(":"), timeout=30)
    try:
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
    finally:
        conn.close()
