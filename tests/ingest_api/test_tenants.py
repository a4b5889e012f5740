"""Keys are tenants (issue 15, finding 1): a job belongs to the key that submitted it, and every
route that names a job answers 404 to any other key; admins see every job; inbox drops belong to
INBOX_OWNER_KEY, or to admins only. Through the real app, a real Redis and the real router, which
records the owner from the manifest's creation event."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from event_router.router import Router
from event_router.settings import RouterSettings
from ingest_api.app import create_app
from ingest_api.settings import ApiSettings
from tests.helpers import SPEECH
from transcribe_common import keys, layout
from transcribe_common.models import JobStatus
from transcribe_common.store.base import put_bytes

ONE, TWO, ADMIN = "tenant-one-0123456789", "tenant-two-0123456789", "operator-0123456789ab"
PUBLIC_URL = "https://93.184.215.14/talk.mp3"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "buckets"


def make_client(redis_server: str, store_dir: Path, **settings: str) -> TestClient:
    config = ApiSettings(redis_url=redis_server, store_dir=store_dir, api_keys=f"{ONE},{TWO}", admin_api_keys=ADMIN)
    return TestClient(create_app(config.model_copy(update=settings)))


@pytest.fixture
def client(redis_conn: redis.Redis, redis_server: str, store_dir: Path) -> Iterator[TestClient]:
    with make_client(redis_server, store_dir) as client:
        yield client


def route(redis_conn: redis.Redis, client: TestClient) -> None:
    """The real router takes every event waiting, as it would in the stack."""
    services = client.app.state.services  # type: ignore[attr-defined]
    router = Router(RouterSettings(), redis_conn, services.store)
    while redis_conn.llen(keys.EVENTS):
        router.run_once(timeout=0.1)


def drop(client: TestClient, redis_conn: redis.Redis, store_dir: Path, key: str, fixture: str = "upload.mp3") -> str:
    """A file copied into the inbox folder as a person would, announced and routed: its job's id."""
    path = store_dir / "transcribe-inbox" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SPEECH / fixture, path)
    info = client.app.state.services.store.adopt("transcribe-inbox", key)  # type: ignore[attr-defined]
    route(redis_conn, client)
    return layout.inbox_job_id("transcribe-inbox", key, info.etag)


def submit(client: TestClient, key: str) -> str:
    response = client.post("/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL}, headers=bearer(key))
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def answers(client: TestClient, job_id: str, key: str) -> dict[str, int]:
    """What each route that names the job answers ``key``."""
    return {
        "get": client.get(f"/v1/jobs/{job_id}", headers=bearer(key)).status_code,
        "post": client.post(f"/v1/jobs/{job_id}", headers=bearer(key)).status_code,
        "result": client.get(f"/v1/jobs/{job_id}/result", headers=bearer(key)).status_code,
        "events": client.get(f"/v1/jobs/{job_id}/events", headers=bearer(key)).status_code,
        "input": client.get(f"/v1/jobs/{job_id}/input", headers=bearer(key)).status_code,
        "cancel": client.delete(f"/v1/jobs/{job_id}", headers=bearer(key)).status_code,
        "delete": client.delete(f"/v1/jobs/{job_id}?delete_objects=true", headers=bearer(key)).status_code,
    }


NOT_FOUND = {"get": 404, "post": 404, "result": 404, "events": 404, "input": 404, "cancel": 404, "delete": 404}


@pytest.mark.parametrize("routed", [False, True], ids=["before-routing", "routed"])
def test_another_key_cannot_read_cancel_or_delete_a_job(
    client: TestClient, redis_conn: redis.Redis, store_dir: Path, routed: bool
) -> None:
    job_id = submit(client, ONE)
    if routed:
        route(redis_conn, client)
        assert redis_conn.hget(keys.job(job_id), "owner") is not None
    assert answers(client, job_id, TWO) == NOT_FOUND
    denied = client.get(f"/v1/jobs/{job_id}", headers=bearer(TWO)).json()
    assert denied == {"detail": f"no job {job_id!r}"}  # the same words as for a job that does not exist
    view = client.get(f"/v1/jobs/{job_id}", headers=bearer(ONE)).json()
    assert view["status"] == "queued"  # nothing the other key did touched it
    assert (store_dir / "transcribe" / job_id / "manifest.json").exists()
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(ADMIN)).status_code == 200  # operators see all
    assert client.delete(f"/v1/jobs/{job_id}", headers=bearer(ONE)).json()["status"] == "cancelled"


def test_the_owner_is_kept_in_status_json_too(client: TestClient, redis_conn: redis.Redis) -> None:
    """Redis lost the job: its durable status still says whose it is."""
    job_id = submit(client, ONE)
    route(redis_conn, client)
    states = client.app.state.services.states  # type: ignore[attr-defined]
    states.advance(job_id, JobStatus.STARTED)
    redis_conn.delete(keys.job(job_id))
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(TWO)).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(ONE)).json()["status"] == "started"


def test_inbox_jobs_belong_to_admins_or_to_the_inbox_owner(
    client: TestClient, redis_conn: redis.Redis, redis_server: str, store_dir: Path
) -> None:
    job_id = drop(client, redis_conn, store_dir, "drop.mp3")
    assert redis_conn.hget(keys.job(job_id), "status") == b"queued"
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(ONE)).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(ADMIN)).status_code == 200
    with make_client(redis_server, store_dir, inbox_owner_key=ONE) as owned:
        assert owned.get(f"/v1/jobs/{job_id}", headers=bearer(ONE)).status_code == 200
        assert owned.get(f"/v1/jobs/{job_id}", headers=bearer(TWO)).status_code == 404


def test_an_inbox_drop_cannot_claim_an_owner_by_its_metadata(client: TestClient, redis_conn: redis.Redis) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    forged = put_bytes(
        services.store, "transcribe-inbox", "forged.mp3", (SPEECH / "upload.mp3").read_bytes(),
        content_type="audio/mpeg", metadata={"owner": "0123456789abcdef"},
    )  # fmt: skip
    route(redis_conn, client)
    job_id = layout.inbox_job_id("transcribe-inbox", "forged.mp3", forged.etag)
    assert redis_conn.hget(keys.job(job_id), "status") == b"queued"
    assert redis_conn.hget(keys.job(job_id), "owner") is None


def test_one_key_may_have_max_queued_per_key_jobs_open_and_no_more(
    redis_conn: redis.Redis, redis_server: str, store_dir: Path
) -> None:
    with make_client(redis_server, store_dir, max_queued_per_key=2) as client:
        first, second = submit(client, ONE), submit(client, ONE)
        route(redis_conn, client)
        third = client.post("/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL}, headers=bearer(ONE))
        assert third.status_code == 429
        assert third.headers["Retry-After"] == "30"
        assert "MAX_QUEUED_PER_KEY" in third.json()["detail"]
        submit(client, TWO)  # another tenant is not held up
        assert client.delete(f"/v1/jobs/{first}", headers=bearer(ONE)).status_code == 200
        submit(client, ONE)  # one ended: room for one more
        assert client.get(f"/v1/jobs/{second}", headers=bearer(ONE)).json()["status"] == "queued"
