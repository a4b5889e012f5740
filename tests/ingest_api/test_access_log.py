"""uvicorn's access lines on the API's real process: status reads (polled by the page, clients and
probes) stay off INFO, every other request keeps its INFO line (issue 18, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ingest_api.server import is_status_read
from tests.helpers import SPEECH, wait_until
from tests.ingest_api.api_process import ApiProcess, api_process

READS = [
    ("GET", "/v1/jobs/3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f"),
    ("POST", "/v1/jobs/3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f"),
    ("GET", "/v1/jobs?status=finished&limit=5"),
    ("GET", "/v1/jobs/3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f/events"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


def _access(api: ApiProcess) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in api.lines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "uvicorn.access"]


def _reads_and_a_post(api: ApiProcess) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as client:
        for method, path in READS:
            client.request(method, path)
        client.get("/v1/jobs/3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f/result")  # a download, not a status read
        files = {"file": ("upload.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
        assert client.post("/v1/transcribe", data={"source_type": "upload"}, files=files).status_code == 202
    # The POST was the last request: once its line is written, every line before it is too.
    wait_until(lambda: any('"POST /v1/transcribe ' in line["message"] for line in _access(api)), timeout=30)


def test_status_reads_stay_off_info_and_a_post_keeps_its_line(tmp_path: Path, redis_server: str) -> None:
    with api_process(tmp_path, redis_server, LOG_LEVEL="INFO") as api:
        _reads_and_a_post(api)
        access = _access(api)
    messages = [line["message"] for line in access]
    assert all(line["level"] == "INFO" for line in access), access
    for method, path in READS:
        assert not [m for m in messages if f'"{method} {path} ' in m], (method, path, messages)
    assert [m for m in messages if '"GET /v1/jobs/3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f/result ' in m], messages
    assert [m for m in messages if '"POST /v1/transcribe ' in m and m.endswith(" 202")], messages


def test_with_log_level_debug_the_status_reads_are_debug_lines(tmp_path: Path, redis_server: str) -> None:
    with api_process(tmp_path, redis_server, LOG_LEVEL="DEBUG") as api:
        _reads_and_a_post(api)
        access = _access(api)
    level = {line["message"].split('"')[1]: line["level"] for line in access}
    for method, path in READS:
        assert level[f"{method} {path} HTTP/1.1"] == "DEBUG", level
    assert level["POST /v1/transcribe HTTP/1.1"] == "INFO", level


@pytest.mark.parametrize(
    ("method", "path", "quiet"),
    [
        ("GET", "/v1/jobs", True),
        ("GET", "/v1/jobs/", True),
        ("HEAD", "/healthz", True),
        ("GET", "/v1/jobs/abc/result", False),
        ("GET", "/v1/jobs/abc/result?format=vtt", False),
        ("DELETE", "/v1/jobs/abc", False),
        ("POST", "/v1/jobs", False),
        ("POST", "/v1/transcribe", False),
        ("GET", "/v1/stats", False),
        ("GET", "/", False),
        ("GET", "/metrics/extra", False),
    ],
)
def test_what_counts_as_a_status_read(method: str, path: str, quiet: bool) -> None:
    assert is_status_read(method, path) is quiet
