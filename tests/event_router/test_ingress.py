"""The webhook ingress over real HTTP: it stores MinIO webhook bodies on the events list, behind
its token, and the router turns them into jobs like any other event."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from rq import Queue

from embedded.redis_server import free_port
from event_router.ingress import create_ingress, serve_in_background
from event_router.router import Router
from event_router.settings import RouterSettings
from tests.conftest import INBOX_BUCKET, JOBS_BUCKET
from tests.helpers import wait_until
from transcribe_common import keys

TOKEN = "s3cr3t-token-for-tests"
PAYLOADS = Path(__file__).parent.parent / "fixtures" / "minio_events"
# MinIO's webhook target posts the namespace form: the event name, the bucket/key, and Records.
WEBHOOK_BODY = (
    '{"EventName":"s3:ObjectCreated:Put","Key":"transcribe-inbox/a+b.mp3","Records":'
    + (PAYLOADS / "put_inbox.json").read_text().split('"Event":', 1)[1].rsplit(',"EventTime"', 1)[0]
    + "}"
)


@pytest.fixture
def ingress(redis_conn: redis.Redis) -> Iterator[str]:
    port = free_port()
    with serve_in_background(create_ingress(redis_conn, TOKEN), "127.0.0.1", port) as server:
        wait_until(lambda: server.started, timeout=10)
        yield f"http://127.0.0.1:{port}"


def test_an_authorised_webhook_becomes_a_job(ingress: str, redis_conn: redis.Redis, s3_store) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(f"{ingress}/v1/events", content=WEBHOOK_BODY, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 204
    assert redis_conn.lrange(keys.EVENTS, 0, -1) == [WEBHOOK_BODY.encode()]

    router = Router(RouterSettings(minio_bucket=JOBS_BUCKET, minio_inbox_bucket=INBOX_BUCKET), redis_conn, s3_store)
    while router.run_once(timeout=0.05):
        pass
    assert len(Queue(keys.QUEUE, connection=redis_conn).job_ids) == 1


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, WEBHOOK_BODY, 401),
        ({"Authorization": "Bearer wrong-token-entirely"}, WEBHOOK_BODY, 403),
        ({"Authorization": TOKEN}, WEBHOOK_BODY, 403),  # the secret without its scheme
        ({"Authorization": f"Basic {TOKEN}"}, WEBHOOK_BODY, 403),
        ({"Authorization": f"Bearer {TOKEN}"}, "{not json", 400),
        ({"Authorization": f"Bearer {TOKEN}"}, '{"hello": "world"}', 400),
    ],
)
def test_unauthorised_or_malformed_bodies_are_refused(
    ingress: str, redis_conn: redis.Redis, headers: dict, body: str, status: int
) -> None:
    assert httpx.post(f"{ingress}/v1/events", content=body, headers=headers).status_code == status
    assert redis_conn.llen(keys.EVENTS) == 0


def test_a_placeholder_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="INGRESS_SECRET"):
        RouterSettings(ingress_port=8001, ingress_secret="changeme")
