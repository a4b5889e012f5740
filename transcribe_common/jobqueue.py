"""Putting a job on the RQ queue that serves its model. The router does it for new jobs; workers do
it again for jobs they requeue (a drained or crashed worker's job). Enqueueing an id that is
queued already only refreshes it: the worker's move to ``started`` keeps it from running twice."""

from __future__ import annotations

import redis
from rq import Queue

from transcribe_common import keys
from transcribe_common.settings import CommonSettings


def enqueue(conn: redis.Redis, job_id: str, model: str | None, settings: CommonSettings) -> None:
    """RQ enforces ``JOB_TIMEOUT`` and keeps the job's record for ``RQ_RESULT_TTL``."""
    Queue(keys.queue_for(model), connection=conn).enqueue_call(
        keys.WORKER_FUNCTION,
        args=(job_id,),
        job_id=job_id,
        timeout=settings.job_timeout,
        result_ttl=settings.rq_result_ttl,
        failure_ttl=settings.rq_result_ttl,
        description=f"transcribe {job_id}",
    )
