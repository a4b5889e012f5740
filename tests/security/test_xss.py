"""Issue 31, finding 1 (stored XSS): an upload whose file part declared ``audio/mpeg, text/html``
(or ``audio/mpeg,image/svg+xml`` with an SVG body) was served back by ``/v1/jobs/{id}/input`` as
that type, and headless Chromium ran its script in the API's own origin, where it read
``/v1/jobs``. Here Chromium opens each such input on the embedded stack: no script may run."""

from __future__ import annotations

import httpx
import pytest

from tests.browser import needs_chromium
from tests.conftest import Stack

pytestmark = needs_chromium

# Each payload tells on itself: it renames the page and asks for the job list.
SCRIPT = "document.title='ran'; fetch('/v1/jobs?from=xss')"
PAYLOADS = {
    "audio/mpeg, text/html": f"<html><body><script>{SCRIPT}</script></body></html>",
    "audio/mpeg,image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg"><script>{SCRIPT}</script></svg>',
    "text/html": f'<html><body><img src=x onerror="{SCRIPT}"></body></html>',
}


@pytest.mark.parametrize("declared", list(PAYLOADS))
def test_an_upload_declared_as_a_page_runs_no_script_when_opened(browser, stack: Stack, declared: str) -> None:  # type: ignore[no-untyped-def]
    files = {"file": ("talk.mp3", PAYLOADS[declared].encode(), declared)}
    response = httpx.post(f"{stack.url}/v1/transcribe", data={"source_type": "upload"}, files=files, timeout=30)
    assert response.status_code == 202, response.text
    url = f"{stack.url}/v1/jobs/{response.json()['job_id']}/input"
    context = browser.new_context(accept_downloads=True)
    try:
        page = context.new_page()
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        assert _title(page, url) != "ran"
        assert not [u for u in asked if "from=xss" in u], asked
        served = httpx.get(url)
        assert served.headers["content-type"] == "application/octet-stream"
        assert "sandbox" in served.headers["content-security-policy"]
    finally:
        context.close()


def _title(page, url: str) -> str:  # type: ignore[no-untyped-def]
    """The title of what Chromium shows at ``url``; empty when it downloads it instead."""
    from playwright.sync_api import Error

    try:
        page.goto(url, wait_until="load")
    except Error as exc:  # a download, not a page: nothing was rendered
        if "Download is starting" not in str(exc) and "ERR_ABORTED" not in str(exc):
            raise
        return ""
    return str(page.title())
