"""Issue 31, finding 3 (a lock-out anyone could aim): after AUTH_FAILURES_MAX wrong keys, every
right key from the same address (both tenants, the admin, the OpenAI route) got 429 for a minute;
and uvicorn believed X-Forwarded-For from loopback, so a guesser could name any address to lock
out, or a new one per guess never to be throttled. On a real API process (uvicorn as
``transcribe-api`` runs it): wrong keys slow down only the connection's own address, and a right
key is never refused."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.ingest_api.api_process import api_process

ONE, TWO, ADMIN = "tenant-one-key-0123456789", "tenant-two-key-0123456789", "admin-key-0123456789abcdef"


def _as(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def test_wrong_keys_never_lock_out_a_right_key_and_a_forwarded_for_header_is_not_believed(
    tmp_path: Path, redis_server: str
) -> None:
    settings = {"API_KEYS": f"{ONE},{TWO}", "ADMIN_API_KEYS": ADMIN, "AUTH_FAILURES_MAX": "3"}
    with api_process(tmp_path, redis_server, **settings) as api, httpx.Client(base_url=api.url) as client:
        # A new X-Forwarded-For on every guess: still one address, this connection's.
        answers = [
            client.get("/v1/stats", headers=_as(f"guess-{n:016d}", **{"X-Forwarded-For": f"203.0.113.{n}"}))
            for n in range(6)
        ]
        assert [a.status_code for a in answers] == [403, 403, 403, 429, 429, 429]
        assert 0 < int(answers[-1].headers["Retry-After"]) <= 60
        for key in (ONE, TWO, ADMIN):
            assert client.get("/v1/stats", headers=_as(key)).status_code == 200
        openai = client.post("/v1/audio/transcriptions", headers=_as(ONE), data={"model": "whisper-1"})
        assert openai.status_code == 400, openai.text  # no file: looked at, not refused


def test_behind_a_named_proxy_its_forwarded_for_is_the_address(tmp_path: Path, redis_server: str) -> None:
    settings = {"API_KEYS": ONE, "AUTH_FAILURES_MAX": "2", "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with api_process(tmp_path, redis_server, **settings) as api, httpx.Client(base_url=api.url) as client:
        guesses = [
            client.get("/v1/stats", headers=_as("guess-0000000000000000", **{"X-Forwarded-For": "198.51.100.7"}))
            for _ in range(3)
        ]
        assert [g.status_code for g in guesses] == [403, 403, 429]
        other = client.get("/v1/stats", headers=_as("guess-0000000000000000", **{"X-Forwarded-For": "198.51.100.8"}))
        assert other.status_code == 403  # another client behind the proxy: not throttled for the first's guesses
