"""The API's process as it is deployed (``transcribe-api``: uvicorn with ``ingest_api.server``),
on loopback, against clients that stop half way (issue 15, finding 10): headers not finished in
HEADER_TIMEOUT close the connection, a body that stops arriving for BODY_TIMEOUT is a 408. This
also pins the uvicorn internals the header deadline reads."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from embedded.redis_server import free_port
from ingest_api import idempotency
from tests.helpers import SPEECH, wait_until
from transcribe_common import keys


@contextlib.contextmanager
def _serving(tmp_path: Path, redis_server: str, **settings: str) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server,
        "STORE_DIR": str(tmp_path / "buckets"),
        "API_PORT": str(port),
        "LOG_FORMAT": "text",
        **settings,
    }
    log = (tmp_path / "api.log").open("wb")  # its lines, for the tests that read them
    process = subprocess.Popen([sys.executable, "-m", "ingest_api"], env=env, stderr=log)
    try:
        wait_until(lambda: _answers(port), timeout=60, interval=0.1)
        yield port
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@pytest.fixture
def api(tmp_path: Path, redis_server: str) -> Iterator[int]:
    with _serving(tmp_path, redis_server, HEADER_TIMEOUT="1", BODY_TIMEOUT="1") as port:
        yield port


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


def test_headers_of_a_second_request_that_never_finish_are_cut_off(api: int) -> None:
    """Issue 31: on a kept-alive connection, uvicorn stops its keep-alive timer at the first byte
    of the next request, and the header deadline covered only the first."""
    with socket.create_connection(("127.0.0.1", api)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(30)
        answer = b""
        while not answer.endswith(b"}"):  # the whole answer, {"status":"ok"} last
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no end of headers
        assert _closed_within(sock, 30) == b"", "the connection is still open"


@pytest.mark.parametrize(
    ("content_type", "start"),
    [("application/json", b'{"source_type": '), ("multipart/form-data; boundary=b0undary", b"--b0undary\r\n")],
)
def test_a_client_that_goes_away_mid_body_is_no_server_error(
    api: int, tmp_path: Path, content_type: str, start: bytes
) -> None:
    """Issue 31: uvicorn logged each as "Exception in ASGI application", a traceback and a 500."""
    with socket.create_connection(("127.0.0.1", api)) as sock:
        sock.sendall(
            f"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: 1000\r\n\r\n".encode()
            + start
        )
    log = tmp_path / "api.log"
    wait_until(lambda: b"went away" in log.read_bytes() or b"ClientDisconnect" in log.read_bytes(), timeout=60)
    assert _answers(api)
    assert b"Traceback" not in log.read_bytes(), log.read_text()[-3000:]


@contextlib.contextmanager
def answered_early(api: int) -> Iterator[socket.socket]:
    """A connection whose upload the API answered before reading its body: 413, it declares 100 GB."""
    with socket.create_connection(("127.0.0.1", api)) as sock:
        sock.sendall(
            b"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: 100000000000\r\n\r\n"
        )
        sock.settimeout(30)
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
        yield sock


def test_a_body_still_arriving_after_an_early_answer_is_not_cut_off(api: int) -> None:
    """The header deadline waits for the next request's headers; a body the API answered before
    reading (413: larger than it takes) is still that request's, and is read on, not reset."""
    with answered_early(api) as sock:
        for _ in range(4):  # two HEADER_TIMEOUTs of body, a chunk each half second
            sock.sendall(b"x" * 1000)
            time.sleep(0.5)
        assert _closed_within(sock, 0.1) is None, "the connection was closed under the body"


def test_a_body_dripped_after_an_early_answer_is_read_for_a_while_only(api: int) -> None:
    """The fourth attack: a byte now and then kept an answered request's body, which nobody will
    read, coming for ever (up to its 100 GB). As nginx's lingering_time, it gets three deadlines."""
    with answered_early(api) as sock:
        started = time.monotonic()
        with contextlib.suppress(OSError):  # closed under the drip: a reset, a broken pipe
            while time.monotonic() - started < 60:
                sock.sendall(b"x")
                if _closed_within(sock, 0.5) is not None:
                    break
        assert time.monotonic() - started < 60, "still open after a minute of drip"


def test_a_body_that_stops_arriving_after_an_early_answer_is_cut_off(api: int) -> None:
    """The same early answer, then 100 KB of body (past what uvicorn reads ahead), then nothing:
    the connection was held for ever."""
    with answered_early(api) as sock:
        sock.settimeout(5)
        with contextlib.suppress(TimeoutError):  # the kernel's buffers take what the server does not read
            for _ in range(100):
                sock.sendall(b"x" * 1000)
        assert _closed_within(sock, 30) is not None, "the connection is still open"


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


def test_a_first_upload_still_arriving_keeps_its_idempotency_claim_alive(tmp_path: Path, redis_server: str) -> None:
    """While the first upload arrives, slowly, its request renews the claim's alive key: a repeat
    is 409 all along (it would take the claim over once the key expired), and once the upload is
    in, the repeat gets its job."""
    boundary = "b0undary"
    audio = (SPEECH / "upload.mp3").read_bytes()
    head = (
        f'--{boundary}\r\ncontent-disposition: form-data; name="source_type"\r\n\r\nupload\r\n'
        f'--{boundary}\r\ncontent-disposition: form-data; name="file"; filename="a.mp3"\r\n'
        "content-type: audio/mpeg\r\n\r\n"
    ).encode()
    body = head + audio + f"\r\n--{boundary}--\r\n".encode()
    conn = redis.Redis.from_url(redis_server)
    alive = keys.idempotency(hashlib.sha256(b"anonymous\nslow-1").hexdigest()) + ":alive"
    with _serving(tmp_path, redis_server) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST /v1/transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: slow-1\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(head) + 1000]
        )
        wait_until(lambda: conn.pttl(alive) > 0, timeout=60)  # claimed
        conn.pexpire(alive, int(idempotency.ALIVE_FOR * 1000 / 2))  # so that a renewal shows
        wait_until(lambda: conn.pttl(alive) > idempotency.ALIVE_FOR * 1000 / 2, timeout=10 * idempotency.ALIVE_FOR)

        def repeat() -> httpx.Response:
            files = {"file": ("a.mp3", audio, "audio/mpeg")}
            headers = {"Idempotency-Key": "slow-1"}
            url = f"http://127.0.0.1:{port}/v1/transcribe"
            return httpx.post(url, data={"source_type": "upload"}, files=files, headers=headers, timeout=60)

        assert (still := repeat()).status_code == 409, still.text
        sock.sendall(body[len(head) + 1000 :])
        sock.settimeout(60)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
        again = repeat()
        assert again.headers.get("idempotent-replayed") == "true", again.text
        assert again.json()["job_id"].encode() in answer
