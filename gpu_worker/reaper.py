"""Finding the jobs of workers that died (SIGKILL, a lost machine) and giving them a second life.

RQ records each running job in its ``StartedJobRegistry`` as an execution naming its worker,
and each worker keeps a key ``rq:worker:<name>`` alive with its heartbeat. A job whose worker's
key has expired was abandoned: it is started again if it has been started fewer than
``MAX_ATTEMPTS`` times, and failed with a message saying so otherwise. Every live worker runs
this; the move in Redis decides which one acts.
"""

from __future__ import annotations

import logging

import redis
from rq import Queue, Worker
from rq.executions import Execution
from rq.registry import StartedJobRegistry

from gpu_worker.job import JobRun, WorkerContext
from transcribe_common import jobqueue
from transcribe_common.models import JobStatus

log = logging.getLogger(__name__)


def worker_alive(conn: redis.Redis, name: str | None) -> bool:
    return bool(name) and bool(conn.exists(Worker.redis_worker_namespace_prefix + str(name)))


def reap(ctx: WorkerContext, queue_names: list[str]) -> list[str]:
    """Recover the abandoned jobs on these queues; returns their ids."""
    recovered = []
    for name in queue_names:
        registry = StartedJobRegistry(queue=Queue(name, connection=ctx.conn))
        for job_id, execution_id in registry.get_job_and_execution_ids():
            execution = Execution.fetch(execution_id, job_id, connection=ctx.conn)
            if worker_alive(ctx.conn, execution.worker_name):
                continue
            registry.remove_execution(execution)
            recover(ctx, job_id, execution.worker_name)
            recovered.append(job_id)
    return recovered


def recover(ctx: WorkerContext, job_id: str, worker: str | None) -> None:
    record = ctx.states.read(job_id)
    if record is None or record.status.is_final:
        return
    settings = ctx.settings
    run = JobRun(ctx, job_id)
    try:
        manifest = run.load_manifest()
    except Exception as exc:
        ctx.states.advance(job_id, JobStatus.FAILED, error=f"the job's manifest is unreadable: {exc}")
        return
    model = manifest.options.model
    if record.status == JobStatus.STARTED and record.attempts >= settings.max_attempts:
        reason = f"the worker running this job died ({record.attempts} attempts); it was not started again"
        log.error("job %s: %s", job_id, reason)
        run.abandon(manifest, reason)
        return
    if record.status == JobStatus.STARTED and ctx.states.requeue(job_id, f"worker {worker} died") is None:
        return  # another worker recovered it first
    log.warning("job %s: its worker %s died; queued again", job_id, worker)
    jobqueue.enqueue(ctx.conn, job_id, model, settings)
