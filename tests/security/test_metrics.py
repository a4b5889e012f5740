"""Issue 31, finding 2 (metrics blinded without a key): requests with made-up HTTP methods each
added a series to the API's /metrics (20,000 of them grew it from 78 KB to 30 MB, and a scrape then
held the event loop for 8 s). Now no request adds a series: not its method, not its path."""

from __future__ import annotations

import re

import httpx

from tests.conftest import Stack


def _series(stack: Stack) -> list[str]:
    page = httpx.get(f"{stack.url}/metrics").text
    return [line for line in page.splitlines() if line.startswith("transcribe_api_requests_total{")]


def test_made_up_methods_and_paths_add_no_series(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url) as client:
        for n in range(200):
            client.request(f"X{n:04d}", f"/v1/jobs/{n:032x}")
            client.get(f"/no/such/path/{n}")
    series = _series(stack)
    methods = {re.search(r'method="([^"]*)"', line)[1] for line in series}  # type: ignore[index]
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    assert not [line for line in series if "/no/such/path" in line or "X0" in line]
    assert len(series) < 100, len(series)
