"""The production road on an S3 store: API, router and worker as real processes against moto's S3
server, events delivered in MinIO's format, results fetched through presigned links."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import srt
import webvtt

from embedded.redis_server import free_port
from tests.conftest import INBOX_BUCKET, JOBS_BUCKET, S3Server
from tests.helpers import SPEECH, WEBHOOK_SECRET, Receiver, speech_text, wait_until, wer
from tests.minio_notifier import MinioNotifier
from transcribe_common import layout
from transcribe_common.setup_store import SetupSettings
from transcribe_common.setup_store import run as setup_run
from transcribe_common.store.base import get_bytes, put_bytes
from transcribe_common.store.s3 import S3Store


@dataclass
class Production:
    url: str
    store: S3Store
    logs: Path

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("*.log")))


@pytest.fixture(scope="module")
def production(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, s3_server: S3Server, receiver: Receiver
) -> Iterator[Production]:
    logs = tmp_path_factory.mktemp("production")
    port = free_port()
    redis_url = redis_server.rsplit("/", 1)[0] + "/2"
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    env = {
        **os.environ,
        **s3_server.env(),
        "MINIO_BUCKET": "prod-jobs",
        "MINIO_INBOX_BUCKET": "prod-inbox",
        "REDIS_URL": redis_url,
        "MODEL_SIZE": "tiny.en",
        "WHISPER_CPU_THREADS": "2",
        "API_PORT": str(port),
        "SCRATCH_DIR": str(logs / "scratch"),
        "DEFAULT_CALLBACK_URL": f"{receiver.url}/default",
        "PRESIGN_EXPIRY": "900",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "URL_ALLOWLIST": "127.0.0.1",
    }
    setup_run(SetupSettings(_env_file=None, **{k.lower(): v for k, v in env.items() if k.startswith("MINIO_")}),
              notifications=False)  # fmt: skip  # moto refuses MinIO's ARN; the rules are played by the notifier
    store = s3_server.store()
    notifier = MinioNotifier(store, conn, {"jobs": "prod-jobs", "inbox": "prod-inbox"}).start()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            stdout=(logs / f"{module}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for module in ("ingest_api", "event_router", "gpu_worker", "webhook_sender")
    ]
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _workers(url) > 0, timeout=120, interval=0.2)
    yield Production(url, store, logs)
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)
    notifier.stop()


def _workers(url: str) -> int:
    try:
        return int(httpx.get(f"{url}/v1/stats", timeout=1).json()["workers"])
    except (httpx.HTTPError, ValueError, KeyError):
        return 0


def test_an_upload_runs_on_s3_and_links_a_presigned_result(production: Production, receiver: Receiver) -> None:
    files = {"file": ("meeting notes.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    data = {"source_type": "upload", "callback_url": f"{receiver.url}/prod", "db_id": "p-1"}
    response = httpx.post(f"{production.url}/v1/transcribe", data=data, files=files, timeout=30)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert production.store.stat("prod-jobs", f"{job_id}/input/meeting notes.mp3") is not None

    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "finished", production.log_tail()
    assert payload["db_id"] == "p-1"
    assert "X-Amz-Signature=" in payload["minio_url"]
    assert "X-Amz-Expires=900" in payload["minio_url"]
    body = httpx.get(payload["minio_url"]).text  # no credentials: the link is enough
    assert wer(speech_text("upload"), " ".join(s.content for s in srt.parse(body))) < 0.15
    assert production.store.stat("prod-jobs", layout.status_key(job_id)) is not None


def test_an_object_put_into_the_inbox_gets_its_transcript_beside_it(production: Production, receiver: Receiver) -> None:
    key = "uploads/2026/lecture one.mp4"
    meta = {"language": "en", "output": "vtt", "db-id": "lecture-1"}
    info = put_bytes(production.store, "prod-inbox", key, (SPEECH / "inbox.mp4").read_bytes(),
                     content_type="video/mp4", metadata=meta)  # fmt: skip
    job_id = layout.inbox_job_id("prod-inbox", key, info.etag)

    payload = receiver.wait_for(job_id)["json"]
    assert (payload["status"], payload["output"], payload["db_id"]) == ("finished", "vtt", "lecture-1")
    beside = get_bytes(production.store, "prod-inbox", "uploads/2026/lecture one.vtt").decode()
    captions = webvtt.from_buffer(io.StringIO(beside))
    assert wer(speech_text("inbox"), " ".join(c.text for c in captions)) < 0.15
    marker = production.store.stat("prod-inbox", "uploads/2026/lecture one.vtt")
    assert marker is not None
    assert marker.metadata[layout.OUTPUT_MARKER] == job_id


def test_setup_is_idempotent(s3_server: S3Server) -> None:
    settings = SetupSettings(
        _env_file=None,
        minio_endpoint=s3_server.endpoint,
        minio_access_key=s3_server.access_key,
        minio_secret_key=s3_server.secret_key,
        minio_bucket=JOBS_BUCKET + "-setup",
        minio_inbox_bucket=INBOX_BUCKET + "-setup",
    )
    setup_run(settings, notifications=False)
    setup_run(settings, notifications=False)
    names = {b.name for b in s3_server.store().client.list_buckets()}
    assert {JOBS_BUCKET + "-setup", INBOX_BUCKET + "-setup"} <= names
