"""Putting work on RQ queues.

A transcription goes on the queue that serves its model. The router does it for new jobs; workers
do it again for jobs they requeue (a drained or crashed worker's job). Enqueueing an id that is
queued already only refreshes it: the worker's move to ``started`` keeps it from running twice.

A webhook goes on its own queue, for ``transcribe-webhooks``; see ``webhook_sender.delivery``.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime

import redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from transcribe_common import keys
from transcribe_common.jobstate import record_webhook
from transcribe_common.models import FailedWebhook, FinishedWebhook, WebhookDelivery
from transcribe_common.settings import CommonSettings

# Seconds one delivery attempt may take in all, whatever the receiver does (RQ kills it after).
WEBHOOK_JOB_TIMEOUT = 120


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
) -> None:
    """Deliver ``body`` to ``url``, now or after ``delay`` seconds (RQ's scheduler holds it till then).
    Each attempt is its own RQ job, so a waiting retry holds no worker. ``waited``: the same attempt
    again, put off because its receiver was busy (an RQ job of its own, beside the one that waited)."""
    queue = Queue(keys.WEBHOOK_QUEUE, connection=conn)
    args = (job_id, url, body, message_id, attempt)
    options = {
        "job_id": f"{message_id}-{attempt}" + (f"-w{uuid.uuid4().hex[:8]}" if waited else ""),
        "job_timeout": WEBHOOK_JOB_TIMEOUT,
        "result_ttl": 3600,
        "failure_ttl": 7 * 86400,
        "description": f"webhook {message_id}, attempt {attempt}",
    }
    if delay > 0:
        # RQ's scheduler keeps whole seconds and would round down: a Retry-After must not come early.
        when = datetime.fromtimestamp(math.ceil(time.time() + delay), UTC)
        queue.enqueue_at(when, keys.WEBHOOK_FUNCTION, *args, **options)
    else:
        queue.enqueue(keys.WEBHOOK_FUNCTION, *args, **options)
