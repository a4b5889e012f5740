"""Liveness, readiness and metrics of the API, in process: readiness against a real Redis and
store, and against a Redis and an S3 endpoint where nothing listens."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from embedded.redis_server import free_port
from ingest_api.app import create_app
from ingest_api.settings import ApiSettings

KEY = "key-one-0123456789"


def _client(tmp_path: Path, redis_url: str, **settings: object) -> TestClient:
    return TestClient(create_app(ApiSettings(redis_url=redis_url, store_dir=tmp_path / "buckets", **settings)))


def test_ready_when_redis_and_the_store_answer(redis_conn, tmp_path: Path, redis_server: str) -> None:  # type: ignore[no-untyped-def]
    with _client(tmp_path, redis_server, api_keys=KEY) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")  # open, like /healthz: no API key
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"redis": "ok", "store": "ok"}}


def test_not_ready_names_what_does_not_answer(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    settings = {"store_backend": "s3", "minio_endpoint": nowhere, "minio_access_key": "a", "minio_secret_key": "b"}
    with _client(tmp_path, f"redis://{nowhere}/0", **settings) as client:
        assert client.get("/healthz").status_code == 200  # alive, though it cannot serve
        ready = client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not ready"
        assert body["checks"]["redis"].startswith("unavailable: ")
        assert body["checks"]["store"].startswith("unavailable: object store unreachable")


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_by_route_template(redis_conn, tmp_path: Path, redis_server: str) -> None:  # type: ignore[no-untyped-def]
    with _client(tmp_path, redis_server) as client:
        before = _samples(client)
        for job_id in ("a" * 32, "b" * 32):
            assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        after = _samples(client)
    labels = (("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "404"))
    counted = ("transcribe_api_requests_total", labels)
    assert after[counted] - before.get(counted, 0) == 2
    timed = ("transcribe_api_request_seconds_count", (("method", "GET"), ("route", "/v1/jobs/{job_id}")))
    assert after[timed] - before.get(timed, 0) == 2
    assert not any("a" * 32 in str(key) for key in after)  # job ids never become labels
