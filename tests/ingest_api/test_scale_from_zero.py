"""A fleet scaled from zero (KEDA, infra/k8s): with WORKERS_SCALE_FROM_ZERO and FLEET_MODELS, a
job naming one of those models is taken although no worker is alive, is queued on its model's
queue (where KEDA sees it and starts a worker), and MODEL_WAIT does not fail it while it waits.
Other models are still refused, and without the setting nothing changes. Through the real app,
a real Redis (db 10) and the real router."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import ValidationError
from rq import Queue

from event_router.router import Router
from event_router.settings import RouterSettings
from ingest_api.app import create_app
from ingest_api.settings import ApiSettings
from janitor.settings import JanitorSettings
from transcribe_common import jobqueue, keys
from transcribe_common.ending import Ending
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus
from transcribe_common.recovery import fail_unserved

PUBLIC_URL = "https://93.184.215.14/talk.mp3"
FLEET = {"workers_scale_from_zero": True, "fleet_models": "tiny.en, base"}


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    url = redis_server.rsplit("/", 1)[0] + "/10"
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    yield url
    conn.flushdb()
    conn.close()


@pytest.fixture
def conn(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def client_for(redis_url: str, store_dir: Path, **settings: object) -> TestClient:
    return TestClient(create_app(ApiSettings(redis_url=redis_url, store_dir=store_dir, **settings)))  # type: ignore[arg-type]


def submit(client: TestClient, model: str) -> tuple[int, dict]:
    response = client.post("/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL, "model": model})
    return response.status_code, response.json()


def route(conn: redis.Redis, client: TestClient) -> None:
    router = Router(RouterSettings(), conn, client.app.state.services.store)  # type: ignore[attr-defined]
    while conn.llen(keys.EVENTS):
        router.run_once(timeout=0.1)


def ending_for(conn: redis.Redis, client: TestClient, **settings: object) -> Ending:
    services = client.app.state.services  # type: ignore[attr-defined]
    janitor = JanitorSettings(_env_file=None, **settings)  # type: ignore[call-arg]
    return Ending(conn, JobStates(conn, services.store, janitor.minio_bucket), services.store, janitor)


def test_with_no_worker_alive_a_fleet_model_s_job_is_taken_and_waits(
    redis_url: str, conn: redis.Redis, tmp_path: Path
) -> None:
    with client_for(redis_url, tmp_path / "buckets", **FLEET) as client:
        assert client.get("/v1/stats").json()["workers"] == 0
        assert client.get("/v1/models").json()["models"] == ["base", "tiny.en"]
        status, body = submit(client, "base")
        assert status == 202, body
        job_id = body["job_id"]
        route(conn, client)
        # On the list KEDA's trigger reads: rq:queue:transcribe:base.
        assert Queue(keys.queue_for("base"), connection=conn).get_job_ids() == [job_id]
        assert conn.llen(Queue.redis_queue_namespace_prefix + keys.queue_for("base")) == 1
        ending = ending_for(conn, client, **FLEET)
        much_later = time.time() + 100 * ending.settings.model_wait
        assert fail_unserved(ending, now=much_later) == []
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == JobStatus.QUEUED.value
        assert Queue(keys.queue_for("base"), connection=conn).get_job_ids() == [job_id]


def test_a_model_outside_the_fleet_is_still_refused_and_failed(
    redis_url: str, conn: redis.Redis, tmp_path: Path
) -> None:
    with client_for(redis_url, tmp_path / "buckets", **FLEET) as client:
        status, body = submit(client, "large-v3")
        assert status == 422
        assert body["detail"] == "model: no live worker serves model 'large-v3'; served now: base, tiny.en"
        # Queued all the same (an inbox drop naming it, say): MODEL_WAIT fails it, and only it.
        status, body = submit(client, "tiny.en")
        assert status == 202
        waiting = body["job_id"]
        route(conn, client)
        jobqueue.enqueue(conn, waiting, "large-v3", client.app.state.services.settings)  # type: ignore[attr-defined]
        ending = ending_for(conn, client, **FLEET)
        assert fail_unserved(ending, now=time.time() + 2 * ending.settings.model_wait) == [waiting]
        assert client.get(f"/v1/jobs/{waiting}").json()["status"] == JobStatus.FAILED.value


def test_without_the_setting_a_job_for_a_model_no_worker_serves_is_refused_or_failed(
    redis_url: str, conn: redis.Redis, tmp_path: Path
) -> None:
    with client_for(redis_url, tmp_path / "buckets") as client:
        status, body = submit(client, "base")
        assert status == 422
        assert body["detail"] == "model: no live worker serves model 'base'; served now: none"
        assert client.get("/v1/models").json()["models"] == []
    with client_for(redis_url, tmp_path / "buckets", **FLEET) as client:
        status, body = submit(client, "base")  # taken by an API that knows the fleet scales...
        assert status == 202
        route(conn, client)
        ending = ending_for(conn, client)  # ...and failed by a janitor that does not know it
        assert fail_unserved(ending, now=time.time() + 2 * ending.settings.model_wait) == [body["job_id"]]


def test_scaling_from_zero_needs_the_fleet_s_models() -> None:
    with pytest.raises(ValidationError, match="WORKERS_SCALE_FROM_ZERO=true needs FLEET_MODELS"):
        ApiSettings(_env_file=None, workers_scale_from_zero=True)  # type: ignore[call-arg]
    assert ApiSettings(_env_file=None, fleet_models="base").scalable_models == []  # type: ignore[call-arg]
