"""The API's edges, in process on a real Redis and a local store (no router: accepted jobs stay
queued): API keys, URLs refused at submission, Idempotency-Key, and cancelling."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from ingest_api import idempotency
from ingest_api.app import create_app
from ingest_api.schemas import TranscribeRequest
from ingest_api.settings import ApiSettings
from tests.helpers import SPEECH
from transcribe_common import keys
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus
from transcribe_common.store.local import LocalStore

PUBLIC_URL = "https://93.184.215.14/talk.mp3"  # a public address: accepted, and never fetched here
KEYS = ("key-one-0123456789", "key-two-0123456789")


def _client(tmp_path: Path, redis_server: str, **settings: object) -> TestClient:
    return TestClient(create_app(ApiSettings(redis_url=redis_server, store_dir=tmp_path / "buckets", **settings)))


@pytest.fixture
def client(redis_conn, tmp_path: Path, redis_server: str) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with _client(tmp_path, redis_server) as client:
        yield client


@pytest.fixture
def keyed(redis_conn, tmp_path: Path, redis_server: str) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# rotated 2026-11\n{KEYS[1]}\n\n")
    with _client(tmp_path, redis_server, api_keys=KEYS[0], api_keys_file=key_file) as client:
        yield client


def _job(client: TestClient, headers: dict[str, str] | None = None, **body: object) -> str:
    response = client.post("/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL, **body}, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


# --- API keys ---------------------------------------------------------------------------------


def test_without_a_key_it_is_401_and_with_a_wrong_one_403(keyed: TestClient) -> None:
    missing = keyed.get("/v1/stats")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    wrong = keyed.get("/v1/stats", headers={"Authorization": "Bearer key-one-0123456780"})
    assert (wrong.status_code, wrong.json()["detail"]) == (403, "the API key is not valid")
    assert keyed.get("/v1/stats", headers={"Authorization": "Basic a2V5OnB3"}).status_code == 401
    submitted = keyed.post("/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL})
    assert submitted.status_code == 401


def test_keys_from_env_and_file_both_work_and_health_stays_open(keyed: TestClient) -> None:
    for key in KEYS:
        assert keyed.get("/v1/stats", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    job_id = _job(keyed, headers={"Authorization": f"Bearer {KEYS[1]}"})
    assert keyed.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEYS[1]}"}).status_code == 200
    # Each key is a tenant: another key's job is not there (tests/ingest_api/test_tenants.py).
    assert keyed.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEYS[0]}"}).status_code == 404
    assert keyed.get("/healthz").status_code == 200


# --- URLs refused at submission ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "url", "needle"),
    [
        ("url", "http://127.0.0.1:8000/a.mp3", "loopback"),
        ("url", "http://localhost/a.mp3", "loopback"),
        ("url", "http://169.254.169.254/latest/meta-data/", "link-local"),
        ("url", "http://[fd00:ec2::254]/latest/", "private"),
        ("url", "http://10.0.0.7/a.mp3", "private"),
        ("url", "http://192.168.1.1/a.mp3", "private"),
        ("url", "http://100.100.100.200/a.mp3", "carrier-grade NAT"),
        ("url", "http://224.0.0.251/a.mp3", "multicast"),
        ("url", "http://0x7f000001/a.mp3", "loopback"),
        ("url", "http://[::ffff:10.0.0.1]/a.mp3", "private"),
        ("url", "http://no-such-host.invalid/a.mp3", "does not resolve"),
        ("callback_url", "http://127.0.0.1:9/hook", "loopback"),
        ("callback_url", "http://172.16.0.1/hook", "private"),
    ],
)
def test_urls_the_workers_may_not_reach_are_refused_with_422(
    client: TestClient, field: str, url: str, needle: str
) -> None:
    response = client.post("/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL, field: url})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: ")
    assert needle in detail
    assert "URL_ALLOWLIST" in detail or "resolve" in detail


def test_a_bad_callback_on_an_upload_is_refused_and_leaves_nothing(client: TestClient, tmp_path: Path) -> None:
    audio = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    data = {"source_type": "upload", "callback_url": "http://10.1.1.1/hook"}
    response = client.post("/v1/transcribe", data=data, files=audio)
    assert response.status_code == 422
    assert "callback_url" in response.json()["detail"]
    assert list((tmp_path / "buckets").rglob("input/*")) == []


def test_the_allowlist_opens_chosen_networks(redis_conn, tmp_path: Path, redis_server: str) -> None:  # type: ignore[no-untyped-def]
    with _client(tmp_path, redis_server, url_allowlist="10.0.0.0/8, 127.0.0.1") as client:
        _job(client, url="http://10.0.0.7/a.mp3", callback_url="http://127.0.0.1:9/hook")
        refused = client.post("/v1/transcribe", json={"source_type": "url", "url": "http://192.168.0.2/a.mp3"})
        assert refused.status_code == 422


# --- Idempotency-Key --------------------------------------------------------------------------


def test_the_same_idempotency_key_returns_the_same_job(client: TestClient, redis_conn) -> None:  # type: ignore[no-untyped-def]
    headers = {"Idempotency-Key": "order-1234"}
    first = client.post("/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL}, headers=headers)
    again = client.post("/v1/transcribe", json={"url": PUBLIC_URL, "source_type": "url"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert redis_conn.llen(keys.EVENTS) == 1  # one manifest, one job
    other = client.post(
        "/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL}, headers={"Idempotency-Key": "order-1235"}
    )
    assert other.json()["job_id"] != first.json()["job_id"]


def test_a_key_reused_for_another_request_is_refused(client: TestClient) -> None:
    headers = {"Idempotency-Key": "order-77"}
    _job(client, headers=headers)
    changed = client.post(
        "/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL, "language": "de"}, headers=headers
    )
    assert changed.status_code == 422
    assert "different request" in changed.json()["detail"]


def test_a_refused_first_request_does_not_hold_its_key(client: TestClient) -> None:
    headers = {"Idempotency-Key": "retry-me"}
    bad = client.post("/v1/transcribe", json={"source_type": "url", "url": "http://10.0.0.1/a.mp3"}, headers=headers)
    assert bad.status_code == 422
    assert (
        client.post(
            "/v1/transcribe", json={"source_type": "url", "url": "http://10.0.0.1/b.mp3"}, headers=headers
        ).status_code
        == 422
    )
    _job(client, headers=headers)


def test_an_upload_repeated_with_its_key_is_not_stored_twice(client: TestClient, tmp_path: Path) -> None:
    audio = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    headers = {"Idempotency-Key": "upload-1"}
    first = client.post("/v1/transcribe", data={"source_type": "upload"}, files=audio, headers=headers)
    again = client.post("/v1/transcribe", data={"source_type": "upload"}, files=audio, headers=headers)
    assert first.json()["job_id"] == again.json()["job_id"]
    assert len(list((tmp_path / "buckets" / "transcribe").glob("*/input/*"))) == 1


def test_another_upload_under_the_same_key_is_refused_and_not_stored(client: TestClient, tmp_path: Path) -> None:
    """Without API keys every caller is the same one: only the body tells them apart (issue 15, 8)."""
    headers = {"Idempotency-Key": "shared-1"}
    audio = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    first = client.post("/v1/transcribe", data={"source_type": "upload"}, files=audio, headers=headers)
    assert first.status_code == 202
    junk = {"file": ("a.mp3", b"someone else's junk", "audio/mpeg")}
    other = client.post("/v1/transcribe", data={"source_type": "upload"}, files=junk, headers=headers)
    assert (other.status_code, other.json()["detail"]) == (
        422,
        "this Idempotency-Key was used for a different request; use a new key",
    )
    same_file_other_fields = client.post(
        "/v1/transcribe", data={"source_type": "upload", "language": "en"}, files=audio, headers=headers
    )
    assert same_file_other_fields.status_code == 422
    assert len(list((tmp_path / "buckets" / "transcribe").glob("*/input/*"))) == 1


def test_a_replay_while_the_first_upload_arrives_is_409(client: TestClient, redis_conn) -> None:  # type: ignore[no-untyped-def]
    idempotency.claim(redis_conn, "anonymous", "arriving", None, 60)  # a first upload still being received
    audio = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    again = client.post(
        "/v1/transcribe", data={"source_type": "upload"}, files=audio, headers={"Idempotency-Key": "arriving"}
    )
    assert again.status_code == 409
    assert "still being received" in again.json()["detail"]


def _claim_as_left(redis_conn, key: str, **changes: object) -> str:  # type: ignore[no-untyped-def]
    """Rewrite the claim of ``key`` (caller "anonymous") as a first request left it; its Redis key."""
    redis_key = keys.idempotency(hashlib.sha256(f"anonymous\n{key}".encode()).hexdigest())
    stored = json.loads(redis_conn.get(redis_key))
    redis_conn.set(redis_key, json.dumps(stored | changes), keepttl=True)
    return redis_key


@pytest.mark.parametrize("kind", ["url", "upload"])
def test_a_claim_left_by_a_first_request_that_died_is_taken_over(client: TestClient, redis_conn, kind: str) -> None:  # type: ignore[no-untyped-def]
    """A first request that died, or failed while Redis was away and so could not forget its claim,
    left a claim with no job. Once it is no longer alive (its alive key expired) the repeat starts
    afresh; before, an upload's repeat was 409 for IDEMPOTENCY_TTL, a URL's got the id of a job never
    made."""
    url_body = {"source_type": "url", "url": PUBLIC_URL}
    first = TranscribeRequest.model_validate(url_body).model_dump_json().encode() if kind == "url" else None
    idempotency.claim(redis_conn, "anonymous", "died", first and idempotency.fingerprint(first), 3600)
    headers = {"Idempotency-Key": "died"}
    audio = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}

    def repeat() -> httpx.Response:
        if kind == "url":
            return client.post("/v1/transcribe", json=url_body, headers=headers)
        return client.post("/v1/transcribe", data={"source_type": "upload"}, files=audio, headers=headers)

    still = repeat()  # just claimed: the first request is alive, and may be storing it still
    assert still.status_code == 409, still.text
    redis_conn.delete(_claim_as_left(redis_conn, "died") + ":alive")  # as it expires once its process died
    taken = repeat()
    assert taken.status_code == 202, taken.text
    assert "idempotent-replayed" not in taken.headers
    job_id = taken.json()["job_id"]
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    again = repeat()
    assert (again.status_code, again.json()["job_id"], again.headers["idempotent-replayed"]) == (202, job_id, "true")


def test_a_repeat_finds_the_job_when_redis_lost_its_fingerprint(client: TestClient, redis_conn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The upload was stored and its manifest written, then Redis was away for ``settle``: the
    manifest's fingerprint answers the repeat (before: 409 for IDEMPOTENCY_TTL)."""
    headers = {"Idempotency-Key": "unsettled"}
    audio = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    first = client.post("/v1/transcribe", data={"source_type": "upload"}, files=audio, headers=headers)
    assert first.status_code == 202, first.text
    _claim_as_left(redis_conn, "unsettled", fingerprint=None)
    again = client.post("/v1/transcribe", data={"source_type": "upload"}, files=audio, headers=headers)
    assert (again.status_code, again.json()["job_id"]) == (202, first.json()["job_id"])
    junk = {"file": ("a.mp3", b"another file", "audio/mpeg")}
    other = client.post("/v1/transcribe", data={"source_type": "upload"}, files=junk, headers=headers)
    assert other.status_code == 422, other.text
    assert len(list((tmp_path / "buckets" / "transcribe").glob("*/input/*"))) == 1


def test_a_replay_says_how_the_job_is_now(client: TestClient, redis_conn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user: a replay of a job that had failed said "queued", the first answer."""
    headers = {"Idempotency-Key": "now-1"}
    job_id = _job(client, headers=headers)
    states = JobStates(redis_conn, LocalStore(tmp_path / "buckets"), "transcribe")
    states.advance(job_id, JobStatus.FAILED, error="the input is not audio")
    again = client.post("/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL}, headers=headers)
    assert (again.status_code, again.json()["job_id"], again.json()["status"]) == (202, job_id, "failed")


def test_keys_are_per_caller(keyed: TestClient) -> None:
    one = _job(keyed, headers={"Authorization": f"Bearer {KEYS[0]}", "Idempotency-Key": "same"})
    two = _job(keyed, headers={"Authorization": f"Bearer {KEYS[1]}", "Idempotency-Key": "same"})
    assert one != two


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve".encode()])
def test_a_malformed_idempotency_key_is_422(client: TestClient, key: str | bytes) -> None:
    response = client.post(
        "/v1/transcribe", json={"source_type": "url", "url": PUBLIC_URL}, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 422


# --- Cancel -----------------------------------------------------------------------------------


# Every answer of DELETE /v1/jobs/{id}, as the README's table says: (state before, delete_objects)
# -> (HTTP status, state after). A job that ended cannot be cancelled, any job can be deleted once.
DELETE_ANSWERS = {
    ("queued", False): (200, "cancelled"),
    ("queued", True): (200, "deleted"),
    ("started", False): (200, "cancelled"),
    ("started", True): (200, "deleted"),
    ("finished", False): (409, "finished"),
    ("finished", True): (200, "deleted"),
    ("failed", False): (409, "failed"),
    ("failed", True): (200, "deleted"),
    ("cancelled", False): (409, "cancelled"),
    ("cancelled", True): (200, "deleted"),
    ("deleted", False): (410, "deleted"),
    ("deleted", True): (410, "deleted"),
}
ROAD = {"queued": ["queued"], "started": ["queued", "started"], "finished": ["queued", "started", "finished"]}
ROAD |= {"failed": ["failed"], "cancelled": ["cancelled"], "deleted": []}


@pytest.mark.parametrize(("before", "delete_objects"), DELETE_ANSWERS)
def test_every_delete_answer(client: TestClient, tmp_path: Path, before: str, delete_objects: bool) -> None:
    audio = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    job_id = client.post("/v1/transcribe", data={"source_type": "upload"}, files=audio).json()["job_id"]
    states = client.app.state.services.states  # type: ignore[attr-defined]
    for status in ROAD[before]:
        extra = {"outputs": json.dumps({"srt": f"{job_id}/result.srt"})} if status == "finished" else {}
        assert states.advance(job_id, JobStatus(status), **extra) is not None
    if before == "deleted":
        assert client.delete(f"/v1/jobs/{job_id}", params={"delete_objects": "true"}).status_code == 200
    folder = tmp_path / "buckets" / "transcribe" / job_id
    code, after = DELETE_ANSWERS[(before, delete_objects)]

    answer = client.delete(f"/v1/jobs/{job_id}", params={"delete_objects": str(delete_objects).lower()})

    assert answer.status_code == code, answer.text
    view = client.get(f"/v1/jobs/{job_id}").json()
    assert view["status"] == after
    if code == 200:
        assert answer.json() == view
    else:
        assert answer.json()["detail"].startswith(f"job {job_id} ")
    if after == "deleted":
        assert not list(folder.rglob("*")), "its objects are gone"
        assert view["links"]["result"] is None, "no link to what is gone"
        gone = client.get(f"/v1/jobs/{job_id}/result")
        assert gone.status_code == 410
        assert gone.json()["detail"] == f"job {job_id} was deleted, and its result with it"
        assert client.get("/v1/stats").json()["deleted"] == 1
    else:
        assert (folder / "manifest.json").exists(), "cancelling keeps the objects"
    if after == "cancelled":
        assert view["links"]["result"] is None
        assert client.get(f"/v1/jobs/{job_id}/result").status_code == 409


def test_cancelling_an_unknown_job_is_404(client: TestClient) -> None:
    assert client.delete("/v1/jobs/" + "0" * 32).status_code == 404
    assert client.delete("/v1/jobs/..%2F..%2Fetc").status_code == 404


# --- OpenAI-compatible endpoint: what needs no worker ---------------------------------------


def _openai(client: TestClient, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=api_key, http_client=client, max_retries=0)


def test_openai_clients_get_key_refusals_in_openais_shape(keyed: TestClient) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _openai(keyed, "wrong-key").audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"x"))
    assert (caught.value.status_code, caught.value.type, caught.value.code) == (
        403,
        "permission_error",
        "invalid_api_key",
    )
    assert caught.value.message.endswith(" - the API key is not valid")


def test_openai_request_waits_until_its_timeout_then_names_the_job(
    redis_conn, tmp_path: Path, redis_server: str
) -> None:  # type: ignore[no-untyped-def]
    """No router or worker here: the job stays queued, and the request gives up after
    OPENAI_WAIT_TIMEOUT with a 504 that names the job, which goes on."""
    with _client(tmp_path, redis_server, openai_wait_timeout=0.5) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            _openai(client, "any").audio.transcriptions.create(
                model="whisper-1", file=("talk.mp3", (SPEECH / "upload.mp3").read_bytes())
            )
        assert caught.value.status_code == 504
        job_id = caught.value.response.headers["x-job-id"]
        assert f"GET /v1/jobs/{job_id}" in caught.value.message
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


def test_openai_stream_is_refused_plainly(client: TestClient) -> None:
    response = client.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1", "stream": "true"}, files={"file": ("a.mp3", b"x")}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("stream: streaming transcriptions are not offered")


@pytest.mark.parametrize("setting", ["api_keys", "admin_api_keys"])
def test_a_short_api_key_is_refused_at_start(tmp_path: Path, redis_server: str, setting: str) -> None:
    with (
        pytest.raises(ValueError, match="shorter than 16 characters"),
        _client(tmp_path, redis_server, **{setting: "k2"}),
    ):
        pass


def test_repeated_wrong_keys_from_one_address_are_slowed_down_for_a_while(
    redis_conn,
    tmp_path: Path,
    redis_server: str,  # type: ignore[no-untyped-def]
) -> None:
    with _client(tmp_path, redis_server, api_keys=KEYS[0], auth_failures_max=3) as client:
        for n in range(3):
            wrong = client.get("/v1/stats", headers={"Authorization": f"Bearer wrong-guess-{n:010d}"})
            assert wrong.status_code == 403
        refused = client.get("/v1/stats", headers={"Authorization": "Bearer wrong-guess-0000000003"})
        assert refused.status_code == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        # Never a right key: else anyone could lock every tenant behind that address out (issue 31).
        assert client.get("/v1/stats", headers={"Authorization": f"Bearer {KEYS[0]}"}).status_code == 200
