"""The router fed MinIO's own payloads, byte for byte, with the S3 store on moto's server."""

from pathlib import Path

import pytest
import redis
from rq import Queue

from event_router.router import Router
from event_router.settings import RouterSettings
from tests.conftest import INBOX_BUCKET, JOBS_BUCKET
from transcribe_common import keys, layout
from transcribe_common.models import Manifest
from transcribe_common.store.base import get_json
from transcribe_common.store.s3 import S3Store

PAYLOADS = Path(__file__).parent.parent / "fixtures" / "minio_events"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


@pytest.fixture
def router(redis_conn: redis.Redis, s3_store: S3Store) -> Router:
    settings = RouterSettings(minio_bucket=JOBS_BUCKET, minio_inbox_bucket=INBOX_BUCKET)
    return Router(settings, redis_conn, s3_store)


def route(router: Router, conn: redis.Redis, *raw: bytes) -> list[str]:
    conn.rpush(keys.EVENTS, *raw)
    while router.run_once(timeout=0.05):
        pass
    assert conn.llen(keys.EVENTS_PROCESSING) == 0
    assert conn.llen(keys.EVENTS_DEAD) == 0
    return Queue(keys.QUEUE, connection=conn).job_ids


def test_a_put_with_escaped_key_and_metadata_becomes_one_job(
    router: Router, redis_conn: redis.Redis, s3_store: S3Store
) -> None:
    raw = payload("put_inbox.json")
    (job_id,) = route(router, redis_conn, raw, raw, raw)  # at-least-once delivery: duplicates

    key = "meetings/2026-11/weekly sync été.mp3"
    assert job_id == layout.inbox_job_id(INBOX_BUCKET, key, "8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")
    manifest = Manifest.model_validate(get_json(s3_store, JOBS_BUCKET, layout.manifest_key(job_id)))
    assert manifest.source.type == "object"
    assert (manifest.source.bucket, manifest.source.key) == (INBOX_BUCKET, key)
    assert (manifest.options.language, manifest.options.output) == ("id", ["vtt"])
    assert (manifest.db_id, str(manifest.callback_url)) == ("991", "https://hooks.example.org/done")


def test_a_multipart_upload_counts_as_a_new_object(router: Router, redis_conn: redis.Redis) -> None:
    (job_id,) = route(router, redis_conn, payload("multipart_inbox.json"))
    key = "lectures/physics 101/week 3.mp4"
    assert job_id == layout.inbox_job_id(INBOX_BUCKET, key, "a3c9e1f07b2d4e6a8c0e2f4a6b8d0e2f-12")


@pytest.mark.parametrize("name", ["copy_inbox.json", "tagging_inbox.json", "removed_inbox.json"])
def test_copies_tagging_and_removals_are_ignored(router: Router, redis_conn: redis.Redis, name: str) -> None:
    assert route(router, redis_conn, payload(name)) == []


def test_a_manifest_event_enqueues_its_job_once(router: Router, redis_conn: redis.Redis) -> None:
    raw = payload("manifest_jobs.json")
    assert route(router, redis_conn, raw, raw) == ["0f8e7d6c5b4a39281706f5e4d3c2b1a0"]
