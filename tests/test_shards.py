"""Long and multichannel jobs, split into shards, through the embedded stack's real processes and
the real tiny.en model: two worker processes of one slot each, shards of about 8 s from 20 s up,
so that a long job is many shards that run in seconds."""

from __future__ import annotations

import io
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis
import srt
import webvtt
from rq import Queue
from rq.executions import Execution
from rq.job import Job

from tests.conftest import Stack, running_stack
from tests.helpers import SPEECH, Receiver, damaged, interleaved_call, long_speech, long_text, silence, wait_until, wer
from tests.test_pipeline import upload
from transcribe_common import jobqueue, keys
from transcribe_common.settings import CommonSettings

SHARDED = {
    "WORKERS": "2",
    "MAX_CONCURRENCY": "1",
    "WHISPER_CPU_THREADS": "1",
    "SHARD_MIN_SECONDS": "20",
    "SHARD_SECONDS": "8",
    "WORKER_HEARTBEAT_TTL": "3",
    "REAP_INTERVAL": "1",
    "MAX_ATTEMPTS": "2",
    "JOB_TIMEOUT": "300",
    "LOG_FORMAT": "json",
}


SHARD_QUEUE = keys.shard_queue_for("tiny.en")  # shards go on the shard queue of the model that cut them


def _worker_ports() -> str:
    """A port for the first worker's /metrics whose neighbour ten up (the second worker's) is free too."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", port + 10))
            except OSError:
                continue
            return str(port)


@pytest.fixture(scope="module")
def shard_stack(tmp_path_factory: pytest.TempPathFactory, redis_server: str, receiver: Receiver) -> Iterator[Stack]:
    redis_url = redis_server.rsplit("/", 1)[0] + "/6"
    settings = {**SHARDED, "WORKER_METRICS_PORT": _worker_ports()}
    with running_stack(tmp_path_factory.mktemp("shards"), redis_url, receiver, **settings) as stack:
        yield stack


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """About 80 s of speech: ten or so shards."""
    return long_speech(tmp_path_factory.mktemp("long") / "long.wav").read_bytes()


def job(stack: Stack, job_id: str) -> dict:
    return dict(httpx.get(f"{stack.url}/v1/jobs/{job_id}").json())


def result(stack: Stack, job_id: str, fmt: str) -> str:
    response = httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", params={"format": fmt})
    assert response.status_code == 200, response.text
    return response.text


def shard_starts(stack: Stack, job_id: str) -> dict[int, int]:
    """How many times each shard of the job was started, from the workers' log lines."""
    starts: dict[int, int] = {}
    for line in stack.log.read_text().splitlines():
        if job_id in line and " (start " in line:
            found = re.search(r"shard (\d+) of \d+ .*: started on", json.loads(line)["message"])
            if found:
                starts[int(found.group(1))] = starts.get(int(found.group(1)), 0) + 1
    return starts


def test_a_long_job_is_split_transcribed_by_both_workers_and_joined_once(
    shard_stack: Stack, receiver: Receiver, long_recording: bytes
) -> None:
    job_id = upload(shard_stack, long_recording, "lecture.wav", output="srt,vtt,json,txt,tsv")
    seen: list[dict] = []
    wait_until(lambda: seen.append(job(shard_stack, job_id)) or seen[-1]["status"] in ("finished", "failed"),
               timeout=300, interval=0.05)  # fmt: skip
    final = seen[-1]
    assert final["status"] == "finished", (final, shard_stack.log_tail())
    total = final["shards"]["total"]
    assert total >= 7
    assert final["shards"] == {"total": total, "done": total}
    # Progress: over all shards, never backwards, and seen between the ends.
    progress = [record["progress"] for record in seen if record["status"] == "started"]
    assert progress == sorted(progress)
    assert any(0 < p < 100 for p in progress), progress
    assert any(0 < (r.get("shards") or {}).get("done", 0) < total for r in seen)

    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "finished"
    assert payload["duration"] == pytest.approx(final["duration"])
    time.sleep(1)
    assert len(receiver.for_job(job_id)) == 1  # one join, one webhook

    starts = shard_starts(shard_stack, job_id)
    assert set(starts.values()) == {1}, starts
    slots = re.findall(rf"{job_id}: shard .*?: started on ([\w-]+)", shard_stack.log.read_text())
    assert {slot.rsplit("-", 1)[0] for slot in slots} == {"embedded-worker", "embedded-worker-2"}  # both took shards

    # The seams: every word said once, in order, in every format; cues parse and are in order.
    text = result(shard_stack, job_id, "txt")
    assert wer(long_text(), text) < 0.15, text
    cues = list(srt.parse(result(shard_stack, job_id, "srt")))
    assert [c.start for c in cues] == sorted(c.start for c in cues)
    assert cues[-1].end.total_seconds() <= final["duration"] + 0.01
    assert list(webvtt.from_buffer(io.StringIO(result(shard_stack, job_id, "vtt"))))
    joined = json.loads(result(shard_stack, job_id, "json"))
    starts_in_order = [segment["start"] for segment in joined["segments"]]
    assert starts_in_order == sorted(starts_in_order)
    assert [segment["id"] for segment in joined["segments"]] == list(range(len(joined["segments"])))
    # The shards' own objects are gone once joined.
    folder = shard_stack.data / "buckets" / "transcribe" / job_id
    assert not list(folder.glob("attempt-*/shards/*"))


def test_sharded_is_as_accurate_as_whole(shard_stack: Stack, stack: Stack, long_recording: bytes) -> None:
    """The same recording through a stack that does not shard it (its SHARD_MIN_SECONDS is the default)."""
    sharded = upload(shard_stack, long_recording, "sharded.wav", output="txt")
    whole = upload(stack, long_recording, "whole.wav", output="txt", model="tiny.en")
    for target, job_id in ((shard_stack, sharded), (stack, whole)):
        wait_until(lambda t=target, j=job_id: job(t, j)["status"] in ("finished", "failed"), timeout=300)
    assert job(stack, whole).get("shards") is None
    reference = long_text()
    sharded_wer, whole_wer = (
        wer(reference, result(shard_stack, sharded, "txt")),
        wer(reference, result(stack, whole, "txt")),
    )
    # A word or two either way is the model's noise on 80 s; bench/long.py measures many seams.
    assert sharded_wer <= whole_wer + 0.03, (sharded_wer, whole_wer)


def test_a_worker_killed_mid_shard_costs_only_that_shard(
    shard_stack: Stack, receiver: Receiver, long_recording: bytes
) -> None:
    job_id = upload(shard_stack, long_recording, "killed.wav")
    wait_until(lambda: (job(shard_stack, job_id).get("shards") or {}).get("done", 0) >= 1, timeout=300, interval=0.02)
    running: dict[str, str] = {}
    wait_until(lambda: running.update(shards_running_on(shard_stack, job_id)) or running, timeout=60, interval=0.01)
    shard, worker = next(iter(running.items()))
    process_name = worker.rsplit("-", 1)[0]  # a job slot's name is its process's WORKER_NAME and its number
    worker_process(shard_stack, process_name).kill()  # SIGKILL, mid-shard

    payload = receiver.wait_for(job_id, timeout=300)["json"]
    assert payload["status"] == "finished", shard_stack.log_tail()
    assert len(receiver.for_job(job_id)) == 1
    starts = shard_starts(shard_stack, job_id)
    index = keys.shard_of(shard)
    assert index is not None
    assert starts.pop(index[2] + 1) == 2, shard_stack.log_tail()  # the killed shard ran again...
    assert set(starts.values()) == {1}, starts  # ...and only it
    assert wer(long_text(), result(shard_stack, job_id, "txt")) < 0.15


def shards_running_on(stack: Stack, job_id: str) -> dict[str, str]:
    """The job's shards RQ counts as running now: RQ job id -> the job slot (RQ worker) running it."""
    conn = redis.Redis.from_url(stack.redis_url)
    registry = Queue(SHARD_QUEUE, connection=conn).started_job_registry
    return {
        rq_id: Execution.fetch(execution, rq_id, connection=conn).worker_name
        for rq_id, execution in registry.get_job_and_execution_ids()
        if rq_id.startswith(f"{job_id}-a")
    }


def worker_process(stack: Stack, name: str) -> psutil.Process:
    for child in psutil.Process(stack.pid).children():
        if "gpu_worker" in child.cmdline() and child.environ().get("WORKER_NAME") == name:
            return child
    raise LookupError(name)


def test_duplicate_shard_events_change_nothing(shard_stack: Stack, receiver: Receiver, long_recording: bytes) -> None:
    job_id = upload(shard_stack, long_recording, "twice.wav")
    wait_until(lambda: job(shard_stack, job_id).get("shards") is not None, timeout=300, interval=0.02)
    conn = redis.Redis.from_url(shard_stack.redis_url)
    total = job(shard_stack, job_id)["shards"]["total"]
    settings = CommonSettings(redis_url=shard_stack.redis_url)
    for index in range(total):  # every shard queued twice more, as a redelivered event would
        for _ in range(2):
            jobqueue.enqueue_shard(conn, job_id, 1, index, None, settings)

    payload = receiver.wait_for(job_id, timeout=300)["json"]
    assert payload["status"] == "finished", shard_stack.log_tail()
    wait_until(
        lambda: not [q for q in (keys.QUEUE, SHARD_QUEUE) if Queue(q, connection=conn).get_job_ids()], timeout=120
    )
    time.sleep(1)
    assert len(receiver.for_job(job_id)) == 1
    assert set(shard_starts(shard_stack, job_id).values()) == {1}
    assert job(shard_stack, job_id)["status"] == "finished"


def test_cancelling_a_sharded_job_stops_it_and_drops_its_queued_shards(
    shard_stack: Stack, receiver: Receiver, long_recording: bytes
) -> None:
    job_id = upload(shard_stack, long_recording, "cancelled.wav")
    wait_until(lambda: job(shard_stack, job_id).get("shards") is not None, timeout=300, interval=0.02)
    response = httpx.delete(f"{shard_stack.url}/v1/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    conn = redis.Redis.from_url(shard_stack.redis_url)
    queued = Queue(SHARD_QUEUE, connection=conn)
    assert not [rq_id for rq_id in queued.get_job_ids() if rq_id.startswith(job_id)]
    wait_until(lambda: not shards_running_on(shard_stack, job_id), timeout=120)
    time.sleep(1)
    record = job(shard_stack, job_id)
    assert record["status"] == "cancelled"
    assert record["shards"]["done"] < record["shards"]["total"]
    assert not [call for call in receiver.for_job(job_id) if call["json"]["status"] == "finished"]


def stereo_call(stack: Stack, receiver: Receiver, call: Path, output: str) -> tuple[str, dict]:
    """A call sent with a speaker per channel (agent, customer), finished: its job and JSON result."""
    job_id = upload(
        stack, call.read_bytes(), call.name, multichannel="true", speaker_labels="agent,customer", output=output
    )
    assert receiver.wait_for(job_id, timeout=300)["json"]["status"] == "finished", stack.log_tail()
    return job_id, json.loads(result(stack, job_id, "json"))


def test_a_stereo_call_has_a_speaker_per_channel(shard_stack: Stack, receiver: Receiver) -> None:
    turns = json.loads((SPEECH / "call.json").read_text())
    job_id, transcript = stereo_call(shard_stack, receiver, SPEECH / "call.mp3", "json,vtt")
    for segment in transcript["segments"]:
        turn = max(turns, key=lambda t: min(segment["end"], t["end"]) - max(segment["start"], t["start"]))
        said_by = turn["speaker"]
        assert segment["speaker"] == said_by, (segment, turns)
        assert turn["start"] - 0.5 <= segment["start"] < segment["end"] <= turn["end"] + 0.5, (segment, turn)
        assert all(word["speaker"] == said_by for word in segment.get("words") or [])
    assert {segment["speaker"] for segment in transcript["segments"]} == {"agent", "customer"}
    voices = {caption.voice for caption in webvtt.from_buffer(io.StringIO(result(shard_stack, job_id, "vtt")))}
    assert voices == {"agent", "customer"}


def test_a_stereo_call_reads_in_the_order_it_was_said(shard_stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    """Issue 34, finding 1: the customer's channel is silent through the agent's 10 s turn; each
    channel is decoded a turn at a time, so no segment of the customer's spans the agent's turn,
    the text reads in order and no cue starts before the one before it."""
    turns = interleaved_call(tmp_path / "call.wav")
    job_id, transcript = stereo_call(shard_stack, receiver, tmp_path / "call.wav", "json,srt,vtt,txt")
    for segment in transcript["segments"]:  # none reaches into the other speaker's turn
        across = [
            t
            for t in turns
            if t["speaker"] != segment["speaker"]
            and min(segment["end"], t["end"]) - max(segment["start"], t["start"]) > 0.5
        ]
        assert not across, (segment, turns)
    speakers = [line.split(":", 1)[0] for line in result(shard_stack, job_id, "txt").splitlines() if ":" in line]
    assert speakers == ["customer", "agent", "customer"], result(shard_stack, job_id, "txt")
    starts = [cue.start for cue in srt.parse(result(shard_stack, job_id, "srt"))]
    assert starts == sorted(starts)
    vtt = [cue.start for cue in webvtt.from_buffer(io.StringIO(result(shard_stack, job_id, "vtt")))]
    assert vtt == sorted(vtt)


def test_the_openai_route_answers_diarized_json(shard_stack: Stack) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{shard_stack.url}/v1", api_key="unused", timeout=300)
    with (SPEECH / "call.mp3").open("rb") as call:
        answer = client.audio.transcriptions.create(
            model="whisper-1",
            file=call,
            response_format="diarized_json",
            extra_body={"multichannel": "true", "known_speaker_names[]": "agent,customer"},
        )
    assert {segment.speaker for segment in answer.segments} == {"agent", "customer"}
    assert answer.segments[0].type == "transcript.text.segment"
    assert "library" in answer.text.lower()


def test_multichannel_on_mono_is_refused(shard_stack: Stack, tmp_path: Path) -> None:
    files = {"file": ("mono.wav", (SPEECH / "url.wav").read_bytes(), "audio/wav")}
    fields = {"source_type": "upload", "multichannel": "true"}
    response = httpx.post(f"{shard_stack.url}/v1/transcribe", data=fields, files=files)
    assert response.status_code == 422
    assert "one audio channel" in response.text
    # A format whose header the API does not read: the worker fails the job saying the same.
    raw = silence(tmp_path / "mono.au", 3)
    job_id = upload(shard_stack, raw.read_bytes(), "mono.au", multichannel="true")
    wait_until(lambda: job(shard_stack, job_id)["status"] == "failed", timeout=120)
    assert "one audio channel" in job(shard_stack, job_id)["error"]


def test_a_long_silent_recording_finishes_at_once_with_the_no_speech_warning(
    shard_stack: Stack, tmp_path: Path
) -> None:
    quiet = silence(tmp_path / "quiet.flac", 1800)
    job_id = upload(shard_stack, quiet.read_bytes(), "quiet.flac")
    wait_until(lambda: job(shard_stack, job_id)["status"] in ("finished", "failed"), timeout=120)
    record = job(shard_stack, job_id)
    assert record["status"] == "finished", record
    assert any("no speech" in warning for warning in record["warnings"])
    assert result(shard_stack, job_id, "srt").strip() == ""
    assert not shard_starts(shard_stack, job_id)  # no shard transcribed silence


def test_a_long_recording_that_cannot_be_decoded_past_a_point_fails_saying_where(
    shard_stack: Stack, tmp_path: Path
) -> None:
    broken = damaged(tmp_path / "meeting.m4a", 90, good=30)  # long enough to be split, were it decoded
    job_id = upload(shard_stack, broken.read_bytes(), "meeting.m4a", language="en")
    wait_until(lambda: job(shard_stack, job_id)["status"] in ("finished", "failed"), timeout=120)
    record = job(shard_stack, job_id)
    assert record["status"] == "failed", record
    assert re.search(r"could not decode the input as audio after 0:00:[23]\d of audio: most of", record["error"])
    assert not record.get("shards")  # nothing was split...
    assert not shard_starts(shard_stack, job_id)  # ...or transcribed


def test_diarized_json_without_multichannel_says_what_it_needs(shard_stack: Stack) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{shard_stack.url}/v1", api_key="unused", timeout=300)
    with (SPEECH / "upload.mp3").open("rb") as audio, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="diarized_json")
    assert "needs multichannel=true" in caught.value.message


def test_a_split_job_s_shards_go_before_jobs_submitted_after_the_split(
    shard_stack: Stack, receiver: Receiver, long_recording: bytes
) -> None:
    """Issue 32, finding 3: workers took the default queue first and shards waited on their
    model's queue, so a split job's shards waited behind every new job (55 s behind one short
    clip on an idle stack). Now started work goes first: no new job starts while a shard waits."""
    long_id = upload(shard_stack, long_recording, "long-first.wav")
    wait_until(lambda: job(shard_stack, long_id).get("shards"), timeout=300, interval=0.05)  # split, shards queued
    short_ids = [upload(shard_stack, (SPEECH / "upload.mp3").read_bytes(), f"after-{n}.mp3") for n in range(3)]
    for job_id in (long_id, *short_ids):
        assert receiver.wait_for(job_id)["json"]["status"] == "finished", shard_stack.log_tail()
    conn = redis.Redis.from_url(shard_stack.redis_url)
    record = job(shard_stack, long_id)
    attempt = int(conn.hget(keys.job(long_id), "attempts") or 0)
    shard_ids = [keys.shard_job_id(long_id, attempt, index) for index in range(record["shards"]["total"])]
    shard_starts_at = [j.started_at for j in Job.fetch_many(shard_ids, connection=conn) if j and j.started_at]
    short_starts_at = [j.started_at for j in Job.fetch_many(short_ids, connection=conn) if j and j.started_at]
    assert len(short_starts_at) == 3
    assert shard_starts_at, "no shard of it ran"
    assert max(shard_starts_at) <= min(short_starts_at)
