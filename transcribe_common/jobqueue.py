"""Putting work on RQ queues.

A transcription goes on the queue that serves its model. The router does it for new jobs; workers
do it again for jobs they requeue (a drained or crashed worker's job). Enqueueing an id that is
queued already only refreshes it: the worker's move to ``started`` keeps it from running twice.

A webhook goes on its own queue, for ``transcribe-webhooks``; see ``webhook_sender.delivery``.
An attempt whose sender died is run again (RQ's ``Retry``, once RQ sees the execution abandoned);
a retry that must wait waits in ``keys.WEBHOOKS_DUE``, in Redis, not in RQ's scheduler, whose lock
a killed sender keeps (its next one would take it only ten minutes later).
"""

from __future__ import annotations

import json
import time
import uuid

import redis
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from transcribe_common import keys
from transcribe_common.jobstate import record_webhook
from transcribe_common.models import FailedWebhook, FinishedWebhook, WebhookDelivery
from transcribe_common.settings import CommonSettings

# Seconds one delivery attempt may take in all, whatever the receiver does (RQ kills it after).
WEBHOOK_JOB_TIMEOUT = 120
# Times an attempt is run again when its sender died in it (after that it is failed, in RQ's failed registry).
WEBHOOK_REDELIVERIES = 3


def enqueue(
    conn: redis.Redis, job_id: str, model: str | None, settings: CommonSettings, pipeline: Pipeline | None = None
) -> None:
    """RQ enforces ``JOB_TIMEOUT`` and keeps the job's record for ``RQ_RESULT_TTL``. With a
    ``pipeline`` the job is written when the caller executes it (with what else it holds)."""
    Queue(keys.queue_for(model), connection=conn).enqueue_call(
        keys.WORKER_FUNCTION,
        args=(job_id,),
        job_id=job_id,
        timeout=settings.job_timeout,
        result_ttl=settings.rq_result_ttl,
        failure_ttl=settings.rq_result_ttl,
        description=f"transcribe {job_id}",
        # Only a job whose manifest the store would not give (it stayed away) raises out of the
        # job function: RQ queues it again, a few times, before the janitor's LOST_AFTER look.
        retry=Retry(max=3),
        pipeline=pipeline,
    )


def waiting(conn: redis.Redis, job_id: str) -> bool:
    """Whether RQ will still run the job: it is queued, scheduled or running (not finished, failed,
    or gone: RQ gave up on it, or a router died before enqueueing it)."""
    try:
        job = Job.fetch(job_id, connection=conn)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in (
        JobStatus.QUEUED,
        JobStatus.SCHEDULED,
        JobStatus.DEFERRED,
        JobStatus.STARTED,
    )


def queue_webhook(conn: redis.Redis, job_id: str, url: str, payload: FinishedWebhook | FailedWebhook) -> None:
    """A job's webhook: recorded as pending on the job, then queued for its first attempt."""
    message_id = f"msg_{job_id}_{payload.status}"  # the same on every retry: receivers can drop duplicates
    record_webhook(conn, job_id, WebhookDelivery(url=url, message_id=message_id))
    enqueue_webhook(conn, job_id, url, payload.model_dump_json(), message_id)


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
        conn.zadd(keys.WEBHOOKS_DUE, {json.dumps(args): time.time() + delay})
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


def release_due_webhooks(conn: redis.Redis, most: int = 100) -> int:
    """Queue the webhook retries that are due; how many. Each leaves ``keys.WEBHOOKS_DUE`` in the
    transaction that queues it, and one that another sender moved meanwhile waits for the next call."""
    with conn.pipeline() as pipe:
        pipe.watch(keys.WEBHOOKS_DUE)
        found = pipe.zrangebyscore(keys.WEBHOOKS_DUE, "-inf", time.time(), start=0, num=most)
        due = [keys.text(raw) for raw in found if isinstance(raw, bytes | str)]
        if not due:
            return 0
        pipe.multi()
        for raw in due:
            enqueue_webhook(conn, **json.loads(raw), pipeline=pipe)
            pipe.zrem(keys.WEBHOOKS_DUE, raw)
        try:
            pipe.execute()
        except WatchError:
            return 0
    return len(due)


def webhooks_due(conn: redis.Redis) -> int:
    return int(conn.zcard(keys.WEBHOOKS_DUE))


def rerun_abandoned_webhooks(conn: redis.Redis) -> None:
    """Attempts whose sender died (no heartbeat for a minute): run again, up to
    ``WEBHOOK_REDELIVERIES`` times. RQ's own cleanup, which its workers run only every ten minutes."""
    StartedJobRegistry(queue=Queue(keys.WEBHOOK_QUEUE, connection=conn)).cleanup()
