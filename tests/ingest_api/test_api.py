"""The API's contract for bad input, in process on a real Redis and a local store, with no router
running, so that accepted jobs stay queued."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from ingest_api.settings import ApiSettings
from tests.helpers import SPEECH
from transcribe_common import fleet, keys


@pytest.fixture
def client(redis_conn, tmp_path: Path, redis_server: str) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = ApiSettings(redis_url=redis_server, store_dir=tmp_path / "buckets", max_upload_mb=1)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_url_job_is_accepted_and_announced_not_enqueued(client: TestClient, redis_conn) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/v1/transcribe", json={"source_type": "url", "url": "https://93.184.215.14/a.mp3"})
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    assert client.post(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    assert redis_conn.llen(keys.EVENTS) == 1  # the manifest's creation event, nothing enqueued
    assert redis_conn.llen(f"rq:queue:{keys.QUEUE}") == 0
    result = client.get(f"/v1/jobs/{job_id}/result")
    assert result.status_code == 409
    assert "queued" in result.json()["detail"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"source_type": "url"}, "'url' is required"),
        ({"source_type": "url", "url": "ftp://x/a.mp3"}, "URL scheme should be 'http' or 'https'"),
        ({"source_type": "url", "url": "https://x/a.mp3", "language": "xx"}, "unknown language code"),
        ({"source_type": "url", "url": "https://x/a.mp3", "output": "docx"}, "srt"),
        ({"source_type": "url", "url": "https://x/a.mp3", "output": [{}]}, "srt"),  # found by schemathesis
        ({"source_type": "url", "url": "https://x/a.mp3", "colour": "red"}, "colour: not a field of this request"),
        ({"source_type": "smoke", "url": "https://x/a.mp3"}, "source_type"),
        ({"source_type": "url", "url": "https://x/a.mp3", "callback_url": "not a url"}, "callback_url"),
    ],
)
def test_bad_json_gets_422_saying_what_is_wrong(client: TestClient, body: dict, needle: str) -> None:
    response = client.post("/v1/transcribe", json=body)
    assert response.status_code == 422
    assert needle in response.text


def test_bodies_that_are_not_jobs_get_4xx(client: TestClient) -> None:
    not_json = client.post("/v1/transcribe", content=b"{oops", headers={"content-type": "application/json"})
    assert (not_json.status_code, "not valid JSON" in not_json.text) == (422, True)
    wrong_type = client.post("/v1/transcribe", content=b"x", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 422
    garbled = client.post(  # found by schemathesis
        "/v1/transcribe",
        content=b"--b0\r\n[None]--b0--\r\n",
        headers={"content-type": "multipart/form-data; boundary=b0"},
    )
    assert (garbled.status_code, "multipart body is malformed" in garbled.text) == (422, True)
    upload_as_json = client.post("/v1/transcribe", json={"source_type": "upload"})
    assert upload_as_json.status_code == 422
    huge = client.post("/v1/transcribe", json={"source_type": "url", "url": "https://x/" + "a" * 70000})
    assert huge.status_code == 413


def test_upload_validation(client: TestClient, tmp_path: Path) -> None:
    audio = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    no_file = client.post("/v1/transcribe", data={"source_type": "upload"}, files={"x": ("", b"")})
    assert no_file.status_code == 422
    empty = client.post("/v1/transcribe", data={"source_type": "upload"}, files={"file": ("a.mp3", b"")})
    assert (empty.status_code, "empty" in empty.text) == (422, True)
    bad_field = client.post("/v1/transcribe", data={"source_type": "upload", "task": "summarise"}, files=audio)
    assert bad_field.status_code == 422
    too_big = client.post("/v1/transcribe", data={"source_type": "upload"}, files={"file": ("a.wav", b"0" * 2**21)})
    assert too_big.status_code == 413
    ok = client.post("/v1/transcribe", data={"source_type": "upload", "language": "en"}, files=audio)
    assert ok.status_code == 202
    inputs = list((tmp_path / "buckets" / "transcribe").glob("*/input/*"))
    assert [p.name for p in inputs] == ["a.mp3"]  # refused uploads left nothing behind


def test_unknown_jobs_are_404(client: TestClient) -> None:
    assert client.get("/v1/jobs/" + "0" * 32).status_code == 404
    assert client.get("/v1/jobs/../../etc/passwd").status_code == 404
    assert client.get("/v1/jobs/not-a-job/result").status_code == 404


def test_stats_have_the_five_fields_and_cancelled_and_deleted(client: TestClient) -> None:
    stats = {"queued": 0, "started": 0, "failed": 0, "finished": 0, "cancelled": 0, "deleted": 0, "workers": 0}
    assert client.get("/v1/stats").json() == stats


def test_a_model_no_live_worker_serves_is_refused(client: TestClient, redis_conn) -> None:  # type: ignore[no-untyped-def]
    body = {"source_type": "url", "url": "https://93.184.215.14/a.mp3", "model": "large-v3"}
    refused = client.post("/v1/transcribe", json=body)
    assert refused.status_code == 422
    assert refused.json()["detail"] == "model: no live worker serves model 'large-v3'; served now: none"
    fleet.advertise(redis_conn, worker_record("a", {"large-v3": True}, until=time.time() + 30))
    fleet.advertise(redis_conn, worker_record("b", {"base": True}, until=time.time() - 1))
    assert client.get("/v1/models").json() == {"models": ["large-v3"]}  # base's worker went quiet
    assert client.get("/v1/stats").json()["workers"] == 2  # the live worker's slots only
    assert client.post("/v1/transcribe", json=body).status_code == 202
    bad_name = client.post("/v1/transcribe", json=body | {"model": "../etc"})
    assert bad_name.status_code == 422


def worker_record(name: str, models: dict[str, bool], until: float, slots: int = 2) -> fleet.WorkerRecord:
    served = {model: fleet.ServedModel(multilingual=multilingual) for model, multilingual in models.items()}
    return fleet.WorkerRecord(name=name, host="h", pid=1, slots=slots, models=served, until=until)


def test_an_english_only_model_refuses_other_languages_and_translation(client: TestClient, redis_conn) -> None:  # type: ignore[no-untyped-def]
    fleet.advertise(redis_conn, worker_record("a", {"tiny.en": False, "base": True}, until=time.time() + 30))
    url = {"source_type": "url", "url": "https://93.184.215.14/a.mp3"}
    for asked, says in (({"language": "id"}, "transcribe language 'id'"), ({"task": "translate"}, "translate")):
        named = client.post("/v1/transcribe", json=url | asked | {"model": "tiny.en"})
        assert named.status_code == 422
        assert named.json()["detail"].startswith(f"model: 'tiny.en' is English-only and cannot {says}"), named.json()
        default = client.post("/v1/transcribe", json=url | asked)  # tiny.en is the worker's default
        assert default.status_code == 422
        assert "the default model 'tiny.en' is English-only" in default.json()["detail"]
        assert (named.json()["field"], default.json()["field"]) == ("model", next(iter(asked)))
        assert "(served now: base)" in default.json()["detail"]
        assert client.post("/v1/transcribe", json=url | asked | {"model": "base"}).status_code == 202
    assert client.post("/v1/transcribe", json=url | {"language": "en", "model": "tiny.en"}).status_code == 202
