"""The page in a real headless Chromium (Debian's ``chromium`` package, driven by Playwright), on the
real stack: files dropped or picked become jobs whose bars follow their event streams (or polling,
where a stream fails); the job list comes back after a reload, pages on with "More", cancels and
deletes; a finished job opens into its transcript beside a player of its own input, with cues that
seek and light up as it plays, search, copy, downloads named after the input, warnings and
speakers; and all of it with an API key too.

``PAGE_SCREENSHOTS=docs python3 dev.py test tests/test_page.py`` writes the README's screenshots
into docs/ (elsewhere they go to the test's own temporary folder)."""

from __future__ import annotations

import base64
import json
import os
import re
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import srt

from tests.browser import needs_chromium
from tests.conftest import SPEECH, TENANT_ONE, Stack
from tests.helpers import FileServer, GatedServer, silence, speech_text, wait_until, wer

pytestmark = needs_chromium
DROP = """([files]) => {
    const data = new DataTransfer();
    for (const [name, b64, type] of files) {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        data.items.add(new File([bytes], name, { type }));
    }
    return data;
}"""
FORMATS = ("srt", "vtt", "txt", "tsv", "json")
KEY = TENANT_ONE
SHOTS = os.environ.get("PAGE_SCREENSHOTS")
FAILED_LOAD = "Failed to load resource: net::ERR_FAILED"
JOB_TIMEOUT = 120_000  # ms: ten times what tiny.en takes for these fixtures on a busy machine


def open_page(browser, url: str, **context_options: object):  # type: ignore[no-untyped-def]
    """A fresh context (no stored key) on the page; ``page.errors`` collects script errors and
    failed loads (the CSP's included), which the fixture refuses but for ``page.allowed_errors``."""
    context = browser.new_context(accept_downloads=True, **context_options)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.allowed_errors = []
    page.goto(url)
    return page


@pytest.fixture
def page(browser, stack: Stack):  # type: ignore[no-untyped-def]
    page = open_page(browser, stack.url)
    yield page
    page.context.close()
    assert [e for e in page.errors if e not in page.allowed_errors] == []


def shot(page, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    folder = Path(SHOTS) if SHOTS else tmp_path
    page.mouse.move(0, 0)  # no hover in the picture
    page.screenshot(path=str(folder / f"page-{name}.png"))


def drop(page, *files: tuple[Path, str, str]) -> None:  # type: ignore[no-untyped-def]
    encoded = [[name, base64.b64encode(path.read_bytes()).decode(), mime] for path, name, mime in files]
    data = page.evaluate_handle(DROP, [encoded])
    page.dispatch_event("#drop", "dragover", {"dataTransfer": data})
    page.dispatch_event("#drop", "drop", {"dataTransfer": data})


def submit(stack: Stack, path: Path, name: str, key: str | None = None, **fields: str) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    files = {"file": (name, path.read_bytes(), "application/octet-stream")}
    response = httpx.post(
        f"{stack.url}/v1/transcribe", data={"source_type": "upload", **fields}, files=files, headers=headers, timeout=30
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def job(stack: Stack, job_id: str, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return dict(httpx.get(f"{stack.url}/v1/jobs/{job_id}", headers=headers).json())


def finished(stack: Stack, job_id: str, key: str | None = None) -> dict:
    wait_until(lambda: job(stack, job_id, key)["status"] in ("finished", "failed"), timeout=JOB_TIMEOUT / 1000)
    view = job(stack, job_id, key)
    assert view["status"] == "finished", view
    return view


def transcript(stack: Stack, job_id: str, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return dict(httpx.get(f"{stack.url}/v1/jobs/{job_id}/result?format=json", headers=headers).json())


def row(page, job_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'.job[data-job-id="{job_id}"]')


def newest(page, state: str = "") -> str:  # type: ignore[no-untyped-def]
    """The selector of the list's first row (a file just dropped), in ``state`` if given."""
    return f"#jobs > .job:first-child{f'[data-state={state}]' if state else ''}"


def open_job(page, stack: Stack, job_id: str) -> None:  # type: ignore[no-untyped-def]
    """The transcript of ``job_id``, opened from the page's address (the job may be past the
    list's first page)."""
    page.goto(f"{stack.url}/#job={job_id}")
    page.wait_for_selector(f'#viewer[data-state=ready][data-job-id="{job_id}"]')


def media_loaded(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("() => document.querySelector('#player').readyState >= 1", timeout=30_000)


@pytest.fixture(scope="module")
def meeting(stack: Stack) -> str:
    """A finished job with several cues (the stereo call, as one channel), uploaded as meeting.mp3."""
    job_id = submit(stack, SPEECH / "call.mp3", "meeting.mp3")
    finished(stack, job_id)
    return job_id


# ---- Submitting and following ----


def test_drop_a_file_watch_it_progress_from_the_stream_and_read_it(page, stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url.removeprefix(stack.url)))
    # The list's rows from earlier tests are on the page first: only the row the drop adds is watched.
    page.wait_for_selector("#jobs[data-state=loaded]", state="attached")
    page.evaluate(
        """() => { window.seen = []; const before = new Set(document.querySelectorAll('#jobs > .job'));
        new MutationObserver(() => { const c = document.querySelector('#jobs > .job');
            if (c && !before.has(c)) window.seen.push([c.dataset.state, c.querySelector('progress').value]); })
          .observe(document.querySelector('#jobs'), { subtree: true, childList: true, attributes: true,
                                                      characterData: true }); }"""
    )
    drop(page, (SPEECH / "upload.mp3", "upload.mp3", "audio/mpeg"))
    card = page.locator(newest(page))
    assert card.locator(".name").text_content() == "upload.mp3"
    page.wait_for_selector(newest(page, "finished"), timeout=JOB_TIMEOUT)
    assert card.locator(".state").text_content() == "finished · 100%"
    assert "language en" in card.locator(".detail").text_content()
    assert "of audio" in card.locator(".length").text_content()

    states = [state for state, _ in page.evaluate("window.seen")]
    assert states[0] == "uploading"
    assert "queued" in states or "started" in states  # the job's own states, as the API reported them
    values = [value for state, value in page.evaluate("window.seen") if state != "uploading"]
    assert values == sorted(values)  # the bar only moves forward

    job_id = card.get_attribute("data-job-id")
    assert f"/v1/jobs/{job_id}/events" in asked
    assert f"/v1/jobs/{job_id}" not in asked  # the stream said it all: no polling
    assert job(stack, job_id)["status"] == "finished"

    # A job submitted here opens by itself when it is done.
    page.wait_for_selector("#viewer[data-state=ready]")
    cues = page.locator("#cues .cue .text").all_text_contents()
    assert wer(speech_text("upload"), " ".join(cues)) < 0.2
    with page.expect_download() as caught:
        page.locator("#viewer").get_by_role("button", name="SRT").click()
    assert caught.value.suggested_filename == "upload.srt"
    target = tmp_path / "upload.srt"
    caught.value.save_as(target)
    said = " ".join(cue.content for cue in srt.parse(target.read_text()))
    assert said.split() == " ".join(cues).split()  # the same words, cut into captions their own way


def test_where_the_stream_fails_the_bar_follows_by_polling(page, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    page.allowed_errors.append(FAILED_LOAD)
    page.route("**/v1/jobs/*/events", lambda route: route.abort())
    polled: list[str] = []
    page.on("request", lambda request: polled.append(request.url.removeprefix(stack.url)))
    drop(page, (SPEECH / "url.wav", "polled.wav", "audio/wav"))
    page.wait_for_selector(newest(page, "finished"), timeout=JOB_TIMEOUT)
    job_id = page.locator(newest(page)).get_attribute("data-job-id")
    assert f"/v1/jobs/{job_id}" in polled
    assert page.locator(newest(page)).locator("progress").evaluate("bar => bar.value") == 100


def test_several_files_from_the_picker(page, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#jobs[data-state=loaded]", state="attached")
    page.focus("#drop")  # from the keyboard: Enter on the drop box opens the picker
    page.on("filechooser", lambda _: None)  # intercepted from now on (a key press outruns expect_file_chooser)
    page.evaluate("() => 0")  # a round trip: the interception is on before the key goes
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()
    chooser.value.set_files([str(SPEECH / "upload.mp3"), str(SPEECH / "url.wav")])
    two = "[...document.querySelectorAll('#jobs > .job')].slice(0, 2)"
    page.wait_for_function(f"() => {two}.every(r => r.dataset.state === 'finished')", timeout=JOB_TIMEOUT)
    names = page.locator("#jobs > .job .name").all_text_contents()[:2]
    assert sorted(names) == ["upload.mp3", "url.wav"]
    for job_id in page.evaluate(f"() => {two}.map(r => r.dataset.jobId)"):
        assert job(stack, job_id)["status"] == "finished"


def test_a_file_that_is_not_media_shows_the_jobs_error(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    notes = tmp_path / "notes.mp3"
    notes.write_text("not audio at all\n" * 50)
    drop(page, (notes, "notes.mp3", "audio/mpeg"))
    page.wait_for_selector(newest(page, "failed"), timeout=60_000)
    assert "not an audio or video file" in page.locator(newest(page)).locator(".detail").text_content()
    assert page.locator(newest(page)).locator(".name").is_disabled()  # nothing to open
    assert page.locator("#viewer").is_hidden()


def test_a_refused_upload_shows_the_servers_reason(page) -> None:  # type: ignore[no-untyped-def]
    page.allowed_errors.append(
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    )
    page.locator("details.options summary").click()
    page.fill("#language", "xx")
    page.set_input_files("#file", str(SPEECH / "upload.mp3"))
    page.wait_for_selector(newest(page, "failed"), timeout=30_000)
    assert "language" in page.locator(newest(page)).locator(".detail").text_content()


def test_the_page_is_served_with_a_strict_content_security_policy(stack: Stack) -> None:
    response = httpx.get(f"{stack.url}/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "connect-src 'self';" in policy
    assert "media-src 'self' blob: http: https:;" in policy  # a URL job plays from its URL; a keyed input from a blob
    for name in ("app.js", "eventstream.js", "app.css"):
        assert httpx.get(f"{stack.url}/static/{name}").status_code == 200


def test_the_event_stream_parser_reads_the_standards_format(page) -> None:  # type: ignore[no-untyped-def]
    """Chunks cut anywhere, CRLF split across two, comments, multi-line data, a BOM, an unnamed
    message, and a message the stream's end cuts short (dropped)."""
    stream = (
        '\ufeff: ping\r\nevent: job\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: plain\n\nevent: job\rdata:x\r\rdata: cut'
    )
    for size in (1, 2, 3, 7, len(stream)):
        got = page.evaluate(
            """([stream, size]) => { const seen = [];
                const parser = EventStream.createParser((m) => seen.push([m.event, m.data]));
                for (let i = 0; i < stream.length; i += size) parser.feed(stream.slice(i, i + size));
                return seen; }""",
            [stream, size],
        )
        assert got == [["job", '{"a":\n1}'], ["message", "plain"], ["job", "x"]], size


# ---- The job list ----


def test_files_dropped_together_keep_their_order_after_a_reload(page, stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 34, finding 7: files submitted together came back in another order after a reload
    (job ids ordered by the second only, the rest at random)."""
    page.wait_for_selector("#jobs[data-state=loaded]", state="attached")
    files = []
    for n in range(4):
        files.append(tmp_path / f"part-{n}.wav")
        files[-1].write_bytes((SPEECH / "url.wav").read_bytes())
    page.set_input_files("#file", [str(f) for f in files])
    four = "[...document.querySelectorAll('#jobs > .job')].slice(0, 4)"
    page.wait_for_function(f"() => {four}.every(r => r.dataset.jobId)", timeout=JOB_TIMEOUT)
    shown = page.evaluate(f"() => {four}.map(r => r.dataset.jobId)")
    assert shown == sorted(shown, reverse=True)  # newest first, as the API lists them
    page.reload()
    page.wait_for_selector("#jobs[data-state=loaded]", state="attached")
    again = page.evaluate(f"() => {four}.map(r => r.dataset.jobId)")
    assert again == shown
    listed = httpx.get(f"{stack.url}/v1/jobs", params={"limit": 4}).json()["jobs"]
    created = [j["created_at"] for j in listed]
    assert created == sorted(created, reverse=True)  # the ids' order is the order they were made


def test_the_viewer_says_when_as_the_list_does_and_took_counts_from_the_submission(
    page, stack: Stack, meeting: str
) -> None:  # type: ignore[no-untyped-def]
    open_job(page, stack, meeting)
    listed = row(page, meeting).locator(".created").text_content().strip()
    assert f"submitted {listed}" in page.locator("#viewer-facts").text_content()
    view = job(stack, meeting)
    length = row(page, meeting).locator(".length").text_content()
    took = datetime.fromisoformat(view["finished_at"]) - datetime.fromisoformat(view["created_at"])
    shown = float(re.search(r"took ([\d.]+) s", length).group(1))  # type: ignore[union-attr]
    assert abs(shown - took.total_seconds()) <= 0.6, (length, view)


def test_the_list_comes_back_after_a_reload_with_the_open_transcript(
    page, stack: Stack, meeting: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector(f'.job[data-job-id="{meeting}"]')
    row(page, meeting).locator(".name").click()
    page.wait_for_selector("#viewer[data-state=ready]")
    page.reload()
    listed = row(page, meeting)
    listed.wait_for()
    assert listed.locator(".name").text_content() == "meeting.mp3"
    assert listed.get_attribute("data-state") == "finished"
    view = job(stack, meeting)
    assert listed.locator(".created").get_attribute("datetime") == view["created_at"]
    assert listed.locator(".created").text_content().strip()
    assert "of audio" in listed.locator(".length").text_content()
    assert listed.locator(".delete").is_visible()
    assert listed.locator(".cancel").is_hidden()
    # Newest first, as the API lists them.
    shown = page.locator(".job").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    listed = httpx.get(f"{stack.url}/v1/jobs", params={"limit": 20}).json()["jobs"]
    assert shown == [j["job_id"] for j in listed if j["status"] != "deleted"]
    page.wait_for_selector("#viewer[data-state=ready]")  # the address named the open job
    assert page.locator("#viewer-title").text_content() == "meeting.mp3"


def test_cancel_a_running_job(page, stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gated = GatedServer("url.wav")  # the job stays in its download until the test is done
    try:
        response = httpx.post(f"{stack.url}/v1/transcribe", json={"source_type": "url", "url": gated.url})
        job_id = response.json()["job_id"]
        assert gated.asked.wait(60)
        page.click("#refresh")
        listed = row(page, job_id)
        page.wait_for_selector(f'.job[data-job-id="{job_id}"][data-state=started]')
        shot(page, tmp_path, "list")
        assert listed.locator(".name").text_content() == gated.url
        listed.locator(".cancel").click()
        page.wait_for_selector(f'.job[data-job-id="{job_id}"][data-state=cancelled]')
        assert listed.locator(".cancel").is_hidden()
        assert job(stack, job_id)["status"] == "cancelled"
    finally:
        gated.open()
        gated.close()


def test_delete_a_job_after_a_confirm(page, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    job_id = submit(stack, SPEECH / "url.wav", "to-delete.wav")
    finished(stack, job_id)
    page.click("#refresh")
    listed = row(page, job_id)
    page.once("dialog", lambda dialog: dialog.dismiss())
    listed.locator(".delete").click()
    assert job(stack, job_id)["status"] == "finished"  # dismissed: nothing happened
    assert listed.is_visible()
    messages: list[str] = []
    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.accept()))
    listed.locator(".delete").click()
    listed.wait_for(state="detached")
    assert "to-delete.wav" in messages[0]
    assert job(stack, job_id)["status"] == "deleted"
    page.reload()
    page.wait_for_selector("#jobs[data-state=loaded]", state="attached")
    assert row(page, job_id).count() == 0


# ---- The transcript viewer ----


def test_the_viewer_plays_the_input_from_the_cue_clicked(page, stack: Stack, meeting: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    segments = transcript(stack, meeting)["segments"]
    assert len(segments) >= 3
    open_job(page, stack, meeting)
    cues = page.locator("#cues .cue")
    assert cues.count() == len(segments)
    assert cues.locator(".text").all_text_contents() == [s["text"].strip() for s in segments]
    assert cues.nth(1).locator(".time").text_content() == clock(segments[1]["start"])
    media_loaded(page)  # the job's own input, from /v1/jobs/{id}/input
    assert page.locator("#player").evaluate("p => p.currentSrc").endswith(f"/v1/jobs/{meeting}/input")

    page.locator("#player").evaluate("p => p.addEventListener('seeking', () => { window.seekedTo = p.currentTime; })")
    cues.nth(2).locator(".text").click()
    assert page.evaluate("window.seekedTo") == pytest.approx(segments[2]["start"], abs=0.01)
    assert cues.nth(2).get_attribute("aria-current") == "true"
    # As it plays on, the highlight moves to the next cue.
    page.wait_for_selector(".cue.playing[data-index='3']", timeout=60_000)
    page.locator("#player").evaluate("p => p.pause()")

    # As currentTime moves (a seek from here fires the element's own seeked and timeupdate).
    page.locator("#player").evaluate(f"p => {{ p.currentTime = {segments[0]['start'] + 0.05}; }}")
    page.wait_for_selector(".cue.playing[data-index='0']")
    assert page.locator(".cue.playing").count() == 1

    # Keyboard: a cue's time is a button.
    cues.nth(1).locator(".time").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(".cue.playing[data-index='1']")
    page.locator("#player").evaluate("p => p.pause()")
    shot(page, tmp_path, "viewer")


def clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:04.1f}"


def test_search_copy_and_downloads_named_after_the_input(page, stack: Stack, meeting: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    segments = transcript(stack, meeting)["segments"]
    open_job(page, stack, meeting)

    word = max((w.strip(".,?!").lower() for s in segments for w in s["text"].split()), key=len)
    expected = sum(s["text"].lower().count(word) for s in segments)
    page.fill("#search", word.upper())
    assert page.locator("#cues mark").count() == expected
    assert page.locator("#search-count").text_content() == f"{expected} {'match' if expected == 1 else 'matches'}"
    assert all(m.lower() == word for m in page.locator("#cues mark").all_text_contents())
    page.press("#search", "Enter")
    assert page.locator(".cue.current mark").count() >= 1
    page.fill("#search", "")
    assert page.locator("#cues mark").count() == 0

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy")
    page.wait_for_selector("#copied:text('Copied')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == "\n".join(s["text"].strip() for s in segments)

    for fmt in FORMATS:
        with page.expect_download() as caught:
            page.click(f"#viewer .downloads [data-format={fmt}]")
        assert caught.value.suggested_filename == f"meeting.{fmt}"
        target = tmp_path / f"meeting.{fmt}"
        caught.value.save_as(target)
        served = httpx.get(f"{stack.url}/v1/jobs/{meeting}/result", params={"format": fmt})
        assert target.read_bytes() == served.content


def test_a_transcript_with_warnings_shows_them(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Silence finishes, with the job's warning on its row and in its (empty) transcript."""
    quiet = silence(tmp_path / "quiet.wav", 6, rate=16000)
    drop(page, (quiet, "quiet.wav", "audio/wav"))
    page.wait_for_selector(newest(page, "finished"), timeout=JOB_TIMEOUT)
    said = ["no speech was found in the audio: the transcript is empty"]
    assert page.locator(newest(page)).locator(".warnings li").all_text_contents() == said
    page.wait_for_selector("#viewer[data-state=ready]")
    assert page.locator("#viewer-warnings li").all_text_contents() == said
    assert page.locator("#no-cues").is_visible()
    assert page.locator("#viewer .downloads").is_visible()
    shot(page, tmp_path, "warnings")


def test_speakers_are_shown_in_colour(page, stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.locator("details.options summary").click()
    page.check("#multichannel")
    page.fill("#speaker-labels", "agent,customer")
    page.set_input_files("#file", str(SPEECH / "call.mp3"))
    page.wait_for_selector("#viewer[data-state=ready]", timeout=240_000)
    turns = json.loads((SPEECH / "call.json").read_text())
    legend = page.locator("#speakers .speaker")
    assert sorted(legend.all_text_contents()) == sorted({t["speaker"] for t in turns})
    colours = {
        name: page.locator(f".cue[data-speaker={name}] .speaker").first.evaluate("s => getComputedStyle(s).color")
        for name in ("agent", "customer")
    }
    text = page.locator(".cue .text").first.evaluate("t => getComputedStyle(t).color")
    assert len({*colours.values(), text}) == 3, colours  # each speaker its own colour, not the text's
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy")
    page.wait_for_selector("#copied:text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()").startswith("agent: ")
    shot(page, tmp_path, "speakers")


def test_a_url_job_plays_from_its_url(page, stack: Stack, file_server: FileServer) -> None:  # type: ignore[no-untyped-def]
    url = f"{file_server.url}/url.wav"
    response = httpx.post(f"{stack.url}/v1/transcribe", json={"source_type": "url", "url": url})
    job_id = response.json()["job_id"]
    finished(stack, job_id)
    open_job(page, stack, job_id)
    media_loaded(page)
    assert page.locator("#player").evaluate("p => p.currentSrc") == url
    assert page.locator("#viewer-title").text_content() == url


def test_a_video_plays_as_a_video(page, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    job_id = submit(stack, SPEECH / "inbox.mp4", "clip.mp4")
    finished(stack, job_id)
    open_job(page, stack, job_id)
    media_loaded(page)
    assert page.locator("#player").evaluate("p => p.videoWidth") == 160
    assert "audio-only" not in page.locator("#player").get_attribute("class")


def test_on_a_phone_sized_window(browser, stack: Stack, meeting: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = open_page(browser, f"{stack.url}/#job={meeting}", viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page.wait_for_selector("#viewer[data-state=ready]")
        media_loaded(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
        box = page.locator("#viewer").bounding_box()
        assert box["width"] <= 390
        assert page.locator("#drop").bounding_box()["width"] <= 390
        shot(page, tmp_path, "phone")
        assert page.errors == []
    finally:
        page.context.close()


def test_more_loads_the_next_page_of_the_list(page, stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Past a page of 20 the list ends in "More", which loads the older jobs (cheap ones here: files
    that are not media fail at once). Last on this stack, as it floods the list."""
    notes = tmp_path / "notes.mp3"
    notes.write_text("not audio\n" * 20)
    listed = httpx.get(f"{stack.url}/v1/jobs", params={"limit": 200}).json()["jobs"]
    ids = [submit(stack, notes, f"notes-{n}.mp3") for n in range(max(0, 25 - len(listed)))]
    wait_until(lambda: all(job(stack, j)["status"] == "failed" for j in ids), timeout=120)
    everything = []
    cursor = None
    while True:
        answer = httpx.get(
            f"{stack.url}/v1/jobs", params={"limit": 200, **({"cursor": cursor} if cursor else {})}
        ).json()
        everything += [j["job_id"] for j in answer["jobs"] if j["status"] != "deleted"]
        if not (cursor := answer["next_cursor"]):
            break
    page.reload()
    page.wait_for_selector("#more:not([hidden])")
    first = page.locator(".job").count()
    assert 0 < first <= 20
    page.click("#more")
    page.wait_for_function("n => document.querySelectorAll('.job').length > n", arg=first)
    while page.locator("#more").is_visible():
        count = page.locator(".job").count()
        page.click("#more")
        page.wait_for_function("n => document.querySelectorAll('.job').length > n", arg=count)
    shown = page.locator(".job").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert shown == everything  # each once, newest first


# ---- With an API key ----


def test_with_an_api_key(browser, tenant_stack: Stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key_stack = tenant_stack
    page = open_page(browser, key_stack.url)
    page.allowed_errors.append("Failed to load resource: the server responded with a status of 401 (Unauthorized)")
    try:
        page.wait_for_selector("#list-error:not([hidden])")
        assert "API key" in page.locator("#list-error").text_content()
        assert page.locator("details.options").get_attribute("open") is not None
        page.fill("#api-key", KEY)
        page.press("#api-key", "Tab")  # the key is taken when the field is left
        page.wait_for_selector("#list-error", state="hidden")

        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url.removeprefix(key_stack.url)))
        drop(page, (SPEECH / "upload.mp3", "keyed.mp3", "audio/mpeg"))
        page.wait_for_selector(newest(page, "finished"), timeout=JOB_TIMEOUT)
        job_id = page.locator(newest(page)).get_attribute("data-job-id")
        assert f"/v1/jobs/{job_id}/events" in asked
        assert f"/v1/jobs/{job_id}" not in asked
        page.wait_for_selector("#viewer[data-state=ready]")
        assert page.locator("#cues .cue").count() == len(transcript(key_stack, job_id, KEY)["segments"])
        media_loaded(page)
        assert page.locator("#player").evaluate("p => p.currentSrc").startswith("blob:")
        with page.expect_download() as caught:
            page.click("#viewer .downloads [data-format=vtt]")
        assert caught.value.suggested_filename == "keyed.vtt"

        page.reload()  # the key is kept in the browser, the list with it
        row(page, job_id).wait_for()
        assert page.locator("#list-error").is_hidden()
        assert [e for e in page.errors if e not in page.allowed_errors] == []
    finally:
        page.context.close()
