"""Progress without polling (issue 18, item 2): ``GET /v1/jobs/{id}/events`` streams a job's
changes as Server-Sent Events, fed by Redis pub/sub, and ends with the job. On the real stack,
whose streams hear of changes only by pub/sub (``EVENTS_RECHECK`` is an hour there): a change that
is not published leaves its stream waiting, and the test times out."""

from __future__ import annotations

import itertools
import json

import httpx
from httpx_sse import connect_sse

from tests.conftest import Stack
from tests.helpers import SPEECH
from tests.test_pipeline import upload

ORDER = ["queued", "started", "finished"]


def events(stack: Stack, job_id: str) -> list[dict[str, object]]:
    """Every job event of the stream, read until the server ends it."""
    url = f"{stack.url}/v1/jobs/{job_id}/events"
    with httpx.Client(timeout=httpx.Timeout(30, read=120)) as client, connect_sse(client, "GET", url) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return [json.loads(sse.data) for sse in source.iter_sse() if sse.event == "job"]


def test_a_jobs_stream_tells_each_change_and_ends_with_the_job(stack: Stack) -> None:
    job_id = upload(stack, (SPEECH / "upload.mp3").read_bytes(), "meeting.mp3")
    seen = events(stack, job_id)
    statuses = [event["status"] for event in seen]
    assert statuses[-1] == "finished", statuses
    assert "started" in statuses  # heard while it ran, not only at its end
    assert statuses == sorted(statuses, key=ORDER.index)  # never backwards
    progress = [float(event["progress"]) for event in seen]  # type: ignore[arg-type]
    assert progress == sorted(progress)
    assert progress[-1] == 100.0
    assert all(a != b for a, b in itertools.pairwise(seen))  # only changes are sent
    last = seen[-1]
    assert (last["filename"], last["source"], last["language"]) == ("meeting.mp3", "upload", "en")
    assert last["started_at"] is not None
    assert last["finished_at"] is not None
    assert last["model"] == "tiny.en"
    result = httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", params={"format": "vtt"}, timeout=10)
    assert result.headers["content-disposition"] == 'inline; filename="meeting.vtt"'

    again = events(stack, job_id)  # a job that has ended: its state, once, and the stream ends
    assert [event["status"] for event in again] == ["finished"]


def test_a_stream_for_no_such_job_is_a_404_not_a_stream(stack: Stack) -> None:
    response = httpx.get(f"{stack.url}/v1/jobs/{'0' * 32}/events", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"detail": f"no job {'0' * 32!r}"}
