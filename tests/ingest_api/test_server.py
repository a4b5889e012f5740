"""The API's process as it is deployed (``transcribe-api``: uvicorn with ``ingest_api.server``),
on loopback, against clients that stop half way (issue 15, finding 10): headers not finished in
HEADER_TIMEOUT close the connection, a body that stops arriving for BODY_TIMEOUT is a 408. This
also pins the uvicorn internals the header deadline reads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from embedded.redis_server import free_port
from tests.helpers import wait_until


@pytest.fixture
def api(tmp_path: Path, redis_server: str) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server,
        "STORE_DIR": str(tmp_path / "buckets"),
        "API_PORT": str(port),
        "HEADER_TIMEOUT": "1",
        "BODY_TIMEOUT": "1",
        "LOG_FORMAT": "text",
    }
    process = subprocess.Popen([sys.executable, "-m", "ingest_api"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(port), timeout=60, interval=0.1)
        yield port
    finally:
        process.terminate()
        process.wait(30)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before it closed the connection, or None if it is still open."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    return received


def test_headers_that_never_finish_are_cut_off(api: int) -> None:
    with socket.create_connection(("127.0.0.1", api)) as sock:
        sock.sendall(b"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no end of headers
        started = time.monotonic()
        assert _closed_within(sock, 30) == b"", "the connection is still open"
        assert time.monotonic() - started < 30


def test_a_body_that_stops_arriving_is_408(api: int) -> None:
    with socket.create_connection(("127.0.0.1", api)) as sock:
        sock.sendall(
            b"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"source_type": '
        )
        answer = _closed_within(sock, 30)
        if answer is None:  # keep-alive: the answer came, the connection stays
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"the request body stopped arriving for 1 s" in answer
