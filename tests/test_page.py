"""The upload page in a real headless Chromium (Debian's ``chromium`` package, driven by
Playwright): a file dropped on it becomes a job, its progress shows, and the transcript downloads."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import srt

from tests.conftest import SPEECH, Stack
from tests.helpers import silence, speech_text, wer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; dev.py test does it as root)"
)
# As the machine notes say: no background networking (the machine has no network), no sandbox (root).
FLAGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DROP = """([name, b64, type]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type }));
    return data;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, chromium_sandbox=False)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack: Stack):  # type: ignore[no-untyped-def]
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(stack.url)
    page.allowed_errors = []
    yield page
    context.close()
    # No script error and no failed load (the page's CSP included), but those a test expects.
    assert [e for e in errors if e not in page.allowed_errors] == []


def drop(page, path: Path, name: str, mime: str) -> None:  # type: ignore[no-untyped-def]
    data = page.evaluate_handle(DROP, [name, base64.b64encode(path.read_bytes()).decode(), mime])
    page.dispatch_event("#drop", "dragover", {"dataTransfer": data})
    page.dispatch_event("#drop", "drop", {"dataTransfer": data})


def test_drop_a_file_watch_it_progress_and_download_the_srt(page, stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.evaluate(
        """() => { window.seen = [];
        new MutationObserver(() => { const c = document.querySelector('.job');
            if (c) window.seen.push([c.dataset.state, c.querySelector('progress').value]); })
          .observe(document.querySelector('#jobs'), { subtree: true, childList: true, attributes: true,
                                                      characterData: true }); }"""
    )
    drop(page, SPEECH / "upload.mp3", "upload.mp3", "audio/mpeg")
    card = page.locator(".job")
    assert card.locator(".name").text_content() == "upload.mp3"
    page.wait_for_selector(".job[data-state=finished]", timeout=90_000)
    assert card.locator(".state").text_content() == "finished · 100%"
    assert "language en" in card.locator(".detail").text_content()

    states = [state for state, _ in page.evaluate("window.seen")]
    assert states[0] == "uploading"
    assert "queued" in states or "started" in states  # the job's own states, as the API reported them
    values = [value for state, value in page.evaluate("window.seen") if state != "uploading"]
    assert values == sorted(values)  # the bar only moves forward

    with page.expect_download() as caught:
        card.get_by_role("button", name="SRT").click()
    download = caught.value
    assert download.suggested_filename == "upload.srt"
    target = tmp_path / "upload.srt"
    download.save_as(target)
    cues = list(srt.parse(target.read_text()))
    assert wer(speech_text("upload"), " ".join(cue.content for cue in cues)) < 0.2

    job_id = card.get_attribute("data-job-id")
    assert httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()["status"] == "finished"


def test_a_file_that_is_not_media_shows_the_jobs_error(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    notes = tmp_path / "notes.mp3"
    notes.write_text("not audio at all\n" * 50)
    drop(page, notes, "notes.mp3", "audio/mpeg")
    page.wait_for_selector(".job[data-state=failed]", timeout=60_000)
    assert "not an audio or video file" in page.locator(".job .detail").text_content()
    assert page.locator(".job .downloads").is_hidden()


def test_a_refused_upload_shows_the_servers_reason(page) -> None:  # type: ignore[no-untyped-def]
    page.allowed_errors.append(
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    )
    page.locator("details.options summary").click()
    page.fill("#language", "xx")
    page.set_input_files("#file", str(SPEECH / "upload.mp3"))  # the file picker, not a drop
    page.wait_for_selector(".job[data-state=failed]", timeout=30_000)
    assert "language" in page.locator(".job .detail").text_content()


def test_the_page_is_served_with_a_strict_content_security_policy(stack: Stack) -> None:
    response = httpx.get(f"{stack.url}/")
    assert response.status_code == 200
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert httpx.get(f"{stack.url}/static/app.js").status_code == 200


def test_a_transcript_with_warnings_shows_them(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Silence finishes, with the job's warning on its card (and the downloads, empty as they are)."""
    quiet = silence(tmp_path / "quiet.wav", 6, rate=16000)
    drop(page, quiet, "quiet.wav", "audio/wav")
    page.wait_for_selector(".job[data-state=finished]", timeout=90_000)
    warnings = page.locator(".job .warnings li")
    assert warnings.all_text_contents() == ["no speech was found in the audio: the transcript is empty"]
    assert page.locator(".job .warnings").is_visible()
    page.screenshot(path=str(tmp_path / "warnings.png"))
    assert page.locator(".job .downloads").is_visible()
