"""RQ, for the whole project: the only module that imports it (``tests/test_architecture.py``).

Putting work on RQ queues, asking where a job is, and RQ's workers on threads (the last part).

A transcription goes on the queue that serves its model. The router does it for new jobs; workers
do it again for jobs they requeue (a drained or crashed worker's job). Enqueueing an id that is
queued already only refreshes it: the worker's move to ``started`` keeps it from running twice.

A webhook goes on its own queue, for ``transcribe-webhooks``; see ``webhook_sender.delivery``.
A retry that must wait waits in ``keys.WEBHOOKS_DUE``, in Redis, not in RQ's scheduler, whose lock
a killed sender keeps (its next one would take it only ten minutes later). ``keep_webhooks``, run
each second by one sender at a time, queues the retries that are due and gives back what a sender
that died held: an attempt it was running (RQ's ``Retry``, once its worker's key has expired:
``WEBHOOK_HEARTBEAT_TTL``), and one it had taken off the queue but not yet started. RQ's own
workers do the last two only every ten minutes, and the first only 60 to 90 s after the last
heartbeat whatever the worker's own TTL.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import redis
from pydantic import ValidationError
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq import Queue, Retry, SimpleWorker, Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus, get_current_job
from rq.registry import StartedJobRegistry
from rq.timeouts import JobTimeoutException, TimerDeathPenalty
from rq.worker_registration import unregister

from transcribe_common import keys, logs
from transcribe_common.jobstate import record_webhook
from transcribe_common.logs import set_job
from transcribe_common.models import FailedWebhook, FinishedWebhook, WebhookDelivery
from transcribe_common.settings import REDIS_SOCKET_TIMEOUT, CommonSettings

log = logging.getLogger(__name__)

# Seconds one delivery attempt may take in all, whatever the receiver does (RQ kills it after).
WEBHOOK_JOB_TIMEOUT = 120
# Seconds a rewrite of an ended inbox job's outputs beside its drop may take (a few small copies).
REWRITE_TIMEOUT = 300
# Times an attempt is run again at once when it did not end: its sender died in it, or it raised
# (Redis lost while it recorded the outcome). Then it is failed, in RQ's failed registry.
WEBHOOK_REDELIVERIES = 3
# Seconds an attempt may sit taken off the queue and not started before it is queued again (a
# live sender starts it within milliseconds; RQ's own look waits a minute too).
STRANDED_AFTER = 60.0
# Seconds one sender's keeper holds the keeping (it renews it each second while it lives).
KEEPER_LEASE_MS = 5000


def enqueue(
    conn: redis.Redis, job_id: str, model: str | None, settings: CommonSettings, pipeline: Pipeline | None = None
) -> None:
    """RQ enforces ``JOB_TIMEOUT`` and keeps the job's record for ``RQ_RESULT_TTL``. With a
    ``pipeline`` the job is written when the caller executes it (with what else it holds)."""
    call = (keys.WORKER_FUNCTION, (job_id,), job_id, f"transcribe {job_id}")
    _transcription(conn, keys.queue_for(model), settings, *call, pipeline)


def _transcription(
    conn: redis.Redis,
    queue: str,
    settings: CommonSettings,
    function: str,
    args: tuple[object, ...],
    rq_id: str,
    description: str,
    pipeline: Pipeline | None,
    deadline: float | None = None,
) -> None:
    """A job, or a shard of one, on its model's queue: RQ stops it after ``JOB_TIMEOUT``, or at the
    ``deadline`` of the job a shard is part of (``job_deadline``)."""
    timeout = settings.job_timeout if deadline is None else max(1, math.ceil(deadline - time.time()))
    Queue(queue, connection=conn).enqueue_call(
        function,
        args=args,
        job_id=rq_id,
        timeout=timeout,
        result_ttl=settings.rq_result_ttl,
        failure_ttl=settings.rq_result_ttl,
        description=description,
        # Only a job whose manifest the store would not give (it stayed away) raises out of the
        # job function: RQ queues it again, a few times, before the janitor's LOST_AFTER look.
        retry=Retry(max=3),
        pipeline=pipeline,
    )


def job_deadline(started_at: datetime | None, settings: CommonSettings) -> float | None:
    """When a job that started at ``started_at`` has run for ``JOB_TIMEOUT``, its shards and join
    included (a Unix time); None for one not started."""
    return None if started_at is None else started_at.timestamp() + settings.job_timeout


def enqueue_shards(
    conn: redis.Redis,
    job_id: str,
    attempt: int,
    indexes: list[int],
    model: str | None,
    settings: CommonSettings,
    deadline: float | None = None,
) -> None:
    """Each shard of an attempt of a job as an RQ job of its own on the job's queue (in one round
    trip), so that any worker, on any machine, takes the next one."""
    with conn.pipeline() as pipe:
        for index in indexes:
            enqueue_shard(conn, job_id, attempt, index, model, settings, pipeline=pipe, deadline=deadline)
        pipe.execute()


def enqueue_shard(
    conn: redis.Redis,
    job_id: str,
    attempt: int,
    index: int,
    model: str | None,
    settings: CommonSettings,
    pipeline: Pipeline | None = None,
    deadline: float | None = None,
) -> None:
    rq_id, description = keys.shard_job_id(job_id, attempt, index), f"transcribe {job_id}, shard {index + 1}"
    call = (keys.SHARD_FUNCTION, (job_id, attempt, index), rq_id, description)
    _transcription(conn, keys.shard_queue_for(model), settings, *call, pipeline, deadline)


def enqueue_rewrite(conn: redis.Redis, job_id: str, settings: CommonSettings, pipeline: Pipeline | None = None) -> None:
    """Write an ended inbox job's outputs beside its drop again (``keys.BESIDE_FUNCTION``): on the
    default queue, which every worker takes, at its front, since it copies and does not transcribe."""
    Queue(keys.QUEUE, connection=conn).enqueue_call(
        keys.BESIDE_FUNCTION,
        args=(job_id,),
        job_id=keys.beside_job_id(job_id),
        timeout=REWRITE_TIMEOUT,
        result_ttl=settings.rq_result_ttl,
        failure_ttl=settings.rq_result_ttl,
        description=f"rewrite the outputs of {job_id} beside its inbox drop",
        retry=Retry(max=3),  # the store away
        at_front=True,
        pipeline=pipeline,
    )


def enqueue_again(conn: redis.Redis, rq_job_id: str, model: str | None, settings: CommonSettings) -> None:
    """Queue a job, or one shard of one, again: a draining worker's, or a dead one's."""
    shard = keys.shard_of(rq_job_id)
    if shard is None:
        enqueue(conn, rq_job_id, model, settings)
    else:
        enqueue_shard(conn, *shard, model, settings)


def drop(conn: redis.Redis, rq_job_id: str) -> None:
    """Take a queued job (or shard) off its queue; a started one is left to its worker, which stops
    it, and one not routed yet or gone is refused at its start all the same."""
    try:
        job = Job.fetch(rq_job_id, connection=conn)
        if job.get_status() in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            job.cancel()
    except (NoSuchJobError, InvalidJobOperation):
        pass


def drop_shards(conn: redis.Redis, job_id: str, attempt: int, total: int) -> None:
    """Take the queued shards of an attempt off their queue: the job was cancelled, or failed."""
    for index in range(total):
        drop(conn, keys.shard_job_id(job_id, attempt, index))


def shards_waiting(conn: redis.Redis, job_id: str, attempt: int, total: int) -> bool:
    """Whether RQ will still run some shard of this attempt of the job."""
    return any(waiting(conn, keys.shard_job_id(job_id, attempt, index)) for index in range(total))


def waiting(conn: redis.Redis, job_id: str) -> bool:
    """Whether RQ will still run the job: it is in its queue, or in the registry of its scheduled,
    deferred or running jobs. Not what its status says: a worker that takes from several queues
    pops a job with BLPOP, and one that dies before it records the start (or Redis losing its last
    second of writes) leaves the job 'queued' in no list at all, for ever."""
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        return False
    queue = Queue(job.origin, connection=conn)
    status = job.get_status(refresh=False)
    if status == JobStatus.QUEUED:
        return queue.get_job_position(job_id) is not None or job_id in queue.intermediate_queue.get_job_ids()
    registries = {
        JobStatus.SCHEDULED: queue.scheduled_job_registry,
        JobStatus.DEFERRED: queue.deferred_job_registry,
        JobStatus.STARTED: queue.started_job_registry,
    }
    registry = registries.get(status)  # type: ignore[call-overload]
    return registry is not None and job_id in registry


def queue_webhook(conn: redis.Redis, job_id: str, url: str, payload: FinishedWebhook | FailedWebhook) -> None:
    """A job's webhook: recorded as pending on the job and queued for its first attempt, in one
    transaction (a worker that died between the two would leave it pending with nothing to send it).
    Once per ending: two workers that both end a job by the same attempt (a joiner taken for dead
    and the one that took the join over), or one whose final move was retried, both call this."""
    message_id = f"msg_{job_id}_{payload.status}"  # the same on every retry: receivers can drop duplicates

    def queue(pipe: Pipeline) -> None:
        if _held(pipe.hget(keys.job(job_id), "webhook")) == message_id:
            log.info("job %s: webhook %s is queued already", job_id, message_id)
            return
        pipe.multi()  # RQ opens the transaction itself unless it is open already
        record_webhook(conn, job_id, WebhookDelivery(url=url, message_id=message_id), pipeline=pipe)
        enqueue_webhook(conn, job_id, url, payload.model_dump_json(), message_id, pipeline=pipe)

    conn.transaction(queue, keys.job(job_id))


def _held(raw: bytes | str | None) -> str | None:
    """The message id of the webhook a job has queued or delivered; None for none, or for a record
    this version cannot read (then its webhook is queued rather than lost)."""
    try:
        return None if raw is None else WebhookDelivery.model_validate_json(raw).message_id
    except ValidationError:
        return None


def enqueue_webhook(
    conn: redis.Redis,
    job_id: str,
    url: str,
    body: str,
    message_id: str,
    *,
    attempt: int = 1,
    delay: float = 0,
    waited: bool = False,
    pipeline: Pipeline | None = None,
) -> None:
    """Deliver ``body`` to ``url``, now or after ``delay`` seconds (waiting in ``keys.WEBHOOKS_DUE``
    till then, until ``release_due_webhooks``). Each attempt is its own RQ job, so a waiting retry
    holds no worker. ``waited``: the same attempt again, put off because its receiver was busy (an
    RQ job of its own, beside the one that waited)."""
    args = {"job_id": job_id, "url": url, "body": body, "message_id": message_id, "attempt": attempt}
    if delay > 0:
        (conn if pipeline is None else pipeline).zadd(keys.WEBHOOKS_DUE, {json.dumps(args): time.time() + delay})
        return
    Queue(keys.WEBHOOK_QUEUE, connection=conn).enqueue_call(
        keys.WEBHOOK_FUNCTION,
        kwargs=args,
        job_id=f"{message_id}-{attempt}" + (f"-w{uuid.uuid4().hex[:8]}" if waited else ""),
        timeout=WEBHOOK_JOB_TIMEOUT,
        result_ttl=3600,
        failure_ttl=7 * 86400,
        description=f"webhook {message_id}, attempt {attempt}",
        retry=Retry(max=WEBHOOK_REDELIVERIES),
        pipeline=pipeline,
    )


# KEYS: the keeper's lease. ARGV: the holder, its ms. Take the lease, or renew it if held.
_KEEPER = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


def keep_webhooks(conn: redis.Redis, holder: str) -> bool:
    """One round of keeping the webhook queue, if ``holder`` has the keeper's lease (one sender at
    a time: two that gave back the same attempt would each queue it). False if another has it."""
    if not conn.register_script(_KEEPER)(keys=[keys.WEBHOOK_KEEPER], args=[holder, KEEPER_LEASE_MS]):
        return False
    release_due_webhooks(conn)
    queue = Queue(keys.WEBHOOK_QUEUE, connection=conn)
    give_back_abandoned(queue)
    requeue_stranded(queue)
    return True


def give_back_abandoned(queue: Queue) -> list[str]:
    """Attempts whose sender died in them (its worker's key expired): run again, up to
    ``WEBHOOK_REDELIVERIES`` times (their ``Retry``), then failed, in RQ's failed registry. Their ids."""
    given_back = []
    for job_id, execution, registry in list(abandoned(queue.connection, [queue.name])):
        with queue.connection.pipeline() as pipe:
            registry.remove_execution(execution, pipeline=pipe)
            try:
                job = Job.fetch(job_id, connection=queue.connection)
            except NoSuchJobError:  # expired meanwhile: nothing left to run
                pipe.execute()
                continue
            if isinstance(url := job.kwargs.get("url"), str):  # the receiver's slot it held (webhook_sender.delivery)
                pipe.zrem(receiver_key(url), job_id)
            if job.retries_left:
                log.warning("%s: %s lost its sender (%s); queued again", queue.name, job_id, execution.worker_name)
                job.retry(queue, pipe)
            else:
                log.error("%s: %s lost its sender %d times; failed", queue.name, job_id, WEBHOOK_REDELIVERIES + 1)
                job.set_status(JobStatus.FAILED, pipeline=pipe)
                queue.failed_job_registry.add(job, ttl=job.failure_ttl, exc_string="its sender died", pipeline=pipe)
            pipe.execute()
        given_back.append(job_id)
    return given_back


def release_due_webhooks(conn: redis.Redis, most: int = 100) -> int:
    """Queue the webhook retries that are due; how many. Each leaves ``keys.WEBHOOKS_DUE`` in the
    transaction that queues it. One that cannot be read (written by another version, say) goes to
    ``keys.WEBHOOKS_UNREADABLE`` instead of holding up the rest."""
    with conn.pipeline() as pipe:
        pipe.watch(keys.WEBHOOKS_DUE)
        found = pipe.zrangebyscore(keys.WEBHOOKS_DUE, "-inf", time.time(), start=0, num=most)
        due = [keys.text(raw) for raw in found if isinstance(raw, bytes | str)]
        if not due:
            return 0
        pipe.multi()
        for raw in due:
            try:
                enqueue_webhook(conn, **json.loads(raw), pipeline=pipe)
            except (ValueError, TypeError) as exc:
                log.error("a webhook retry that cannot be read is put aside in %s: %s", keys.WEBHOOKS_UNREADABLE, exc)
                pipe.rpush(keys.WEBHOOKS_UNREADABLE, raw)
            pipe.zrem(keys.WEBHOOKS_DUE, raw)
        try:
            pipe.execute()
        except WatchError:  # a retry was added meanwhile: the next round
            return 0
    return len(due)


def webhooks_due(conn: redis.Redis) -> int:
    return int(conn.zcard(keys.WEBHOOKS_DUE))


def receiver_key(url: str) -> str:
    """Where the attempts going to ``url``'s receiver (host and port) hold their slots."""
    return keys.webhook_receiver(httpx.URL(url).netloc.decode() or "?")


def requeue_stranded(queue: Queue, after: float = STRANDED_AFTER) -> list[str]:
    """Jobs a worker took off ``queue`` (into RQ's intermediate queue) and died before starting:
    back on the queue once they have been seen there ``after`` seconds. Their ids."""
    stranded = queue.intermediate_queue
    started = set(queue.started_job_registry.get_job_ids(cleanup=False))
    requeued = []
    for job_id in stranded.get_job_ids():
        if job_id in started or stranded.set_first_seen(job_id):
            continue
        first_seen = stranded.get_first_seen(job_id)
        if first_seen is None or time.time() - first_seen.timestamp() < after:
            continue
        with queue.connection.pipeline() as pipe:
            pipe.lrem(stranded.key, 1, job_id)
            pipe.delete(stranded.get_first_seen_key(job_id))
            queue.push_job_id(job_id, pipeline=pipe)
            pipe.execute()
        log.warning("%s: %s was taken off the queue by a worker that died; queued again", queue.name, job_id)
        requeued.append(job_id)
    return requeued


# What the services read of RQ, without importing it.
JobTimeout = JobTimeoutException  # raised in a job's thread when it runs past its timeout


@dataclass(frozen=True)
class Running:
    """The RQ job this thread runs: its id, its worker's name, its Redis connection."""

    id: str
    worker: str | None
    connection: redis.Redis


def running_job() -> Running | None:
    job = get_current_job()
    return None if job is None else Running(job.id, job.worker_name, job.connection)


def queue_length(conn: redis.Redis, name: str) -> int:
    return Queue(name, connection=conn).count


def queue_names(conn: redis.Redis) -> set[str]:
    """The names of every RQ queue Redis knows of."""
    return {queue.name for queue in Queue.all(connection=conn)}


def queued_ids(conn: redis.Redis, name: str) -> list[str]:
    return Queue(name, connection=conn).get_job_ids()


def started_ids(conn: redis.Redis, name: str) -> list[str]:
    """The ids RQ counts as running on queue ``name``, their workers alive or not."""
    return StartedJobRegistry(queue=Queue(name, connection=conn)).get_job_ids(cleanup=False)


def forget_runs(conn: redis.Redis, rq_job_id: str) -> None:
    """Take a job that has ended out of RQ's registry of running jobs: an execution Redis kept from
    before its end (it came back older than the bucket) names a worker that lives on, which
    neither RQ nor the reapers would ever take for dead."""
    try:
        job = Job.fetch(rq_job_id, connection=conn)
    except NoSuchJobError:
        return
    Queue(job.origin, connection=conn).started_job_registry.remove_executions(job)


def take_off(conn: redis.Redis, name: str, rq_job_id: str) -> None:
    """Take a job off queue ``name`` (it stays a job, in no queue)."""
    Queue(name, connection=conn).remove(rq_job_id)


# RQ's workers on threads of one process: the only subclass of an RQ worker in the project.
#
# RQ's default worker forks a work horse per job. A fork of a process that has loaded a CTranslate2
# model hangs inside CTranslate2, and a forking pool holds a process per slot. So the GPU worker and
# the webhook sender run RQ's ``SimpleWorker``, one per thread: the job timeout is RQ's
# ``TimerDeathPenalty`` (an exception raised in the job's thread), and signals belong to the process's
# main thread, which stops the workers between jobs.
#
# A worker's key in Redis (``rq:worker:<name>``) says it is alive. RQ keeps a busy worker's key for
# the job's whole timeout, and refreshes it only between jobs; here the process's main thread keeps it
# for ``heartbeat_ttl`` seconds (``beat``), so that a process killed in a job is seen dead in
# seconds. ``abandoned`` finds the executions of dead workers; the caller decides what to do with each.
#
# ``tests/transcribe_common/test_jobqueue_workers.py`` pins these overrides against the RQ this project installs.

DEQUEUE_POLL = 2  # seconds an idle worker waits on its queues before it looks for a stop


class ThreadWorker(SimpleWorker):
    death_penalty_class = TimerDeathPenalty

    def __init__(self, *args: Any, heartbeat_ttl: int = 30, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_ttl = heartbeat_ttl
        self.in_job = False  # known here, without asking Redis (which may not answer)

    def _install_signal_handlers(self) -> None:
        """The process's main thread owns the signals."""

    @property
    def connection_timeout(self) -> int:
        """RQ raises its connection's socket timeout to this (its dequeue timeout + 10: 415 s for
        the default worker TTL); keep every service's ``REDIS_SOCKET_TIMEOUT``, which outlasts the
        ``DEQUEUE_POLL`` of our BLPOP: a Redis that stops answering never holds a worker long."""
        return math.ceil(REDIS_SOCKET_TIMEOUT)

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):  # type: ignore[no-untyped-def]
        # RQ keeps a busy worker's key for the job's whole timeout; keep ours short, so that a
        # process killed just after taking a job is seen as dead in seconds, not half an hour.
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        self.in_job = True
        self.heartbeat(timeout=self.heartbeat_ttl)
        set_job(job.id)  # RQ's own lines about this job carry its id too (cleared at the next dequeue)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):  # type: ignore[no-untyped-def]
        # RQ's loop waits for a job forever; come up for air to notice a stop request.
        self.in_job = False
        set_job(None)
        while True:
            result = super().dequeue_job_and_maintain_ttl(DEQUEUE_POLL, max_idle_time=DEQUEUE_POLL)
            if result is not None or self._stop_requested:
                return result

    def stop_after_job(self) -> None:
        """Take no more jobs: the running one finishes, then ``work`` returns."""
        self._stop_requested = True

    def beat(self) -> None:
        """Keep this worker's key, and so its running job, alive for ``heartbeat_ttl`` seconds more."""
        self.heartbeat(timeout=self.heartbeat_ttl)

    def forget(self) -> None:
        """Take back what an earlier process under this worker's name left: its registration."""
        with self.connection.pipeline() as pipe:
            unregister(self, pipe)
            pipe.delete(self.key)
            pipe.execute()


def start(workers: list[ThreadWorker], daemon: bool = False) -> list[threading.Thread]:
    """Each worker's loop on a thread of its own, logging only what goes wrong. ``daemon``: the
    process may end without them (a worker waiting for Redis that does not answer, say)."""
    threads = []
    for worker in workers:
        kwargs = {"logging_level": "WARNING"}
        thread = logs.thread(worker.work, worker.name, **kwargs)  # its lines: the caller's service's
        thread.daemon = daemon
        thread.start()
        threads.append(thread)
    return threads


def worker_alive(conn: redis.Redis, name: str | None) -> bool:
    """RQ keeps a worker's key a minute after it registered its death; it is not alive then."""
    if not name:
        return False
    key = Worker.redis_worker_namespace_prefix + name
    with conn.pipeline(transaction=False) as pipe:
        pipe.exists(key)
        pipe.hexists(key, "death")
        exists, dead = pipe.execute()
    return bool(exists) and not dead


def abandoned(conn: redis.Redis, queue_names: list[str]) -> Iterator[tuple[str, Execution, StartedJobRegistry]]:
    """The executions on these queues whose worker is dead: (job id, execution, its registry)."""
    for name in queue_names:
        registry = StartedJobRegistry(queue=Queue(name, connection=conn))
        for job_id, execution_id in registry.get_job_and_execution_ids():
            execution = Execution.fetch(execution_id, job_id, connection=conn)
            if not worker_alive(conn, execution.worker_name):
                yield job_id, execution, registry
