"""The ``transcribe`` command line, run as a user runs it, against the embedded stack."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import srt
import webvtt

from ingest_api.schemas import TranscribeRequest
from tests.conftest import SPEECH, Stack, free_port
from tests.helpers import FileServer, Receiver, lecture, speech_text, wer

CLI = str(Path(sys.executable).parent / "transcribe")


def transcribe(stack_url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "--server", stack_url, *args], capture_output=True, text=True, timeout=180, cwd=cwd, check=False
    )


def test_submit_wait_shows_progress_and_saves_the_srt(stack: Stack, tmp_path: Path) -> None:
    target = tmp_path / "talk.srt"
    done = transcribe(
        stack.url, "submit", str(SPEECH / "upload.mp3"), "--output", "srt,vtt", "--wait", "--save", str(target)
    )
    assert done.returncode == 0, done.stderr
    cues = list(srt.parse(target.read_text()))
    assert wer(speech_text("upload"), " ".join(cue.content for cue in cues)) < 0.2
    assert re.search(r"^job [0-9a-f]{32}$", done.stderr, re.M), done.stderr
    assert "finished 100%" in done.stderr
    assert f"saved {target}" in done.stderr
    assert (tmp_path / "talk.vtt").read_text().startswith("WEBVTT")  # every format asked for, beside it


def test_the_progress_shown_is_the_jobs_real_progress(stack: Stack, tmp_path: Path) -> None:
    """Eighty seconds of speech (three decoding windows), polled often: the percentages shown rise
    through values between 0 and 100 (reported by the worker as it transcribes) and end at 100."""
    long_clip = tmp_path / "minute.mp3"
    lecture(long_clip, 81)
    done = transcribe(stack.url, "submit", str(long_clip), "--wait", "--poll", "0.05", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = [(status, float(p)) for status, p in re.findall(r"^(\w+) (\d+)%$", done.stderr, re.M)]
    percents = [p for _, p in shown]
    assert percents == sorted(percents), shown
    assert shown[-1] == ("finished", 100.0)
    assert any(status == "started" and 0 < p < 100 for status, p in shown), shown
    assert (tmp_path / "minute.srt").is_file()  # saved beside the user, named after the input


def test_submit_a_url_and_save_beside_the_user(stack: Stack, file_server: FileServer, tmp_path: Path) -> None:
    done = transcribe(stack.url, "submit", f"{file_server.url}/url.wav", "--output", "vtt", "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    captions = webvtt.read(str(tmp_path / "url.vtt"))
    assert wer(speech_text("url"), " ".join(c.text for c in captions)) < 0.2


def test_submit_without_wait_prints_the_job_id_then_status_result_and_stats(stack: Stack) -> None:
    done = transcribe(stack.url, "submit", str(SPEECH / "upload.mp3"), "--output", "srt,txt")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)

    wait = transcribe(stack.url, "submit", str(SPEECH / "upload.mp3"), "--wait", "--save", "-")
    assert wait.returncode == 0  # another job, so that the first has ended by now or soon
    for _ in range(100):
        view = json.loads(transcribe(stack.url, "status", job_id, "--json").stdout)
        if view["status"] == "finished":
            break
    assert view["status"] == "finished"
    status = transcribe(stack.url, "status", job_id)
    assert status.stdout.startswith(f"job {job_id}: finished, 100%, language en, ")

    text = transcribe(stack.url, "result", job_id, "--format", "txt")
    assert text.returncode == 0
    assert wer(speech_text("upload"), text.stdout) < 0.2
    first = transcribe(stack.url, "result", job_id)  # the job's first output format: srt
    assert list(srt.parse(first.stdout))

    shown = dict(line.split() for line in transcribe(stack.url, "stats").stdout.splitlines())
    api = httpx.get(f"{stack.url}/v1/stats").json()
    assert {name: int(n) for name, n in shown.items()} == {name: api.get(name, 0) for name in shown}


def test_a_failed_job_exits_1_with_its_error(stack: Stack, tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp3"
    fake.write_text("these are my notes, not audio\n" * 20)
    done = transcribe(stack.url, "submit", str(fake), "--wait")
    assert done.returncode == 1
    assert "failed" in done.stderr
    assert "not an audio or video file" in done.stderr


def test_a_refused_request_exits_4_with_the_servers_reason(stack: Stack) -> None:
    done = transcribe(stack.url, "submit", str(SPEECH / "upload.mp3"), "--output", "docx")
    assert done.returncode == 4
    assert "error: output: input should be 'srt', 'vtt'" in done.stderr
    missing = transcribe(stack.url, "status", "no-such-job")
    assert missing.returncode == 4
    assert "no job 'no-such-job'" in missing.stderr


@pytest.mark.parametrize("command", [["stats"], ["status", "abc"], ["submit", str(SPEECH / "upload.mp3")]])
def test_an_unreachable_server_gets_a_clear_message(command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    done = transcribe(url, *command)
    assert done.returncode == 3
    assert f"cannot reach the transcription service at {url}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_file_is_named() -> None:
    done = transcribe("http://127.0.0.1:9", "submit", "/no/such/talk.mp3")
    assert done.returncode == 2
    assert "/no/such/talk.mp3: no such file" in done.stderr


def test_submit_has_an_option_for_each_field_of_the_api(stack: Stack, receiver: Receiver) -> None:
    """Issue 34, finding 6: each field of POST /v1/transcribe is an option of ``transcribe submit``,
    named as in the API, and arrives as the API would take it."""
    shown = subprocess.run([CLI, "submit", "--help"], capture_output=True, text=True, check=True, timeout=60).stdout
    fields = set(TranscribeRequest.model_fields) - {"source_type", "url"}  # the command's own argument
    assert not [field for field in fields if f"--{field.replace('_', '-')}" not in shown]
    options = [
        "--output", "json,srt", "--language", "en", "--model", "tiny.en", "--task", "transcribe",
        "--callback-url", f"{receiver.url}/hooks", "--db-id", "row-17", "--no-vad-filter",
        "--initial-prompt", "The city library.", "--word-timestamps", "--language-confidence-threshold", "0.5",
        "--multichannel", "--speaker-labels", "agent,customer", "--idempotency-key", "cli-fields-1",
    ]  # fmt: skip
    done = transcribe(stack.url, "submit", str(SPEECH / "call.mp3"), *options)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    record = httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()
    assert record["db_id"] == "row-17"
    assert {name: record["options"][name] for name in ("output", "language", "task", "model")} == {
        "output": ["json", "srt"], "language": "en", "task": "transcribe", "model": "tiny.en",
    }  # fmt: skip
    assert record["options"]["vad_filter"] is False
    assert record["options"]["word_timestamps"] is True
    assert record["options"]["multichannel"] is True
    assert record["options"]["speaker_labels"] == ["agent", "customer"]
    assert record["options"]["initial_prompt"] == "The city library."
    assert record["options"]["language_confidence_threshold"] == 0.5
    again = transcribe(stack.url, "submit", str(SPEECH / "call.mp3"), *options)
    assert again.stdout.strip() == job_id  # the same key: the same job
    assert receiver.wait_for(job_id, timeout=300)["json"]["status"] == "finished"


@pytest.mark.parametrize("key", ["clé-1", "two\nlines", "x" * 256])
def test_an_idempotency_key_no_header_can_carry_is_bad_usage(key: str) -> None:
    done = transcribe("http://127.0.0.1:9", "submit", str(SPEECH / "upload.mp3"), "--idempotency-key", key)
    assert done.returncode == 2
    assert "--idempotency-key: give 1 to 255 printable ASCII characters" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_folder_is_not_called_a_missing_file(tmp_path: Path) -> None:
    done = transcribe("http://127.0.0.1:9", "submit", str(tmp_path))
    assert done.returncode == 2
    assert f"{tmp_path} is a folder: give one file" in done.stderr


def test_list_cancel_delete_and_models(stack: Stack) -> None:
    queued = transcribe(stack.url, "submit", str(SPEECH / "upload.mp3"), "--output", "txt").stdout.strip()
    done = transcribe(stack.url, "submit", str(SPEECH / "upload.mp3"), "--wait", "--save", "-")
    assert done.returncode == 0, done.stderr
    newest = httpx.get(f"{stack.url}/v1/jobs", params={"limit": 1}).json()["jobs"][0]["job_id"]

    listed = transcribe(stack.url, "list", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert rows[0][0] == newest  # newest first
    assert rows[0][-1] == "upload.mp3"  # the file's own name
    assert queued in [row[0] for row in rows]
    as_json = [
        json.loads(line) for line in transcribe(stack.url, "list", "--json", "--status", "finished").stdout.splitlines()
    ]
    assert as_json
    assert {view["status"] for view in as_json} == {"finished"}

    cancelled = transcribe(stack.url, "cancel", queued)
    if cancelled.returncode == 0:  # it was still queued or running
        assert cancelled.stdout.strip() == f"job {queued}: cancelled"
    else:  # it had finished meanwhile: the server's reason, exit 4
        assert cancelled.returncode == 4
        assert "has already ended" in cancelled.stderr
    ended = transcribe(stack.url, "cancel", newest)  # finished: the CLI's word for deleting, not the API's
    assert ended.returncode == 4
    assert f"'transcribe delete {newest}' deletes it and its results" in ended.stderr
    assert "delete_objects" not in ended.stderr
    deleted = transcribe(stack.url, "delete", newest)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith(f"job {newest}: deleted")
    assert httpx.get(f"{stack.url}/v1/jobs/{newest}/result").status_code == 410
    again = transcribe(stack.url, "delete", newest)
    assert again.returncode == 4
    assert f"job {newest} was deleted" in again.stderr

    served = transcribe(stack.url, "models")
    assert served.returncode == 0
    assert served.stdout.split() == httpx.get(f"{stack.url}/v1/models").json()["models"]


def test_help_reads_as_plain_text() -> None:
    for command in ([], ["submit"], ["list"], ["cancel"], ["delete"], ["models"]):
        shown = subprocess.run([CLI, *command, "--help"], capture_output=True, text=True, check=False, timeout=60)
        assert shown.returncode == 0
        assert "``" not in shown.stdout
        assert ":class:" not in shown.stdout
    top = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=False, timeout=60).stdout
    for command in ("list", "cancel", "delete", "models"):
        assert re.search(rf"^\s+{command}\s", top, re.M), top


class StreamlessProxy:
    """The API behind a proxy that refuses event streams (502), as some proxies do."""

    def __init__(self, upstream: str) -> None:
        target = httpx.Client(base_url=upstream, timeout=60)

        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                if self.path.split("?")[0].endswith("/events"):
                    self.send_error(502, "no streams here")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = target.request(self.command, self.path, content=body, headers=headers)
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = _relay

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_wait_follows_the_event_stream_and_polls_where_it_fails(stack: Stack) -> None:
    streamed = transcribe(stack.url, "submit", str(SPEECH / "upload.mp3"), "--wait", "--save", "-")
    assert streamed.returncode == 0, streamed.stderr
    assert "polling" not in streamed.stderr
    assert "finished 100%" in streamed.stderr
    proxy = StreamlessProxy(stack.url)
    try:
        polled = transcribe(proxy.url, "submit", str(SPEECH / "upload.mp3"), "--wait", "--save", "-")
    finally:
        proxy.close()
    assert polled.returncode == 0, polled.stderr
    assert "the event stream failed" in polled.stderr
    assert "polling instead" in polled.stderr
    assert "finished 100%" in polled.stderr
    assert wer(speech_text("upload"), " ".join(cue.content for cue in srt.parse(polled.stdout))) < 0.2
