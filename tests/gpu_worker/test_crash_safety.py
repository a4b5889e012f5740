"""A worker process killed or stopped mid-job, through the embedded stack's real processes:
no job stays "started" forever, none runs twice at once, and scratch space does not leak.

The stack here has one job slot, a 3 s heartbeat and a 1 s reaper, so that a death is noticed
in seconds; jobs transcribe two minutes of speech so that there is time to kill them mid-way."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import rq
import rq.job

from tests.conftest import Stack, running_stack
from tests.helpers import SPEECH, Receiver, lecture, wait_until, wer
from tests.helpers import silence as make_silence
from tests.test_pipeline import upload
from transcribe_common import keys


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory, redis_server: str, receiver: Receiver) -> Iterator[Stack]:
    settings = {
        "MAX_CONCURRENCY": "1",
        "WORKER_HEARTBEAT_TTL": "3",
        "REAP_INTERVAL": "1",
        "DRAIN_TIMEOUT": "1",
        "MAX_ATTEMPTS": "2",
        "FFMPEG_TIMEOUT": "2",
        "MAX_AUDIO_SECONDS": "0",
        "JANITOR_INTERVAL": "1",  # the janitor reaps a stopped worker's job: the worker cannot
        "LOST_AFTER": "2",  # a job in no RQ list this long is queued again
        "CHECKPOINT_EVERY": "1",
    }
    redis_url = redis_server.rsplit("/", 1)[0] + "/3"
    with running_stack(tmp_path_factory.mktemp("crash"), redis_url, receiver, **settings) as stack:
        yield stack


@pytest.fixture(scope="module")
def drain_stack(tmp_path_factory: pytest.TempPathFactory, redis_server: str, receiver: Receiver) -> Iterator[Stack]:
    """A stack whose worker drains for a second on SIGTERM and vouches for itself for 60 s: its
    own drain requeues the job, ten times within the heartbeat a loaded machine may need (with the
    crash stack's 3 s, the reaper took a slow drain's worker for dead and got there first)."""
    settings = {
        "MAX_CONCURRENCY": "1",
        "WORKER_HEARTBEAT_TTL": "60",
        "DRAIN_TIMEOUT": "1",
        "JANITOR_INTERVAL": "1",
    }
    redis_url = redis_server.rsplit("/", 1)[0] + "/13"
    with running_stack(tmp_path_factory.mktemp("drain"), redis_url, receiver, **settings) as stack:
        yield stack


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """About two minutes of varied speech (the lecture's first paragraphs): a job that reports
    progress within a couple of seconds and runs for several more, to be killed in between."""
    out = tmp_path_factory.mktemp("long") / "long.mp3"
    lecture(out, 120)
    return out.read_bytes()


def job(stack: Stack, job_id: str) -> dict:
    return dict(httpx.get(f"{stack.url}/v1/jobs/{job_id}").json())


def started(stack: Stack, job_id: str, attempt: int) -> None:
    """Until attempt ``attempt`` of the job is transcribing: started, and some progress reported."""
    wait_until(
        lambda: job(stack, job_id)["status"] == "started" and attempts(stack, job_id) == attempt,
        timeout=300,
        interval=0.02,
    )
    wait_until(lambda: job(stack, job_id)["progress"] > 0, timeout=300, interval=0.05)


def attempts(stack: Stack, job_id: str) -> int:
    return int(redis.Redis.from_url(stack.redis_url).hget(keys.job(job_id), "attempts") or 0)


def test_a_killed_worker_s_job_runs_again_on_a_live_worker(
    crash_stack: Stack, receiver: Receiver, long_speech: bytes
) -> None:
    job_id = upload(crash_stack, long_speech, "killed-once.mp3")
    started(crash_stack, job_id, attempt=1)
    crash_stack.service("gpu_worker").kill()  # SIGKILL: no cleanup at all

    payload = receiver.wait_for(job_id, timeout=300)["json"]
    assert payload["status"] == "finished", crash_stack.log_tail()
    assert attempts(crash_stack, job_id) == 2
    assert len(receiver.for_job(job_id)) == 1
    assert not (crash_stack.data / "scratch" / job_id).exists()


def test_a_worker_stalled_past_its_heartbeat_stops_its_stale_attempt_and_writes_nothing(
    crash_stack: Stack, receiver: Receiver, long_speech: bytes
) -> None:
    """Hole 2 of issue 16: SIGSTOP the worker mid-job until the janitor takes it for dead and
    queues its job again; SIGCONT. The woken attempt stops, saying why, and only the next one
    ends the job: one finish, one webhook, results published from attempt 2."""
    job_id = upload(crash_stack, long_speech, "stalled.mp3")
    started(crash_stack, job_id, attempt=1)
    # Into the transcription itself: ffmpeg's FFMPEG_TIMEOUT would count the stop against the decode.
    wait_until(lambda: job(crash_stack, job_id)["progress"] > 0, timeout=120, interval=0.05)
    worker = crash_stack.service("gpu_worker")
    worker.suspend()
    try:
        wait_until(lambda: job(crash_stack, job_id)["status"] == "queued", timeout=120, interval=0.1)
    finally:
        worker.resume()

    payload = receiver.wait_for(job_id, timeout=180)["json"]
    assert payload["status"] == "finished", crash_stack.log_tail()
    assert attempts(crash_stack, job_id) == 2
    assert f"job {job_id}: attempt 1 stops" in crash_stack.log_tail(200_000)
    record = job(crash_stack, job_id)
    assert record["status"] == "finished"
    stored = json.loads((crash_stack.data / "buckets" / "transcribe" / job_id / "status.json").read_text())
    assert all(key.startswith(f"{job_id}/attempt-2/") for key in stored["outputs"].values()), stored
    assert len(receiver.for_job(job_id)) == 1
    assert httpx.get(f"{crash_stack.url}/v1/stats").json()["finished"] >= 1


def test_a_job_whose_workers_keep_dying_fails_with_a_clear_error(
    crash_stack: Stack, receiver: Receiver, long_speech: bytes
) -> None:
    job_id = upload(crash_stack, long_speech, "killed-twice.mp3")
    for attempt in (1, 2):
        started(crash_stack, job_id, attempt=attempt)
        crash_stack.service("gpu_worker").kill()

    payload = receiver.wait_for(job_id, timeout=300)["json"]
    assert payload["status"] == "failed"
    assert payload["error"] == "the worker running this job died (2 attempts); it was not started again"
    assert job(crash_stack, job_id)["status"] == "failed"
    wait_until(lambda: not (crash_stack.data / "scratch" / job_id).exists(), timeout=30)


def test_sigterm_requeues_a_job_that_outlasts_the_drain_and_it_finishes_later(
    drain_stack: Stack, receiver: Receiver, long_speech: bytes
) -> None:
    job_id = upload(drain_stack, long_speech, "drained.mp3")
    started(drain_stack, job_id, attempt=1)
    worker = drain_stack.service("gpu_worker")
    worker.send_signal(signal.SIGTERM)
    worker.wait(300)  # it stops in time, on its own (not a child of ours: no exit code to read)

    log = drain_stack.log_tail(100_000)  # the whole log: every service writes to it
    assert "requeued: the worker is shutting down" in log
    assert "stopped; 1 jobs requeued" in log
    payload = receiver.wait_for(job_id, timeout=300)["json"]
    assert payload["status"] == "finished"
    assert attempts(drain_stack, job_id) == 2


def checkpoint(stack: Stack, job_id: str, attempt: int) -> dict | None:
    path = stack.data / "buckets" / "transcribe" / job_id / f"attempt-{attempt}" / "checkpoint.json"
    return json.loads(path.read_text()) if path.is_file() else None


def resumed(stack: Stack, job_id: str, receiver: Receiver, text: str, kept: dict, seen: list[float]) -> None:
    """The job finished on a run that went on from ``kept``: the log says so, progress never went
    back, and the transcript holds what was kept once, then the rest, in order."""
    payload = receiver.wait_for(job_id, timeout=300)["json"]
    assert payload["status"] == "finished", stack.log_tail()
    said = f"job {job_id}: going on from "
    assert said in stack.log_tail(200_000)
    assert f"where attempt 1 stopped ({len(kept['segments'])} segments kept)" in stack.log_tail(200_000)
    assert seen == sorted(seen), seen  # progress never went backwards
    result = httpx.get(f"{stack.url}/v1/jobs/{job_id}/result", params={"format": "json"}).json()
    segments = result["segments"]
    assert [s["text"] for s in segments[: len(kept["segments"])]] == [s["text"] for s in kept["segments"]]
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    assert segments[len(kept["segments"])]["start"] >= kept["until"] - 0.01  # nothing before it again
    assert wer(text, " ".join(s["text"] for s in segments)) < 0.25


def test_a_drained_job_goes_on_where_it_stopped(drain_stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    """Issue 34, finding 5: Ctrl-C during a long job cost the wait and the work; the next run
    started from zero, and its progress stood still until it passed the old figure."""
    text = lecture(tmp_path / "drained.mp3", 120)
    job_id = upload(drain_stack, (tmp_path / "drained.mp3").read_bytes(), "drained.mp3")
    started(drain_stack, job_id, attempt=1)
    wait_until(lambda: job(drain_stack, job_id)["progress"] >= 20, timeout=300, interval=0.05)
    drain_stack.service("gpu_worker").send_signal(signal.SIGTERM)
    seen: list[float] = []

    def progress_until_finished() -> bool:
        record = job(drain_stack, job_id)
        if record["status"] in ("started", "queued", "finished"):
            seen.append(record["progress"])
        return bool(record["status"] == "finished")

    wait_until(progress_until_finished, timeout=300, interval=0.1)
    kept = checkpoint(drain_stack, job_id, attempt=1)
    assert kept is not None, drain_stack.log_tail()
    assert kept["segments"]
    assert kept["until"] > 10  # the first fifth of two minutes, and more
    resumed(drain_stack, job_id, receiver, text, kept, seen)
    assert attempts(drain_stack, job_id) == 2


def test_a_killed_worker_s_job_goes_on_from_its_last_checkpoint(
    crash_stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    """A SIGKILL saves nothing: the next run goes on from the checkpoint saved every
    CHECKPOINT_EVERY (1 s here) of decoding."""
    text = lecture(tmp_path / "killed.mp3", 120)
    job_id = upload(crash_stack, (tmp_path / "killed.mp3").read_bytes(), "killed.mp3")
    started(crash_stack, job_id, attempt=1)
    wait_until(lambda: (checkpoint(crash_stack, job_id, 1) or {}).get("until", 0) > 10, timeout=300, interval=0.05)
    crash_stack.service("gpu_worker").kill()
    kept = checkpoint(crash_stack, job_id, attempt=1)
    assert kept is not None
    seen: list[float] = []
    wait_until(lambda: seen.append(job(crash_stack, job_id)["progress"]) or seen[-1] >= 100, timeout=300)
    resumed(crash_stack, job_id, receiver, text, kept, seen)


def _blocked_on_its_queues(stack: Stack) -> bool:
    """Whether a connection of the worker is blocked in BLPOP: one that Redis hands the next job."""
    clients = redis.Redis.from_url(stack.redis_url).client_list()
    return any(c["name"] == "transcribe-worker" and c["cmd"] == "blpop" and "b" in c["flags"] for c in clients)


def test_a_job_popped_by_a_worker_that_dies_before_starting_it_runs_all_the_same(
    crash_stack: Stack, receiver: Receiver
) -> None:
    """Issue 32, finding 1: a worker on two queues pops with BLPOP, into no list; stopped while it
    waits, it is handed the next job, then killed. The job was 'queued' for ever, in no RQ list;
    now, in no list for LOST_AFTER (2 s here), it is queued again."""
    worker = crash_stack.service("gpu_worker")

    def stopped_in_blpop() -> bool:
        worker.suspend()
        if _blocked_on_its_queues(crash_stack):
            return True
        worker.resume()
        return False

    wait_until(stopped_in_blpop, timeout=120, interval=0.3)
    try:
        job_id = upload(crash_stack, (SPEECH / "upload.mp3").read_bytes(), "popped.mp3")
        queue = rq.Queue(keys.QUEUE, connection=redis.Redis.from_url(crash_stack.redis_url))
        wait_until(lambda: rq.job.Job.exists(job_id, queue.connection), timeout=60)  # routed
        wait_until(lambda: queue.get_job_position(job_id) is None, timeout=60)  # handed to the stopped worker
    finally:
        worker.kill()
    payload = receiver.wait_for(job_id, timeout=300)["json"]
    assert payload["status"] == "finished", crash_stack.log_tail()
    assert attempts(crash_stack, job_id) == 1  # it never started before: no attempt lost


def test_a_drain_then_one_crash_is_one_crash_not_two(
    drain_stack: Stack, receiver: Receiver, long_speech: bytes
) -> None:
    """Issue 32, finding 2: a SIGTERM drain put the job back and the next start counted an
    attempt, so one crash after it (an OOM kill after a rollout) failed the job as "died 2 times"
    with MAX_ATTEMPTS=2. Attempts count the starts that died: the job runs a third time."""
    job_id = upload(drain_stack, long_speech, "drained-then-killed.mp3")
    started(drain_stack, job_id, attempt=1)
    drain_stack.service("gpu_worker").send_signal(signal.SIGTERM)  # drains, puts it back, exits
    started(drain_stack, job_id, attempt=2)  # on the worker the stack started again
    drain_stack.service("gpu_worker").kill()
    payload = receiver.wait_for(job_id, timeout=300)["json"]
    assert payload["status"] == "finished", (payload, drain_stack.log_tail())
    assert attempts(drain_stack, job_id) == 3


def test_two_jobs_run_at_once_on_one_copy_of_the_model(stack: Stack, receiver: Receiver) -> None:
    """The main stack runs MAX_CONCURRENCY=2 in one worker process."""
    ids = [upload(stack, (SPEECH / "upload.mp3").read_bytes(), f"together-{n}.mp3") for n in range(2)]
    wait_until(lambda: httpx.get(f"{stack.url}/v1/stats").json()["started"] == 2, timeout=30, interval=0.02)
    for job_id in ids:
        assert receiver.wait_for(job_id)["json"]["status"] == "finished"
    log = stack.log_tail(100_000)
    assert log.count("loading model tiny.en") == log.count("job slots on") == 1


def test_a_decode_past_ffmpeg_timeout_fails_and_the_worker_goes_on(
    crash_stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    """Three hours of silence in a small file (and no MAX_AUDIO_SECONDS here): ffmpeg decodes it for
    longer than FFMPEG_TIMEOUT=2.
    (A source that never ends is killed the same way: see test_audio.py, on a FIFO.)"""
    silence = make_silence(tmp_path / "three-hours.flac", 3 * 3600)
    job_id = upload(crash_stack, silence.read_bytes(), "three-hours.flac")
    payload = receiver.wait_for(job_id, timeout=60)["json"]
    assert payload["status"] == "failed"
    assert payload["error"] == "decoding took longer than FFMPEG_TIMEOUT (2 s); is the source endless?"

    after = upload(crash_stack, (SPEECH / "upload.mp3").read_bytes(), "after-ffmpeg-timeout.mp3")
    assert receiver.wait_for(after, timeout=60)["json"]["status"] == "finished"


def test_a_worker_sweeps_its_own_scratch_space(crash_stack: Stack) -> None:
    """Issue 32: on Kubernetes each worker pod's scratch is an emptyDir no janitor reaches, and it
    grew until eviction. The worker itself removes folders of jobs no live worker runs, once they
    have been untouched for LOST_AFTER (2 s here)."""
    left = crash_stack.data / "scratch" / ("ab" * 16)  # a job no worker runs
    left.mkdir(parents=True)
    (left / "audio.s16le").write_bytes(b"\0" * 1000)
    wait_until(lambda: not left.exists(), timeout=120)
    assert re.search(r"worker +gpu_worker.pool: removed \d+ scratch folders", crash_stack.log_tail(100_000))
