"""The inbox as a person uses it, on the embedded stack: what is written beside a drop can be read
by others, names its job, and comes back when the drop is put back after it was deleted, without
a second transcription."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import INBOX_BUCKET, JOBS_BUCKET, Stack
from tests.helpers import SPEECH, Receiver, speech_text, wait_until, wer
from tests.test_truth import drop
from transcribe_common import keys, layout
from transcribe_common.store.local import META_DIR


def worker_counts(stack: Stack) -> dict[tuple[str, str], float]:
    """The worker's counters of jobs and rewrites, by outcome."""
    text = httpx.get(f"{stack.ops_url('WORKER')}/metrics").text
    return {
        (sample.name, sample.labels.get("outcome", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("transcribe_worker_jobs_total", "transcribe_worker_rewrites_total")
    }


def attempts(stack: Stack, job_id: str) -> int:
    stored = json.loads((stack.data / "buckets" / JOBS_BUCKET / layout.status_key(job_id)).read_text())
    live = redis.Redis.from_url(stack.redis_url).hget(keys.job(job_id), "attempts")
    assert live is not None
    assert int(live) == stored["attempts"]
    return int(stored["attempts"])


def put_back(stack: Stack, key: str, source: Path) -> None:
    """The same bytes copied again, as a person would (the copy has a new mtime)."""
    target = stack.inbox / key
    mtime = target.stat().st_mtime_ns
    target.unlink()
    shutil.copyfile(source, target)
    if target.stat().st_mtime_ns == mtime:  # a coarse clock: the watcher would take it for the old file
        os.utime(target, ns=(mtime + 10**9, mtime + 10**9))


def modes(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mode & 0o777 for path in folder.rglob("*") if path.is_file()}


def test_what_is_written_beside_a_drop_is_readable_by_others(stack: Stack, receiver: Receiver) -> None:
    job_id = drop(stack, "shared/talk.mp4", SPEECH / "inbox.mp4", {"output": "srt,json"})
    assert receiver.wait_for(job_id)["json"]["status"] == "finished", stack.log_tail()
    umask = os.umask(0)
    os.umask(umask)
    readable = 0o666 & ~umask  # 0644 under the usual umask 022, as a file copied there by hand
    buckets = stack.data / "buckets"
    beside = modes(stack.inbox / "shared")
    assert {"talk.srt", "talk.json"} <= set(beside)
    written = {
        **{f"inbox/{name}": mode for name, mode in beside.items() if name != "talk.mp4"},
        **{f"jobs/{name}": mode for name, mode in modes(buckets / JOBS_BUCKET / job_id).items()},
        **{f"sidecar/{name}": mode for name, mode in modes(buckets / META_DIR / INBOX_BUCKET / "shared").items()},
        **{f"sidecar/{name}": mode for name, mode in modes(buckets / META_DIR / JOBS_BUCKET / job_id).items()},
    }
    assert {"jobs/manifest.json", "jobs/status.json", "jobs/attempt-1/result.json"} <= set(written)
    assert {name: mode for name, mode in written.items() if mode != readable} == {}


def test_the_json_result_names_its_job_beside_the_drop_and_in_the_jobs_bucket(stack: Stack, receiver: Receiver) -> None:
    job_id = drop(stack, "named/talk.mp4", SPEECH / "inbox.mp4", {"output": "json"})
    assert receiver.wait_for(job_id)["json"]["status"] == "finished", stack.log_tail()
    beside = json.loads((stack.inbox / "named" / "talk.json").read_text())
    assert next(iter(beside)) == "job_id"  # first, where a person looking at the file sees it
    assert beside["job_id"] == job_id
    result = httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", params={"format": "json"}).json()
    assert result == beside


def test_a_drop_put_back_after_its_transcript_was_deleted_gets_it_again_untranscribed(
    stack: Stack, receiver: Receiver
) -> None:
    key = "again/weekly sync.mp4"
    job_id = drop(stack, key, SPEECH / "inbox.mp4", {"output": "srt,json"})
    assert receiver.wait_for(job_id)["json"]["status"] == "finished", stack.log_tail()
    folder = stack.inbox / "again"
    transcript = (folder / "weekly sync.srt").read_text()
    edited = folder / "weekly sync.json"
    edited.write_text('{"kept": "a person edited this"}')  # what is there is left as it is
    (folder / "weekly sync.srt").unlink()
    before = worker_counts(stack)

    put_back(stack, key, SPEECH / "inbox.mp4")

    wait_until(lambda: (folder / "weekly sync.srt").exists(), timeout=60)
    assert (folder / "weekly sync.srt").read_text() == transcript
    assert wer(speech_text("inbox"), transcript) < 0.5
    assert edited.read_text() == '{"kept": "a person edited this"}'
    assert attempts(stack, job_id) == 1
    after = worker_counts(stack)
    assert (
        after[("transcribe_worker_rewrites_total", "rewritten")]
        == before.get(("transcribe_worker_rewrites_total", "rewritten"), 0) + 1
    )
    assert after[("transcribe_worker_jobs_total", "finished")] == before[("transcribe_worker_jobs_total", "finished")]
    assert len(receiver.for_job(job_id)) == 1  # no second webhook either

    (folder / "weekly sync.srt").unlink()  # and once more: the same small job, again
    put_back(stack, key, SPEECH / "inbox.mp4")
    wait_until(lambda: (folder / "weekly sync.srt").exists(), timeout=60)
    assert (folder / "weekly sync.srt").read_text() == transcript
    assert attempts(stack, job_id) == 1


def test_a_failed_drop_put_back_gets_its_error_note_again(stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp3"
    notes.write_bytes(b"these are meeting notes, not audio\n" * 20)
    key = "broken/notes.mp3"
    job_id = drop(stack, key, notes)
    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "failed"
    note = stack.inbox / "broken" / "notes.error.txt"  # README: talks/a.mp4 leaves talks/a.error.txt
    assert note.read_text() == f"Transcription failed: {payload['error']}\n"
    note.unlink()
    failed_before = worker_counts(stack)[("transcribe_worker_jobs_total", "failed")]

    put_back(stack, key, notes)

    wait_until(note.exists, timeout=60)
    assert note.read_text() == f"Transcription failed: {payload['error']}\n"
    assert worker_counts(stack)[("transcribe_worker_jobs_total", "failed")] == failed_before
    assert attempts(stack, job_id) == 1
