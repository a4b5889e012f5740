"""The edges through the embedded stack's real processes: what a worker may fetch, cancelling a
running job, the webhook's delivery log, and bad input of every kind. Each bad input ends in a 4xx
or a failed job with a readable error — never a 5xx or a job left hanging."""

from __future__ import annotations

import subprocess
import urllib.parse
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest

from tests.conftest import INBOX_BUCKET, Stack
from tests.gpu_worker.test_limits import submit_url
from tests.helpers import SPEECH, Receiver, TrickyServer, wait_until
from tests.test_pipeline import srt_text, upload


def _job(stack: Stack, job_id: str) -> dict:
    return httpx.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json()  # type: ignore[no-any-return]


def _failed_with(receiver: Receiver, job_id: str) -> str:
    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "failed", payload
    return str(payload["error"])


# --- What the worker may fetch -----------------------------------------------------------------


def test_a_redirect_to_a_refused_address_fails_the_job(
    stack: Stack, receiver: Receiver, tricky_server: TrickyServer
) -> None:
    """127.0.0.1 is allowed in the test stack; 127.0.0.2 is loopback too, and is not."""
    port = urllib.parse.urlsplit(tricky_server.url).port
    target = urllib.parse.quote(f"http://127.0.0.2:{port}/flaky/0/url.wav", safe="")
    job_id = submit_url(stack, f"{tricky_server.url}/redirect?to={target}")
    error = _failed_with(receiver, job_id)
    assert "127.0.0.2 is a loopback address" in error
    assert "URL_ALLOWLIST" in error


def test_a_redirect_to_another_scheme_fails_the_job(
    stack: Stack, receiver: Receiver, tricky_server: TrickyServer
) -> None:
    job_id = submit_url(stack, f"{tricky_server.url}/redirect?to=file%3A%2F%2F%2Fetc%2Fpasswd")
    assert "only http and https URLs are allowed, not 'file'" in _failed_with(receiver, job_id)


def test_an_allowed_redirect_is_followed(stack: Stack, receiver: Receiver, tricky_server: TrickyServer) -> None:
    target = urllib.parse.quote(f"{tricky_server.url}/flaky/0/url.wav", safe="")
    job_id = submit_url(stack, f"{tricky_server.url}/redirect?to={target}")
    assert receiver.wait_for(job_id)["json"]["status"] == "finished"


@pytest.mark.parametrize("path", ["/big", "/endless"])
def test_a_source_past_max_download_mb_fails(
    stack: Stack, receiver: Receiver, tricky_server: TrickyServer, path: str
) -> None:
    job_id = submit_url(stack, f"{tricky_server.url}{path}")
    assert _failed_with(receiver, job_id) == "the source is larger than MAX_DOWNLOAD_MB (1 MiB)"


# --- Cancel ------------------------------------------------------------------------------------


def test_a_running_job_is_deleted_and_its_worker_moves_on(
    stack: Stack, receiver: Receiver, tricky_server: TrickyServer
) -> None:
    job_id = submit_url(stack, f"{tricky_server.url}/slow")
    wait_until(lambda: _job(stack, job_id)["status"] == "started", timeout=30)
    assert (stack.data / "scratch" / job_id).exists()
    response = httpx.delete(f"{stack.url}/v1/jobs/{job_id}", params={"delete_objects": "true"})
    assert (response.status_code, response.json()["status"]) == (200, "deleted")
    # The worker stops it (CANCEL_POLL is 1 s), removes its scratch, and writes nothing more.
    wait_until(lambda: not (stack.data / "scratch" / job_id).exists(), timeout=15)
    after = upload(stack, (SPEECH / "upload.mp3").read_bytes(), "after-cancel.mp3")
    assert receiver.wait_for(after)["json"]["status"] == "finished"
    assert _job(stack, job_id)["status"] == "deleted"
    assert receiver.for_job(job_id) == []  # the canceller knows; no webhook
    assert not (stack.data / "buckets" / "transcribe" / job_id).exists()


# --- The webhook's delivery log -----------------------------------------------------------------


def test_each_webhook_attempt_is_shown_on_the_job(stack: Stack, receiver: Receiver) -> None:
    hook = receiver.script("/shaky", 503)
    job_id = upload(stack, (SPEECH / "upload.mp3").read_bytes(), "shaky.mp3", callback_url=hook)
    delivered = wait_until(lambda: (_job(stack, job_id).get("webhook") or {}).get("state") == "delivered", timeout=60)
    assert delivered
    webhook = _job(stack, job_id)["webhook"]
    assert [a["status_code"] for a in webhook["attempts"]] == [503, 204]
    assert webhook["attempts"][0]["error"] == "HTTP 503"
    calls = receiver.on_path("/shaky")
    assert [c["answered"] for c in calls] == [503, 204]
    assert all(c["verified"] for c in calls)
    assert {c["headers"]["webhook-id"] for c in calls} == {webhook["message_id"]}


# --- Bad input -----------------------------------------------------------------------------------


def _audio(tmp_path: Path, name: str, *args: str) -> bytes:
    path = tmp_path / name
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", *args, str(path)], check=True)
    return path.read_bytes()


def test_a_truncated_mp3_is_transcribed_as_far_as_it_goes(stack: Stack, receiver: Receiver) -> None:
    data = (SPEECH / "upload.mp3").read_bytes()
    job_id = upload(stack, data[: len(data) // 2], "cut.mp3", language="en")
    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "finished", payload
    assert 4 < payload["duration"] < 9
    text = httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", params={"format": "txt"}).text
    assert text.strip()


def test_a_file_of_silence_finishes_with_an_empty_transcript(stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    silence = _audio(tmp_path, "quiet.wav", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "20")
    job_id = upload(stack, silence, "quiet.wav", language="en")
    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "finished", payload
    assert httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", params={"format": "txt"}).text.strip() == ""
    assert httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", params={"format": "srt"}).text.strip() == ""


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("../../../etc/passwd.mp3", "passwd.mp3"),
        ("..\\..\\windows\\talk.mp3", "talk.mp3"),
        ("Grüße aus Köln — 日本語.mp3", "Grüße aus Köln _ 日本語.mp3"),
        ("....", "input"),
    ],
)
def test_upload_names_cannot_leave_the_jobs_folder(stack: Stack, receiver: Receiver, name: str, stored: str) -> None:
    job_id = upload(stack, (SPEECH / "upload.mp3").read_bytes(), name)
    assert receiver.wait_for(job_id)["json"]["status"] == "finished"
    inputs = [p.relative_to(stack.data / "buckets") for p in (stack.data / "buckets").rglob("input/*")]
    assert Path("transcribe", job_id, "input", stored) in inputs
    assert not (stack.data / "etc").exists()
    assert {p.parent.name for p in stack.data.rglob("passwd*")} <= {"input"}  # inside jobs' folders only


def test_a_unicode_inbox_drop_gets_its_transcript_beside_it(stack: Stack, receiver: Receiver) -> None:
    folder = stack.inbox / "Vorträge 2026"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Grüße — 日本.mp4").write_bytes((SPEECH / "inbox.mp4").read_bytes())
    beside = folder / "Grüße — 日本.srt"
    wait_until(beside.exists, timeout=90)
    assert srt_text(beside.read_text())
    assert INBOX_BUCKET in str(beside)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"source_type": "url", "url": "https://93.184.215.14/a.mp3", "language": "klingon"}, 422, "unknown language"),
        ({"source_type": "url", "url": "https://93.184.215.14/a.mp3", "output": "docx"}, 422, "output"),
        (
            {"source_type": "url", "url": "https://93.184.215.14/a.mp3", "callback_url": "javascript:alert(1)"},
            422,
            "callback_url",
        ),
        (
            {"source_type": "url", "url": "https://93.184.215.14/a.mp3", "callback_url": "http://10.0.0.1/"},
            422,
            "private",
        ),
        ({"source_type": "url", "url": "https://93.184.215.14/" + "a" * 100_000}, 413, "larger than"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_why(stack: Stack, body: dict, status: int, needle: str) -> None:
    response = httpx.post(f"{stack.url}/v1/transcribe", json=body, timeout=10)
    assert response.status_code == status
    assert needle in response.text


def test_an_empty_upload_is_refused_at_once(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.url}/v1/transcribe", data={"source_type": "upload"}, files={"file": ("empty.mp3", b"")}
    )
    assert (response.status_code, "empty" in response.text) == (422, True)
