"""The webhook sender as a real process (RQ's WorkerPool and its keeper) against real Redis and a
real receiver that verifies every signature with the standardwebhooks library."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from rq import Queue

from tests.helpers import WEBHOOK_SECRET, Receiver, wait_until
from transcribe_common import jobqueue, jobstate, keys
from transcribe_common.models import FailedWebhook, FinishedWebhook, utcnow
from webhook_sender.delivery import receiver_slot, retry_after, signed_headers

BACKOFF = 0.3


def _start(redis_url: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``transcribe-webhooks`` in a process group of its own, as a supervisor starts it."""
    settings = {
        "REDIS_URL": redis_url,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "URL_ALLOWLIST": "127.0.0.1",
        "WEBHOOK_BACKOFF": str(BACKOFF),
        "WEBHOOK_ATTEMPTS": "4",
        "WEBHOOK_TIMEOUT": "2",
        "WEBHOOK_CONCURRENCY": "2",  # so one receiver gets one sender at a time
        "WEBHOOK_DEADLINE": "3",
        "WEBHOOK_METRICS_PORT": "0",
    }
    started = _starts(log)
    process = subprocess.Popen(
        [sys.executable, "-m", "webhook_sender"],
        env={**os.environ, **settings, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    # It says so once its workers run, its signal handlers set.
    wait_until(lambda: _starts(log) > started or process.poll() is not None, timeout=60)
    assert process.poll() is None, log.read_text()
    return process


def fresh_db(redis_server: str, db: int) -> tuple[str, redis.Redis]:
    """A database of the test Redis, emptied: its URL, and a connection to it."""
    redis_url = redis_server.rsplit("/", 1)[0] + f"/{db}"
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    return redis_url, conn


def _starts(log: Path) -> int:
    return log.read_text().count("delivering webhooks from") if log.exists() else 0


@pytest.fixture(scope="module")
def sender(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[redis.Redis]:
    redis_url = redis_server.rsplit("/", 1)[0] + "/4"
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    process = _start(redis_url, tmp_path_factory.mktemp("webhooks") / "sender.log")
    try:
        yield conn
    finally:
        process.terminate()
    process.wait(30)


def _send(conn: redis.Redis, job_id: str, url: str, *, failed: bool = False) -> None:
    # A job that ended, with the live state its webhook's delivery log is kept beside.
    conn.hset(
        keys.job(job_id), mapping={"status": "failed" if failed else "finished", "updated_at": utcnow().isoformat()}
    )
    payload = (
        FailedWebhook(job_id=job_id, error="bad media", db_id=7)
        if failed
        else FinishedWebhook(job_id=job_id, language="en", duration=1.5, output="srt", minio_url="http://x/r.srt")
    )
    jobqueue.queue_webhook(conn, job_id, url, payload)


def _settled(conn: redis.Redis, job_id: str):  # type: ignore[no-untyped-def]
    record = jobstate.read_webhook(conn, job_id)
    return record if record is not None and record.state != "pending" else None


def test_a_webhook_is_signed_and_delivered_once(sender: redis.Redis, receiver: Receiver) -> None:
    url = receiver.script("/ok")
    _send(sender, "a" * 32, url, failed=True)
    record = wait_until(lambda: _settled(sender, "a" * 32), timeout=30)
    assert record.state == "delivered"
    assert [a.status_code for a in record.attempts] == [204]
    (call,) = receiver.on_path("/ok")
    assert call["verified"], "the standardwebhooks library refused the signature"
    assert call["json"] == {"job_id": "a" * 32, "status": "failed", "error": "bad media", "db_id": 7}
    assert call["headers"]["webhook-id"] == record.message_id


def test_server_errors_are_retried_with_the_same_id_and_growing_waits(sender: redis.Redis, receiver: Receiver) -> None:
    url = receiver.script("/flaky", 500, 503, 502)
    _send(sender, "b" * 32, url)
    record = wait_until(lambda: _settled(sender, "b" * 32), timeout=60)
    assert record.state == "delivered"
    assert [a.status_code for a in record.attempts] == [500, 503, 502, 204]
    calls = receiver.on_path("/flaky")
    assert len({c["headers"]["webhook-id"] for c in calls}) == 1
    assert all(c["verified"] for c in calls)
    # Waits are at least half the doubling backoff (equal jitter): 0.15, 0.3, 0.6 s.
    waits = [b["at"] - a["at"] for a, b in itertools.pairwise(calls)]
    assert all(wait >= BACKOFF * 2**n / 2 for n, wait in enumerate(waits)), waits


def test_retry_after_is_honoured(sender: redis.Redis, receiver: Receiver) -> None:
    url = receiver.script("/busy", (429, {"Retry-After": "3"}))
    _send(sender, "c" * 32, url)
    record = wait_until(lambda: _settled(sender, "c" * 32), timeout=30)
    assert [a.status_code for a in record.attempts] == [429, 204]
    first, second = receiver.on_path("/busy")
    assert second["at"] - first["at"] >= 3.0


@pytest.mark.parametrize(("status", "path"), [(410, "/gone"), (400, "/bad"), (302, "/moved")])
def test_gone_and_client_errors_stop_the_retries(
    sender: redis.Redis, receiver: Receiver, status: int, path: str
) -> None:
    job_id = f"{status}".ljust(32, "d")
    url = receiver.script(path, (status, {"Location": "http://127.0.0.1:9/"}) if status == 302 else status)
    _send(sender, job_id, url)
    record = wait_until(lambda: _settled(sender, job_id), timeout=30)
    assert record.state == "failed"
    assert [a.status_code for a in record.attempts] == [status]
    assert len(receiver.on_path(path)) == 1


def test_a_receiver_that_stays_down_is_given_up_after_the_attempts(sender: redis.Redis) -> None:
    _send(sender, "e" * 32, "http://127.0.0.1:9/nobody-listens")
    record = wait_until(lambda: _settled(sender, "e" * 32), timeout=60)
    assert record.state == "failed"
    assert len(record.attempts) == 4
    assert all(a.status_code is None and a.error for a in record.attempts)
    assert record.next_attempt_at is None


def test_a_private_callback_is_refused_by_the_sender_too(sender: redis.Redis) -> None:
    _send(sender, "f" * 32, "http://10.255.255.1/hook")
    record = wait_until(lambda: _settled(sender, "f" * 32), timeout=30)
    assert record.state == "failed"
    assert "private address" in (record.attempts[0].error or "")
    assert len(record.attempts) == 1


@pytest.fixture
def trickler() -> Iterator[str]:
    """A receiver that takes the POST and then answers a byte every half second, for ever: never
    slow enough for a read to time out, never done."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow-hook"
    server.shutdown()


class _Trickle(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            return  # the sender gave up

    def log_message(self, *args: object) -> None:
        pass


def test_a_slow_receiver_neither_stalls_others_nor_loses_its_own(
    sender: redis.Redis, receiver: Receiver, trickler: str
) -> None:
    """Four webhooks to a receiver that trickles its answer, and one to a healthy receiver: the
    healthy one is delivered at once (the slow one gets one sender of the two), and each attempt to
    the slow one ends within WEBHOOK_DEADLINE, recorded, with its next attempt scheduled."""
    slow = [f"{n}".ljust(32, "7") for n in range(4)]
    for job_id in slow:
        _send(sender, job_id, trickler)
    url = receiver.script("/healthy")
    _send(sender, "8" * 32, url)
    record = wait_until(lambda: _settled(sender, "8" * 32), timeout=60)  # the slow ones alone would hold 120 s
    assert record.state == "delivered"

    def attempted():  # type: ignore[no-untyped-def]
        found = [jobstate.read_webhook(sender, job_id) for job_id in slow]
        return next((record for record in found if record is not None and record.attempts), None)

    first = wait_until(attempted, timeout=60)
    assert first.attempts[0].error == "no answer within WEBHOOK_DEADLINE (3 s)"
    assert first.attempts[0].status_code is None
    assert first.state == "pending"
    assert first.next_attempt_at is not None  # tried again like any failure


def test_retry_after_reads_both_forms() -> None:
    assert retry_after("120") == 120
    later = datetime.now(UTC) + timedelta(seconds=90)
    assert 80 < (retry_after(format_datetime(later, usegmt=True)) or 0) <= 90
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_a_receiver_s_slots_are_leases_that_refusals_do_not_hold_and_deaths_do_not_keep(
    redis_conn: redis.Redis,
) -> None:
    """Found by the chaos run (issue 16): refused attempts held their count while they waited, and a
    sender killed while it held one leaked it for good, until no webhook went to that receiver."""
    url = "http://hooks.example.org/x"
    with receiver_slot(redis_conn, url, 1) as first:
        assert first
        for _ in range(5):
            with receiver_slot(redis_conn, url, 1) as refused:
                assert not refused
    with receiver_slot(redis_conn, url, 1) as again:
        assert again  # the refusals held nothing
    key = keys.webhook_receiver("hooks.example.org")
    redis_conn.zadd(key, {"a sender that was SIGKILLed": time.time() - 1})  # its lease has run out
    with receiver_slot(redis_conn, url, 1) as after_a_death:
        assert after_a_death


@pytest.mark.timeout(900)
def test_webhooks_in_flight_or_waiting_when_the_sender_is_killed_are_delivered_by_the_next(
    redis_server: str, receiver: Receiver, tmp_path: Path
) -> None:
    """Found by the chaos run (issue 16). The sender is SIGKILLed (its pool and workers) with one
    attempt in flight and another webhook waiting for its retry. The next sender delivers both,
    each under its one webhook-id. Before, the attempt in flight went to RQ's failed registry
    (AbandonedJobError) for good, and the retry waited for RQ's scheduler lock, which the dead
    sender held: a new sender takes it ten minutes later. The attempt in flight is given back once
    the dead sender's workers' keys expire: its WEBHOOK_HEARTBEAT_TTL, 2 s here (RQ's own look
    waits 60 to 90 s past the last heartbeat, whatever the TTL)."""
    redis_url = redis_server.rsplit("/", 1)[0] + "/5"
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    log = tmp_path / "sender.log"
    url, held = receiver.script("/in-flight"), receiver.hold("/in-flight")
    retried = receiver.script("/retried", 503)
    first = _start(
        redis_url,
        log,
        WEBHOOK_DEADLINE="60",
        WEBHOOK_TIMEOUT="60",
        WEBHOOK_BACKOFF="4",
        WEBHOOK_PER_RECEIVER="2",
        WEBHOOK_HEARTBEAT_TTL="2",
    )
    try:
        _send(conn, "1" * 32, url)
        _send(conn, "2" * 32, retried)
        wait_until(lambda: receiver.on_path("/in-flight") and receiver.on_path("/retried"), timeout=60)
        wait_until(lambda: conn.zcard(keys.WEBHOOKS_DUE) == 1, timeout=60)  # its retry waits
    finally:
        first.kill()
        first.wait(30)
        held.set()
    second = _start(redis_url, log)
    try:
        for job_id, path in (("2" * 32, "/retried"), ("1" * 32, "/in-flight")):
            record = wait_until(lambda job_id=job_id: _settled(conn, job_id), timeout=600)
            assert record.state == "delivered", log.read_text()[-3000:]
            calls = receiver.on_path(path)
            assert len(calls) == 2
            assert all(c["verified"] for c in calls)
            assert {c["headers"]["webhook-id"] for c in calls} == {record.message_id}
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(30)


def test_the_keeper_gives_back_what_dead_senders_held_and_puts_aside_what_it_cannot_read(
    redis_conn: redis.Redis,
) -> None:
    """One keeper at a time (a lease); a due retry that another version wrote, say, does not hold
    up the others; an attempt a sender took off the queue (RQ's intermediate queue) and died before
    starting is queued again once it has been seen there long enough."""
    assert jobqueue.keep_webhooks(redis_conn, "sender-a")
    assert not jobqueue.keep_webhooks(redis_conn, "sender-b")  # a has the lease
    assert jobqueue.keep_webhooks(redis_conn, "sender-a")
    redis_conn.zadd(keys.WEBHOOKS_DUE, {'{"job_id": "x", "renamed": 1}': 1.0, "not json": 2.0})
    jobqueue.enqueue_webhook(redis_conn, "9" * 32, "http://127.0.0.1:9/h", "{}", "msg_9", attempt=2, delay=0.001)
    wait_until(lambda: jobqueue.release_due_webhooks(redis_conn) == 0 == redis_conn.zcard(keys.WEBHOOKS_DUE))
    queue = Queue(keys.WEBHOOK_QUEUE, connection=redis_conn)
    assert queue.get_job_ids() == ["msg_9-2"]
    assert redis_conn.llen(keys.WEBHOOKS_UNREADABLE) == 2
    assert redis_conn.zcard(keys.WEBHOOKS_DUE) == 0
    # A sender took msg_9-2 off the queue, as RQ's workers do, and died before it started it.
    redis_conn.lmove(queue.key, queue.intermediate_queue.key)
    assert jobqueue.requeue_stranded(queue, after=0) == []  # seen there the first time
    assert jobqueue.requeue_stranded(queue, after=3600) == []  # not there for long enough
    assert jobqueue.requeue_stranded(queue, after=0) == ["msg_9-2"]
    assert queue.get_job_ids() == ["msg_9-2"]
    assert redis_conn.llen(queue.intermediate_queue.key) == 0


def test_an_unsigned_webhook_still_carries_its_id() -> None:
    """Found by a new user: without WEBHOOK_SECRET (the embedded default) a receiver had no
    webhook-id to drop the repeats of an at-least-once delivery by."""
    headers = signed_headers("", "msg_1_finished", "{}")
    assert headers["webhook-id"] == "msg_1_finished"
    assert headers["webhook-timestamp"].isdigit()
    assert "webhook-signature" not in headers


def test_an_ending_told_twice_queues_its_webhook_once(redis_conn: redis.Redis) -> None:
    """Two workers that both end a job by the same attempt (a joiner taken for dead while it was
    joining, and the one that took the join over; a final move retried after Redis came back):
    each move counts as done, each queues the webhook, and the receiver is called once."""
    job_id = "4" * 32
    _send(redis_conn, job_id, "http://127.0.0.1:9/hook")
    _send(redis_conn, job_id, "http://127.0.0.1:9/hook")
    queue = Queue(keys.WEBHOOK_QUEUE, connection=redis_conn)
    assert queue.get_job_ids() == [f"msg_{job_id}_finished-1"]
    record = jobstate.read_webhook(redis_conn, job_id)
    assert record is not None
    assert record.state == "pending"
    _send(redis_conn, job_id, "http://127.0.0.1:9/hook", failed=True)  # another ending is another message
    assert queue.get_job_ids() == [f"msg_{job_id}_finished-1", f"msg_{job_id}_failed-1"]


def test_an_ending_whose_webhook_record_cannot_be_read_still_queues_it(redis_conn: redis.Redis) -> None:
    """A delivery log another version wrote, or a broken one, does not cost the job its webhook."""
    job_id = "5" * 32
    redis_conn.hset(keys.job(job_id), "webhook", "{not json")
    _send(redis_conn, job_id, "http://127.0.0.1:9/hook")
    assert Queue(keys.WEBHOOK_QUEUE, connection=redis_conn).get_job_ids() == [f"msg_{job_id}_finished-1"]
