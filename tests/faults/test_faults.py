"""Faults, with real processes: each test breaks one hop of the embedded stack while jobs flow,
then shows that every job reached the right final status once, that its outputs are there once,
that its webhook came once and verified, that no queue holds anything, and that /v1/stats adds up.

The stack's Redis is started here, with its append-only file, so that a test can restart it; the
stack runs a 3 s worker heartbeat, a 1 s reaper and a janitor every second with ``LOST_AFTER=3``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from rq import Queue
from rq.registry import StartedJobRegistry

from embedded.redis_server import free_port, start_redis, stop_redis
from tests.conftest import INBOX_BUCKET, JOBS_BUCKET, Stack, running_stack
from tests.helpers import SPEECH, WEBHOOK_SECRET, Receiver, wait_until
from tests.test_pipeline import upload
from transcribe_common import keys, layout
from transcribe_common.models import OUTPUT_FORMATS
from transcribe_common.store.base import put_bytes
from transcribe_common.store.local import LocalStore

CLIP = (SPEECH / "upload.mp3").read_bytes()
JOB_FILES = {"manifest.json", "status.json", "input/talk.mp3"}


@dataclass
class RedisProcess:
    data: Path
    port: int
    process: object = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process, _ = start_redis(self.data, appendonly=True, port=self.port)

    def stop(self) -> None:
        stop_redis(self.process)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fault_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("fault-redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fault_stack(
    tmp_path_factory: pytest.TempPathFactory, fault_redis: RedisProcess, receiver: Receiver
) -> Iterator[Stack]:
    settings = {
        "MAX_CONCURRENCY": "2",
        "WORKER_HEARTBEAT_TTL": "3",
        "REAP_INTERVAL": "1",
        "MAX_ATTEMPTS": "3",
        "JANITOR_INTERVAL": "1",
        "LOST_AFTER": "3",
        "WEBHOOK_BACKOFF_MAX": "2",
        "IO_BACKOFF": "0.2",
        "SERVICES_APART": "true",  # production's layout: a fault hits one service, the API goes on
    }
    with running_stack(tmp_path_factory.mktemp("faults"), fault_redis.url, receiver, **settings) as stack:
        yield stack


def submit(stack: Stack, count: int, **fields: str) -> list[str]:
    return [upload(stack, CLIP, "talk.mp3", **fields) for _ in range(count)]


def job(stack: Stack, job_id: str) -> dict:
    return dict(httpx.get(f"{stack.url}/v1/jobs/{job_id}", timeout=10).json())


def settle(stack: Stack, job_ids: list[str], timeout: float = 180) -> None:
    def ended() -> bool:
        try:
            return all(job(stack, j).get("status") in ("finished", "failed", "cancelled") for j in job_ids)
        except httpx.HTTPError:
            return False

    try:
        wait_until(ended, timeout=timeout, interval=0.5)
    except AssertionError:
        states = {j: job(stack, j).get("status") for j in job_ids}
        raise AssertionError(f"jobs did not end: {states}\n{stack.log_tail(80)}") from None


def check(
    stack: Stack,
    receiver: Receiver,
    job_ids: list[str],
    *,
    webhook_path: str = "/default",
    conn: redis.Redis | None = None,
) -> None:
    """Every job finished once, with each output once and one verified webhook; nothing is left
    queued anywhere (in ``conn``, the stack's Redis by default), and /v1/stats agrees with the jobs."""
    settle(stack, job_ids)
    conn = conn or redis.Redis.from_url(stack.redis_url)
    for job_id in job_ids:
        record = job(stack, job_id)
        assert record["status"] == "finished", record
        folder = stack.data / "buckets" / JOBS_BUCKET / job_id
        # Every format once, published from the attempt that finished the job.
        stored = json.loads((folder / "status.json").read_text())
        outputs = {key.removeprefix(f"{job_id}/") for key in stored["outputs"].values()}
        assert outputs == {f"attempt-{stored['attempts']}/result.{fmt}" for fmt in OUTPUT_FORMATS}, stored

        # What an attempt that did not end the job wrote is seen by no reader; the janitor (each
        # second here) removes it.
        def files(folder: Path = folder) -> set[str]:
            return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}

        with contextlib.suppress(AssertionError):  # said below, with what differs
            wait_until(lambda expected=JOB_FILES | outputs: files() == expected, timeout=60, interval=0.2)
        assert files() == JOB_FILES | outputs
        receiver.wait_for(job_id)
        calls = [c for c in receiver.for_job(job_id) if c["path"] == webhook_path]
        assert [c["headers"]["webhook-id"] for c in calls] == [f"msg_{job_id}_finished"], calls
        assert all(c["verified"] for c in calls)
    assert_drained(stack, conn)


def assert_drained(stack: Stack, conn: redis.Redis) -> None:
    def drained() -> bool:
        lists = (keys.EVENTS, keys.EVENTS_PROCESSING)
        started = StartedJobRegistry(queue=Queue(keys.QUEUE, connection=conn))
        return (
            not any(conn.llen(name) for name in lists)
            and Queue(keys.QUEUE, connection=conn).count == 0
            and (started.count == 0)
        )

    wait_until(drained, timeout=30, interval=0.2)
    assert conn.llen(keys.EVENTS_DEAD) == 0
    stats = httpx.get(f"{stack.url}/v1/stats", timeout=10).json()
    recount = Counter(keys.text(conn.hget(k, "status") or b"new") for k in conn.scan_iter(keys.job("*")))
    for status in ("queued", "started", "finished", "failed", "cancelled"):
        assert stats[status] == recount[status], (status, stats, recount)


def test_a_worker_killed_mid_job_loses_nothing(fault_stack: Stack, receiver: Receiver) -> None:
    job_ids = submit(fault_stack, 4)
    wait_until(lambda: job(fault_stack, job_ids[0])["status"] == "started", timeout=60, interval=0.1)
    fault_stack.service("gpu_worker").kill()  # SIGKILL: the supervisor starts a new one
    check(fault_stack, receiver, job_ids)
    conn = redis.Redis.from_url(fault_stack.redis_url)
    attempts = sorted(int(conn.hget(keys.job(j), "attempts") or 0) for j in job_ids)
    assert attempts[-1] == 2, attempts  # the killed ones ran again, and only they


def test_the_router_killed_between_reading_and_enqueueing_loses_nothing(fault_stack: Stack, receiver: Receiver) -> None:
    conn = redis.Redis.from_url(fault_stack.redis_url)
    store = LocalStore(fault_stack.data / "buckets", notify=lambda record: conn.rpush(keys.EVENTS, record))
    router = fault_stack.service("event_router")
    for attempt in range(10):
        router.send_signal(signal.SIGSTOP)
        # Caught blocked in BLMOVE: Redis will hand it the next event, which it will never handle.
        blocked = [c for c in conn.client_list() if c["name"] == "transcribe-router" and c["cmd"] == "blmove"]
        key = f"faults/router-{attempt}.mp3"
        put_bytes(store, INBOX_BUCKET, key, CLIP, content_type="audio/mpeg")
        time.sleep(0.2)
        if blocked and conn.llen(keys.EVENTS_PROCESSING) == 1 and conn.llen(keys.EVENTS) == 0:
            break
        router.send_signal(signal.SIGCONT)  # missed the window: this drop is routed as usual
        time.sleep(1.5)
    else:
        pytest.fail("could not catch the router between BLMOVE and enqueue")
    info = store.stat(INBOX_BUCKET, key)
    assert info is not None
    job_id = layout.inbox_job_id(INBOX_BUCKET, key, info.etag)
    assert not conn.exists(keys.job(job_id))  # read, not handled
    router.kill()  # SIGKILL works on a stopped process; the supervisor starts a new router
    settle(fault_stack, [job_id])
    assert job(fault_stack, job_id)["status"] == "finished"
    beside = sorted(p.name for p in (fault_stack.inbox / "faults").iterdir() if p.name.startswith(f"router-{attempt}."))
    assert beside == [f"router-{attempt}.mp3", f"router-{attempt}.srt"]
    assert_drained(fault_stack, conn)


def test_events_dropped_on_purpose_are_recovered_by_the_janitor(fault_stack: Stack, receiver: Receiver) -> None:
    conn = redis.Redis.from_url(fault_stack.redis_url)
    router = fault_stack.service("event_router")
    router.send_signal(signal.SIGSTOP)
    time.sleep(1.5)  # its BLMOVE has timed out: it holds no event
    try:
        job_ids = submit(fault_stack, 3)
        store = LocalStore(fault_stack.data / "buckets")  # announces nothing: the drop's event is lost
        put_bytes(store, INBOX_BUCKET, "faults/dropped.mp3", CLIP, content_type="audio/mpeg")
        assert conn.llen(keys.EVENTS) == 6  # each upload's input and manifest
        conn.delete(keys.EVENTS)
    finally:
        router.send_signal(signal.SIGCONT)
    check(fault_stack, receiver, job_ids)
    info = LocalStore(fault_stack.data / "buckets").stat(INBOX_BUCKET, "faults/dropped.mp3")
    assert info is not None
    drop_id = layout.inbox_job_id(INBOX_BUCKET, "faults/dropped.mp3", info.etag)
    settle(fault_stack, [drop_id])
    assert (fault_stack.inbox / "faults" / "dropped.srt").is_file()
    log = fault_stack.log.read_text()
    assert "no live status; announcing its manifest again" in log
    assert "inbox faults/dropped.mp3: no job; announcing it again" in log


def test_a_webhook_receiver_down_for_a_while_gets_every_webhook_once_back(fault_stack: Stack) -> None:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/back"
    job_ids = submit(fault_stack, 3, callback_url=callback)
    settle(fault_stack, job_ids)

    def failed_attempts() -> bool:
        return all(len((job(fault_stack, j)["webhook"] or {}).get("attempts", [])) >= 2 for j in job_ids)

    wait_until(failed_attempts, timeout=60, interval=0.5)
    assert all(job(fault_stack, j)["webhook"]["state"] == "pending" for j in job_ids)
    late = Receiver(WEBHOOK_SECRET, port=port)
    try:
        check(fault_stack, late, job_ids, webhook_path="/back")
        for job_id in job_ids:
            webhook = job(fault_stack, job_id)["webhook"]
            assert webhook["state"] == "delivered"
            assert webhook["attempts"][-1]["status_code"] == 204
            assert all(a["status_code"] is None for a in webhook["attempts"][:-1])
    finally:
        late.close()


def test_redis_restarted_mid_flow_loses_nothing(
    fault_stack: Stack, fault_redis: RedisProcess, receiver: Receiver
) -> None:
    job_ids = submit(fault_stack, 4)
    wait_until(lambda: job(fault_stack, job_ids[0])["status"] == "started", timeout=60, interval=0.1)
    fault_redis.stop()  # SIGTERM: it writes its append-only file and exits
    time.sleep(3)
    fault_redis.start()
    check(fault_stack, receiver, job_ids)
    after = submit(fault_stack, 2)  # and the stack is whole again
    check(fault_stack, receiver, after)
