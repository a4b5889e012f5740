"""``transcribe_common.jobqueue``'s workers against the RQ this project installs: real RQ workers on threads,
on a real Redis, running a job that waits for the test."""

from __future__ import annotations

import threading

import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus

from tests.helpers import wait_until
from transcribe_common import jobqueue, keys
from transcribe_common.settings import REDIS_SOCKET_TIMEOUT

GATE = threading.Event()
URL = "http://hooks.example.org/x"


def held(url: str) -> str:
    """A job that runs until the test opens the gate."""
    GATE.wait(120)
    return url


def test_a_thread_worker_keeps_a_short_key_in_a_job_and_stops_after_it(redis_conn: redis.Redis) -> None:
    GATE.clear()
    queue = Queue("transcribe:test-rqworker", connection=redis_conn)
    job = queue.enqueue_call(held, kwargs={"url": URL}, job_id="held-1")
    worker = jobqueue.ThreadWorker([queue], name="test-thread-0", connection=redis_conn, heartbeat_ttl=7)
    # RQ would raise its socket timeout to 415 s: a Redis that hangs would hold the worker that long.
    assert worker.connection.connection_pool.connection_kwargs["socket_timeout"] == REDIS_SOCKET_TIMEOUT
    [thread] = jobqueue.start([worker])
    try:
        wait_until(lambda: job.get_status() == JobStatus.STARTED, timeout=30)
        assert 0 < redis_conn.ttl(worker.key) <= 7  # not RQ's job timeout + 60
        assert jobqueue.worker_alive(redis_conn, worker.name)
        assert list(jobqueue.abandoned(redis_conn, [queue.name])) == []
        worker.stop_after_job()
    finally:
        GATE.set()
    thread.join(30)
    assert not thread.is_alive()
    assert job.get_status() == JobStatus.FINISHED
    assert not jobqueue.worker_alive(redis_conn, worker.name)  # it registered its death


def test_an_attempt_whose_sender_stopped_beating_is_given_back_with_its_receiver_slot(
    redis_conn: redis.Redis,
) -> None:
    """The sender's keeper (``jobqueue.give_back_abandoned``): once the worker's key has expired
    (no beat within its TTL, as after a SIGKILL), its attempt goes back on the queue, and the
    receiver's slot it held is freed; an attempt with no retries left is failed instead."""
    GATE.clear()
    queue = Queue(keys.WEBHOOK_QUEUE, connection=redis_conn)
    slot = jobqueue.receiver_key(URL)
    for n, retries in ((1, 1), (2, None)):
        job_id = f"msg_{n}-1"
        retry = Retry(max=retries) if retries else None
        job = queue.enqueue_call(held, kwargs={"url": URL}, job_id=job_id, retry=retry)
        worker = jobqueue.ThreadWorker([queue], name=f"test-sender-{n}", connection=redis_conn, heartbeat_ttl=2)
        [thread] = jobqueue.start([worker])
        try:
            wait_until(lambda job=job: job.get_status() == JobStatus.STARTED, timeout=30)
            redis_conn.zadd(slot, {job_id: 1e12})  # as webhook_sender.delivery.receiver_slot holds it
            worker.stop_after_job()
            # Nothing beats for it: its key runs out while the job still runs.
            wait_until(lambda job_id=job_id: jobqueue.give_back_abandoned(queue) == [job_id], timeout=30)
            assert redis_conn.zscore(slot, job_id) is None
            refreshed = Job.fetch(job_id, connection=redis_conn)
            if retries:
                assert refreshed.get_status() == JobStatus.QUEUED
                assert queue.get_job_ids() == [job_id]
                queue.remove(job_id)
            else:
                assert refreshed.get_status() == JobStatus.FAILED
                assert job_id in queue.failed_job_registry.get_job_ids()
            assert jobqueue.give_back_abandoned(queue) == []  # once
        finally:
            GATE.set()
            thread.join(30)
        GATE.clear()
