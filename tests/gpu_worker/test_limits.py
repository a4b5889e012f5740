"""The worker's limits, through the embedded stack's real processes (MAX_AUDIO_SECONDS=600,
IO_BACKOFF=0.2; JOB_TIMEOUT=5 on a stack of its own): each ends in a failed job with a clear error
and a failure webhook, and the worker goes on to the next job; transient errors are retried."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from gpu_worker import fetch
from gpu_worker.fetch import FetchLimits, download_url
from tests.conftest import Stack
from tests.helpers import SPEECH, Receiver, TrickyServer
from tests.helpers import silence as make_silence
from tests.test_pipeline import upload
from transcribe_common.errors import PermanentError, RetryableError
from transcribe_common.netsafe import UrlPolicy


def submit_url(stack: Stack, url: str) -> str:
    response = httpx.post(f"{stack.url}/v1/transcribe", json={"source_type": "url", "url": url, "language": "en"})
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_a_source_that_fails_twice_is_retried_and_transcribed(
    stack: Stack, receiver: Receiver, tricky_server: TrickyServer
) -> None:
    job_id = submit_url(stack, f"{tricky_server.url}/flaky/2/url.wav")
    assert receiver.wait_for(job_id)["json"]["status"] == "finished"
    assert tricky_server.hits["/flaky/2/url.wav"] == 3


def test_a_missing_source_fails_at_once(stack: Stack, receiver: Receiver, tricky_server: TrickyServer) -> None:
    job_id = submit_url(stack, f"{tricky_server.url}/missing")
    payload = receiver.wait_for(job_id)["json"]
    assert (payload["status"], payload["error"]) == ("failed", "fetching the source URL failed: HTTP 404")
    assert tricky_server.hits["/missing"] == 1


def test_hours_of_audio_fail_fast(stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    silence = make_silence(tmp_path / "two-hours.flac", 7200)
    started = time.monotonic()
    job_id = upload(stack, silence.read_bytes(), "two-hours.flac")
    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "failed"
    assert "120.0 minutes long; MAX_AUDIO_SECONDS allows 600 s" in payload["error"]
    assert time.monotonic() - started < 60  # refused from the declared length: transcribing would take minutes


def test_a_job_past_job_timeout_fails_and_the_worker_goes_on(
    timeout_stack: Stack, receiver: Receiver, tricky_server: TrickyServer
) -> None:
    stack = timeout_stack
    slow = submit_url(stack, f"{tricky_server.url}/slow")
    payload = receiver.wait_for(slow, timeout=120)["json"]
    assert (payload["status"], payload["error"]) == ("failed", "the job ran longer than JOB_TIMEOUT (5 s)")
    job = httpx.get(f"{stack.url}/v1/jobs/{slow}").json()
    assert job["status"] == "failed"

    after = upload(stack, (SPEECH / "upload.mp3").read_bytes(), "after-timeout.mp3")
    assert receiver.wait_for(after)["json"]["status"] == "finished"
    assert not (stack.data / "scratch" / slow).exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", ["/slow", "/silent"], ids=["a-byte-every-half-second", "headers-then-silence"])
def test_download_max_seconds_holds_however_slowly_the_source_sends(
    tricky_server: TrickyServer, tmp_path: Path, path: str
) -> None:
    """A trickle, and a source that sends its headers and then nothing: DOWNLOAD_MAX_SECONDS (2 s
    here) ends both, though each read alone would wait DOWNLOAD_TIMEOUT (60 s)."""
    limits = FetchLimits(policy=UrlPolicy(["127.0.0.1"]), idle_timeout=60, max_seconds=2, max_bytes=2**30)
    started = time.monotonic()
    with pytest.raises(PermanentError, match=r"took longer than DOWNLOAD_MAX_SECONDS \(2 s\)"):
        download_url(f"{tricky_server.url}{path}", tmp_path / "source", limits)
    assert time.monotonic() - started < 40  # 2 s and the time to notice; far from the 60 s a read may wait


def test_a_source_url_that_refuses_the_connection_says_so_in_words() -> None:
    """Found by a new user: the job's error showed the socket's "[Errno 111]"; and a 5xx said
    "fetching the source URL: HTTP 501" where a 4xx said "... failed: HTTP 404"."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nobody listens there once it is closed
    with pytest.raises(httpx.ConnectError) as refused:
        httpx.get(f"http://127.0.0.1:{port}/a.mp3")
    assert str(fetch._translated(refused.value)) == "fetching the source URL failed: connection refused"
    with pytest.raises(RetryableError, match=r"^fetching the source URL failed: HTTP 503$"):
        fetch._check_response(httpx.Response(503), 1000)
