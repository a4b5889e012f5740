"""Issue 31, finding 7 (event streams have no cap): 8,000 open ``/v1/jobs/{id}/events`` streams
left ``/v1/stats`` unanswered for 18 s and grew the API by 200 MB. On a real API process: streams
are capped per caller and in all (429), a slot comes back when its stream closes, and a stream
with nothing new to say ends after EVENTS_IDLE_SECONDS, for its client to reconnect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.helpers import wait_until
from tests.ingest_api.api_process import api_process

ONE, TWO = "tenant-one-key-0123456789", "tenant-two-key-0123456789"


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def stream(client: httpx.Client, job_id: str, key: str) -> Iterator[httpx.Response]:
    """A job's event stream, its first message read when it is one (a refusal is read whole)."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=_as(key)) as response:
        lines = response.iter_lines()  # kept while the stream is held: once dropped, it closes the stream
        if response.status_code == 200:
            assert next(lines) == "event: job"
        else:
            response.read()
        yield response


def test_event_streams_are_capped_per_caller_and_in_all(tmp_path: Path, redis_server: str) -> None:
    settings = {"API_KEYS": f"{ONE},{TWO}", "EVENTS_MAX_PER_CALLER": "3", "EVENTS_MAX_STREAMS": "5"}
    with api_process(tmp_path, redis_server, **settings) as api, httpx.Client(base_url=api.url, timeout=30) as client:
        body = {"source_type": "url", "url": "https://93.184.215.14/a.mp3"}
        jobs = {key: client.post("/v1/transcribe", json=body, headers=_as(key)).json()["job_id"] for key in (ONE, TWO)}
        with contextlib.ExitStack() as held:
            ones = [held.enter_context(stream(client, jobs[ONE], ONE)) for _ in range(3)]
            assert [r.status_code for r in ones] == [200, 200, 200]
            refused = held.enter_context(stream(client, jobs[ONE], ONE))
            assert refused.status_code == 429
            assert "EVENTS_MAX_PER_CALLER" in refused.json()["detail"]
            twos = [held.enter_context(stream(client, jobs[TWO], TWO)) for _ in range(3)]
            assert [r.status_code for r in twos] == [200, 200, 429]  # five in all
            assert "EVENTS_MAX_STREAMS" in twos[2].json()["detail"]
            assert client.get("/v1/stats", headers=_as(ONE)).status_code == 200

        def slot_back() -> bool:
            with stream(client, jobs[ONE], ONE) as again:
                return again.status_code == 200

        # Closed streams give their slots back once the API has seen them close: at once on an
        # idle machine, a moment later on a busy one. A refusal meanwhile holds no slot.
        wait_until(slot_back, timeout=60, interval=0.2)


def test_a_stream_with_nothing_new_ends_for_its_client_to_reconnect(tmp_path: Path, redis_server: str) -> None:
    with api_process(tmp_path, redis_server, EVENTS_IDLE_SECONDS="1") as api:
        with httpx.Client(base_url=api.url, timeout=httpx.Timeout(30, read=60)) as client:
            body = {"source_type": "url", "url": "https://93.184.215.14/a.mp3"}
            job_id = client.post("/v1/transcribe", json=body).json()["job_id"]
            with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
                lines = list(response.iter_lines())  # to its end: the job itself stays queued
        assert "event: job" in lines
