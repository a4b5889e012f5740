"""Jobs you can find (issue 18, item 1): ``GET /v1/jobs`` lists a caller's own jobs, newest first,
a page at a time, filtered; each job's status says what it is (its file, where it came from, when
it was made, started and ended, its model, options and db_id); its input plays with ranges, and
its result is named after it. Through the real app, a real Redis, the real router and the real
status script a worker moves jobs with."""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from tests.helpers import SPEECH
from tests.ingest_api.test_tenants import ADMIN, ONE, PUBLIC_URL, TWO, bearer, drop, make_client, route, submit
from transcribe_common import fleet, keys, layout
from transcribe_common.models import JobStatus
from transcribe_common.store.base import put_bytes

pytest_plugins = ["tests.ingest_api.test_tenants"]


def listed(client: TestClient, key: str, **query: object) -> list[str]:
    """Every job id the list gives ``key``, following the cursor page by page."""
    ids: list[str] = []
    cursor = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params, headers=bearer(key))
        assert page.status_code == 200, page.text
        ids += [job["job_id"] for job in page.json()["jobs"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids


def upload(client: TestClient, key: str, name: str = "meeting.mp3", **fields: str) -> str:
    with (SPEECH / "upload.mp3").open("rb") as audio:
        response = client.post(
            "/v1/transcribe",
            data={"source_type": "upload", **fields},
            files={"file": (name, audio, "audio/mpeg")},
            headers=bearer(key),
        )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_a_key_lists_its_own_jobs_newest_first_page_by_page(client: TestClient, redis_conn: redis.Redis) -> None:
    mine = [submit(client, ONE) for _ in range(5)]
    theirs = submit(client, TWO)
    route(redis_conn, client)
    first = client.get("/v1/jobs", params={"limit": 2}, headers=bearer(ONE)).json()
    assert [job["job_id"] for job in first["jobs"]] == mine[::-1][:2]
    assert first["next_cursor"] is not None
    assert listed(client, ONE, limit=2) == mine[::-1]  # every one, once, in order, across three pages
    assert listed(client, TWO) == [theirs]
    assert listed(client, ADMIN) == [theirs, *mine[::-1]]  # operators see every job


def test_the_inbox_owner_sees_inbox_drops_in_its_list(
    client: TestClient, redis_conn: redis.Redis, redis_server: str, store_dir: Path
) -> None:
    own = submit(client, ONE)
    dropped = drop(client, redis_conn, store_dir, "calls/drop.mp3")
    assert listed(client, ONE) == [own]  # the inbox belongs to no key by default
    with make_client(redis_server, store_dir, inbox_owner_key=ONE) as owned:
        assert listed(owned, ONE) == [dropped, own]
        assert listed(owned, TWO) == []
        view = owned.get("/v1/jobs", params={"source": "inbox"}, headers=bearer(ONE)).json()["jobs"][0]
    assert (view["job_id"], view["source"], view["filename"]) == (dropped, "inbox", "calls/drop.mp3")


def test_filters_by_status_source_db_id_model_and_time(client: TestClient, redis_conn: redis.Redis) -> None:
    worker = fleet.WorkerRecord(
        name="w1", host="here", pid=1, slots=1, models={"tiny.en": fleet.ServedModel()}, until=time.time() + 3600
    )
    fleet.advertise(redis_conn, worker)  # a live worker serves tiny.en: a job may ask for it
    by_url = submit(client, ONE)
    talk = upload(client, ONE, "talk.mp3", db_id="crm-7", model="tiny.en")
    route(redis_conn, client)
    between = datetime.now().astimezone()
    later = upload(client, ONE, "later.mp3")
    route(redis_conn, client)
    client.delete(f"/v1/jobs/{by_url}", headers=bearer(ONE))
    assert listed(client, ONE, status="cancelled") == [by_url]
    assert listed(client, ONE, status="queued") == [later, talk]
    assert listed(client, ONE, source="url") == [by_url]
    assert listed(client, ONE, source="upload") == [later, talk]
    assert listed(client, ONE, db_id="crm-7") == [talk]
    assert listed(client, ONE, model="tiny.en") == [talk]
    assert listed(client, ONE, since=between.isoformat()) == [later]
    assert listed(client, ONE, until=between.isoformat()) == [talk, by_url]
    assert listed(client, ONE, status="queued", limit=1) == [later, talk]
    client.delete(f"/v1/jobs/{later}?delete_objects=true", headers=bearer(ONE))
    assert listed(client, ONE) == [talk, by_url]  # a deleted job is left out, unless asked for
    assert listed(client, ONE, status="deleted") == [later]
    refused = client.get("/v1/jobs", params={"source": "fax"}, headers=bearer(ONE))
    assert refused.status_code == 422
    bad = client.get("/v1/jobs", params={"cursor": "not-one-of-ours"}, headers=bearer(ONE))
    assert bad.status_code == 422
    assert "next_cursor" in bad.json()["detail"]


def test_a_filter_that_matches_few_pages_on_through_many(client: TestClient, redis_conn: redis.Redis) -> None:
    """A page looks at a bounded number of jobs; past it, the cursor carries on, and every match
    comes, once."""
    wanted = submit(client, ONE)
    services = client.app.state.services  # type: ignore[attr-defined]
    route(redis_conn, client)
    made = float(redis_conn.zscore(keys.JOBS_CREATED, wanted))
    with redis_conn.pipeline() as pipe:  # 2,500 later jobs in the index, none of them matching
        for n in range(2500):
            job_id = f"{n:032x}"
            pipe.zadd(keys.JOBS_CREATED, {job_id: made + 1 + n / 1000})
            pipe.zadd(keys.jobs_of(services.states.read(wanted).owner), {job_id: made + 1 + n / 1000})
            pipe.hset(keys.job(job_id), mapping={"status": "finished", "owner": services.states.read(wanted).owner})
        pipe.execute()
    first = client.get("/v1/jobs", params={"status": "queued"}, headers=bearer(ONE)).json()
    assert first["jobs"] == []  # 2,000 looked at, none queued: an empty page that says go on
    assert first["next_cursor"] is not None
    assert listed(client, ONE, status="queued") == [wanted]


def test_a_job_gone_for_good_leaves_the_list(client: TestClient, redis_conn: redis.Redis, store_dir: Path) -> None:
    kept, gone = submit(client, ONE), submit(client, ONE)
    route(redis_conn, client)
    redis_conn.delete(keys.job(gone))
    shutil.rmtree(store_dir / "transcribe" / gone)
    assert listed(client, ONE) == [kept]
    assert redis_conn.zscore(keys.JOBS_CREATED, gone) is None
    assert redis_conn.zscore(keys.JOBS_CREATED, kept) is not None


def test_a_jobs_status_says_what_it_is_and_when_each_thing_happened(
    client: TestClient, redis_conn: redis.Redis
) -> None:
    job_id = upload(client, ONE, "Réunion du lundi.mp3", db_id="42", language="en", output="srt,json")
    view = client.get(f"/v1/jobs/{job_id}", headers=bearer(ONE)).json()
    assert (view["filename"], view["source"], view["db_id"]) == ("Réunion du lundi.mp3", "upload", "42")
    assert view["options"]["language"] == "en"
    assert view["options"]["output"] == ["srt", "json"]
    assert view["created_at"] is not None
    assert view["started_at"] is None
    assert view["model"] is None  # none asked for, none chosen yet
    route(redis_conn, client)
    states = client.app.state.services.states  # type: ignore[attr-defined]
    attempt = states.advance(job_id, JobStatus.STARTED).attempts
    states.note(job_id, attempt, model="tiny.en")
    started = client.get(f"/v1/jobs/{job_id}", headers=bearer(ONE)).json()
    assert started["started_at"] is not None
    assert started["model"] == "tiny.en"  # the model the worker chose
    services = client.app.state.services  # type: ignore[attr-defined]
    for fmt in ("srt", "json"):
        put_bytes(services.store, "transcribe", layout.result_key(job_id, fmt), b"1\n", content_type="text/plain")
    states.advance(job_id, JobStatus.FINISHED, attempt=attempt)
    ended = client.get(f"/v1/jobs/{job_id}", headers=bearer(ONE)).json()
    assert ended["created_at"] <= ended["started_at"] <= ended["finished_at"]
    result = client.get(f"/v1/jobs/{job_id}/result", params={"format": "json"}, headers=bearer(ONE))
    assert result.headers["content-disposition"] == (
        "inline; filename=\"R_union du lundi.json\"; filename*=UTF-8''R%C3%A9union%20du%20lundi.json"
    )
    url_job = submit(client, ONE)
    url_view = client.get(f"/v1/jobs/{url_job}", headers=bearer(ONE)).json()
    assert (url_view["source"], url_view["filename"]) == ("url", PUBLIC_URL)


def test_the_input_plays_with_ranges(client: TestClient) -> None:
    job_id = upload(client, ONE)
    whole = (SPEECH / "upload.mp3").read_bytes()
    full = client.get(f"/v1/jobs/{job_id}/input", headers=bearer(ONE))
    assert full.status_code == 200
    assert full.content == whole
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"].startswith("audio/")
    part = client.get(f"/v1/jobs/{job_id}/input", headers={**bearer(ONE), "Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == whole[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole)}"
    tail = client.get(f"/v1/jobs/{job_id}/input", headers={**bearer(ONE), "Range": "bytes=-10"})
    assert tail.content == whole[-10:]
    past = client.get(f"/v1/jobs/{job_id}/input", headers={**bearer(ONE), "Range": f"bytes={len(whole)}-"})
    assert past.status_code == 416
    url_job = submit(client, ONE)
    fetched = client.get(f"/v1/jobs/{url_job}/input", headers=bearer(ONE))
    assert fetched.status_code == 404
    assert "URL" in fetched.json()["detail"]
    client.delete(f"/v1/jobs/{job_id}?delete_objects=true", headers=bearer(ONE))
    assert client.get(f"/v1/jobs/{job_id}/input", headers=bearer(ONE)).status_code == 410


def test_a_deleted_job_whose_live_state_expired_is_gone_not_queued(client: TestClient, redis_conn: redis.Redis) -> None:
    """The review's finding: the API keeps manifests it has read, but whether a job exists is the
    store's to say. A deleted job whose live state expired is no job at all, not a queued one."""
    job_id = submit(client, ONE)
    route(redis_conn, client)
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(ONE)).status_code == 200  # its manifest is read
    client.delete(f"/v1/jobs/{job_id}?delete_objects=true", headers=bearer(ONE))
    redis_conn.delete(keys.job(job_id))  # STATE_TTL later
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(ONE)).status_code == 404
    assert listed(client, ONE) == []
    assert listed(client, ONE, status="queued") == []


def test_a_url_job_is_named_without_its_credentials_or_query(client: TestClient) -> None:
    url = "https://user:secret@93.184.215.14:8443/talks/keynote.mp3?X-Amz-Signature=abc"
    response = client.post("/v1/transcribe", json={"source_type": "url", "url": url}, headers=bearer(ONE))
    view = client.get(f"/v1/jobs/{response.json()['job_id']}", headers=bearer(ONE)).json()
    assert view["filename"] == "https://93.184.215.14:8443/talks/keynote.mp3"


@pytest.mark.parametrize(
    ("declared", "content", "served_as"),
    [
        ("text/html", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg"),  # the bytes say what it is
        ("audio/mpeg, text/html", b"<html><script>alert(1)</script></html>" * 10, "application/octet-stream"),
        ("audio/mpeg,image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>' * 9, None),
    ],
)
def test_the_input_is_served_as_what_its_bytes_are_and_never_as_a_page(
    client: TestClient, store_dir: Path, declared: str, content: bytes, served_as: str | None
) -> None:
    """Issue 31: an upload's declared type was served back as it was (browsers take a list's last
    type, so ``audio/mpeg, text/html`` was a page of this origin). Now only the bytes say, only
    media is served as itself, and the answer can neither run script nor be sniffed into a page."""
    response = client.post(
        "/v1/transcribe",
        data={"source_type": "upload"},
        files={"file": ("a.mp3", content, declared)},
        headers=bearer(ONE),
    )
    job_id = response.json()["job_id"]
    [stored] = [p for p in (store_dir / "transcribe").glob(f"{job_id}/input/*") if not p.name.startswith(".")]
    served = client.get(f"/v1/jobs/{job_id}/input", headers=bearer(ONE))
    assert served.content == content
    assert served.headers["content-type"] == (served_as or "application/octet-stream")
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-security-policy"] == "default-src 'none'; media-src 'self'; sandbox"
    assert served.headers["content-disposition"] == 'inline; filename="a.mp3"'
    assert served.headers["vary"] == "Authorization"
    assert stored.read_bytes() == content
    backwards = client.get(f"/v1/jobs/{job_id}/input", headers={**bearer(ONE), "Range": "bytes=5-3"})
    assert backwards.status_code == 200  # not a range (RFC 9110): the whole object
    assert len(backwards.content) == len(content)


def test_a_replaced_inbox_drop_is_not_played_as_the_old_jobs_input(
    client: TestClient, redis_conn: redis.Redis, redis_server: str, store_dir: Path
) -> None:
    job_id = drop(client, redis_conn, store_dir, "talk.mp3")
    assert client.get(f"/v1/jobs/{job_id}/input", headers=bearer(ADMIN)).status_code == 200
    drop(client, redis_conn, store_dir, "talk.mp3", "url.wav")  # the same name, other bytes: another job
    replaced = client.get(f"/v1/jobs/{job_id}/input", headers=bearer(ADMIN))
    assert replaced.status_code == 410
    assert "replaced by a newer drop" in replaced.json()["detail"]


def test_a_job_cancelled_before_it_was_routed_stays_on_its_owner_s_list(
    client: TestClient, redis_conn: redis.Redis
) -> None:
    """Issue 32, finding 5: the status script lists a job under its owner on its first move, and
    only the router's claim carried the owner and the time it was made; a job cancelled (or
    failed) first was listed under the inbox's, made "now": its owner no longer found it."""
    earlier = submit(client, ONE)
    route(redis_conn, client)
    job_id = submit(client, ONE)  # not routed yet: its first move is the cancel
    assert client.delete(f"/v1/jobs/{job_id}", headers=bearer(ONE)).status_code == 200
    assert listed(client, ONE, status="cancelled") == [job_id]
    assert listed(client, ONE) == [job_id, earlier]  # newest first: made after the earlier one
    assert job_id not in listed(client, TWO)
