"""The whole road, through the embedded stack started by its real entry point: submission,
router, worker on the real tiny.en model, results in the bucket, webhook to a real receiver."""

from __future__ import annotations

import hashlib
import io
import shutil
import time
from pathlib import Path

import httpx
import pytest
import redis
import srt
import webvtt

from tests.conftest import INBOX_BUCKET, Stack, running_stack
from tests.helpers import SPEECH, FileServer, Receiver, speech_text, wait_until, wer
from transcribe_common import keys, layout
from transcribe_common.events import access_record
from transcribe_common.store.base import put_bytes
from transcribe_common.store.local import LocalStore

FINISHED_FIELDS = {"job_id", "status", "language", "duration", "output", "minio_url", "db_id", "outputs", "warnings"}
FAILED_FIELDS = {"job_id", "status", "error", "db_id"}


def srt_text(body: str) -> str:
    subtitles = list(srt.parse(body))
    assert subtitles, "no cues"
    assert all(s.end > s.start for s in subtitles)
    return " ".join(s.content.replace("\n", " ") for s in subtitles)


def vtt_text(body: str) -> str:
    captions = list(webvtt.from_buffer(io.StringIO(body)))
    assert captions, "no cues"
    return " ".join(c.text.replace("\n", " ") for c in captions)


def upload(stack: Stack, data: bytes, filename: str, **fields: str) -> str:
    files = {"file": (filename, data, "application/octet-stream")}
    response = httpx.post(
        f"{stack.url}/v1/transcribe", data={"source_type": "upload", **fields}, files=files, timeout=30
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_upload_ends_in_a_webhook_and_a_valid_srt(stack: Stack, receiver: Receiver) -> None:
    data = (SPEECH / "upload.mp3").read_bytes()
    job_id = upload(stack, data, "upload.mp3", callback_url=f"{receiver.url}/hooks", db_id="row-17")

    call = receiver.wait_for(job_id)
    payload = call["json"]
    assert call["path"] == "/hooks"
    assert set(payload) == FINISHED_FIELDS, stack.log_tail()
    assert payload["status"] == "finished"
    assert payload["db_id"] == "row-17"
    assert payload["warnings"] == []  # clear English speech: nothing to say
    assert payload["output"] == "srt"
    assert payload["language"] == "en"
    assert payload["duration"] == pytest.approx(12.75, abs=0.2)

    body = httpx.get(payload["minio_url"], timeout=10)
    assert body.status_code == 200
    assert wer(speech_text("upload"), srt_text(body.text)) < 0.15

    vtt = httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", params={"format": "vtt"}, timeout=10)
    assert wer(speech_text("upload"), vtt_text(vtt.text)) < 0.15
    job = httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()
    assert (job["status"], job["progress"], job["language"]) == ("finished", 100.0, "en")


def test_url_source_is_fetched_and_transcribed(stack: Stack, receiver: Receiver, file_server: FileServer) -> None:
    request = {
        "source_type": "url",
        "url": f"{file_server.url}/url.wav",
        "language": "en",
        "output": "vtt",
        "callback_url": f"{receiver.url}/hooks",
        "db_id": 42,
    }
    response = httpx.post(f"{stack.url}/v1/transcribe", json=request, timeout=10)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert response.headers["location"] == f"/v1/jobs/{job_id}"

    payload = receiver.wait_for(job_id)["json"]
    assert (payload["status"], payload["output"], payload["db_id"]) == ("finished", "vtt", 42)
    body = httpx.get(payload["minio_url"], timeout=10).text
    assert wer(speech_text("url"), vtt_text(body)) < 0.15


def test_inbox_drop_gets_its_transcript_beside_it_once(stack: Stack, receiver: Receiver) -> None:
    key = "talks/my talk.mp4"
    target = stack.inbox / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SPEECH / "inbox.mp4", target)
    etag = hashlib.md5(target.read_bytes()).hexdigest()
    job_id = layout.inbox_job_id(INBOX_BUCKET, key, etag)

    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "finished", stack.log_tail()
    beside = stack.inbox / "talks" / "my talk.srt"
    assert wer(speech_text("inbox"), srt_text(beside.read_text())) < 0.15

    # MinIO delivers at least once: the same event again must not make a second job.
    conn = redis.Redis.from_url(stack.redis_url)
    record = access_record(INBOX_BUCKET, key, size=target.stat().st_size, etag=etag,
                           content_type="video/mp4", metadata={})  # fmt: skip
    before = httpx.get(f"{stack.url}/v1/stats").json()
    conn.rpush(keys.EVENTS, record, record)
    wait_until(lambda: conn.llen(keys.EVENTS) == 0 and conn.llen(keys.EVENTS_PROCESSING) == 0)
    time.sleep(1.0)
    assert len(receiver.for_job(job_id)) == 1
    assert httpx.get(f"{stack.url}/v1/stats").json() == before


def test_non_audio_file_fails_with_a_readable_error(stack: Stack, receiver: Receiver) -> None:
    job_id = upload(stack, b"these are meeting notes, not audio\n" * 20, "notes.mp3", db_id="n-1")

    payload = receiver.wait_for(job_id)["json"]
    assert set(payload) == FAILED_FIELDS
    assert payload["status"] == "failed"
    assert payload["db_id"] == "n-1"
    assert payload["error"].startswith("the input is not an audio or video file this service can read")
    job = httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()
    assert (job["status"], job["error"]) == ("failed", payload["error"])
    result = httpx.get(f"{stack.url}/v1/jobs/{job_id}/result")
    assert result.status_code == 409


def test_stats_follow_a_job_through_its_states(stack: Stack, receiver: Receiver) -> None:
    before = httpx.get(f"{stack.url}/v1/stats").json()
    job_id = upload(stack, (SPEECH / "upload.mp3").read_bytes(), "again.mp3")
    statuses: set[str] = set()
    most_started = 0
    with httpx.Client(base_url=stack.url) as client:
        while not statuses & {"finished", "failed"}:
            statuses.add(client.get(f"/v1/jobs/{job_id}").json()["status"])
            most_started = max(most_started, client.get("/v1/stats").json()["started"])
            time.sleep(0.02)
    assert "started" in statuses
    assert most_started == before["started"] + 1
    after = httpx.get(f"{stack.url}/v1/stats").json()
    assert after["finished"] == before["finished"] + 1
    assert (after["queued"], after["started"], after["failed"]) == (before["queued"], 0, before["failed"])
    assert after["workers"] == 2  # MAX_CONCURRENCY job slots of the one worker process
    receiver.wait_for(job_id)


def test_a_killed_router_is_restarted_and_loses_no_event(tmp_path: Path, redis_server: str, receiver: Receiver) -> None:
    """The router shares its process with the other services that hold no model (``embedded.light``):
    SIGKILL it, and a drop announced while it is down is routed once it is back. On a stack of its
    own: the killed webhook sender's RQ workers stay registered for RQ's worker TTL, and other tests
    count the shared stack's."""
    redis_url = redis_server.rsplit("/", 1)[0] + "/30"  # a database no other test uses
    with running_stack(tmp_path, redis_url, receiver) as stack:
        light = stack.service("event_router")
        light.kill()  # SIGKILL: no chance to clean up
        light.wait(10)
        conn = redis.Redis.from_url(stack.redis_url)
        store = LocalStore(stack.data / "buckets", notify=lambda record: conn.rpush(keys.EVENTS, record))
        clip = (SPEECH / "upload.mp3").read_bytes()
        put_bytes(store, INBOX_BUCKET, "while-router-down.mp3", clip, content_type="audio/mpeg")
        wait_until(lambda: (stack.inbox / "while-router-down.srt").is_file(), timeout=300)
        assert stack.service("event_router").pid != light.pid
        assert "light exited with -9" in stack.log_tail(100_000)  # the whole log: every service writes to it


def test_a_job_naming_a_served_model_runs_on_it(stack: Stack, receiver: Receiver) -> None:
    assert httpx.get(f"{stack.url}/v1/models").json() == {"models": ["base", "tiny.en"]}
    job_id = upload(stack, (SPEECH / "upload.mp3").read_bytes(), "named-model.mp3", model="tiny.en", output="json,srt")
    payload = receiver.wait_for(job_id)["json"]
    assert (payload["status"], payload["output"]) == ("finished", "json")
    assert set(payload["outputs"]) == {"json", "srt"}
    result = httpx.get(payload["minio_url"]).json()
    assert (result["model"], result["options"]["model"]) == ("tiny.en", "tiny.en")
