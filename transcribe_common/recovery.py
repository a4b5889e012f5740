"""Finding the jobs of workers that died (SIGKILL, a lost machine) and giving them a second life.

RQ records each running job in its ``StartedJobRegistry`` as an execution naming its worker,
and each worker keeps a key ``rq:worker:<name>`` alive with its heartbeat. A job whose worker's
key has expired was abandoned: it is started again if it has been started fewer than
``MAX_ATTEMPTS`` times, and failed with a message saying so otherwise.

A job queued for a model that no live worker serves (``fleet``) is failed once it has waited
``MODEL_WAIT`` seconds, with an error saying what to do, instead of waiting for ever.

Every live worker runs this for its queues, and the janitor for all of them (so jobs are
recovered even while no worker is alive to notice). The move in Redis decides who acts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import cast

import redis

from transcribe_common import fleet, jobqueue, keys
from transcribe_common.ending import UNREADABLE_MANIFEST, Ending, unreadable
from transcribe_common.models import JobStatus, Manifest, StatusRecord
from transcribe_common.shardstate import ShardStates

log = logging.getLogger(__name__)


def transcription_queues(conn: redis.Redis) -> list[str]:
    """Every RQ queue of transcriptions (one per model, and the default one); not the webhooks'."""
    names = jobqueue.queue_names(conn) | {keys.QUEUE}
    return sorted(n for n in names if n == keys.QUEUE or (n.startswith(f"{keys.QUEUE}:") and n != keys.WEBHOOK_QUEUE))


def running(conn: redis.Redis, queue_names: list[str]) -> set[str]:
    """The ids of jobs that RQ counts as running on these queues, their workers alive or not (a
    job one of whose shards runs is running)."""
    return {
        shard[0] if (shard := keys.shard_of(rq_id)) else rq_id
        for name in queue_names
        for rq_id in jobqueue.started_ids(conn, name)
    }


def attended(conn: redis.Redis, record: StatusRecord) -> bool:
    """Whether a started job split into shards still has some in RQ's hands: queued, or running."""
    return record.shards is not None and jobqueue.shards_waiting(
        conn, record.job_id, record.attempts, record.shards.total
    )


def reap(ending: Ending, queue_names: list[str]) -> list[str]:
    """Recover the abandoned jobs on these queues; returns their ids."""
    recovered = []
    for job_id, execution, registry in list(jobqueue.abandoned(ending.conn, queue_names)):
        try:
            if (shard := keys.shard_of(job_id)) is not None:
                recover_shard(ending, *shard, keys.model_of_queue(registry.name), execution.worker_name)
            elif (rewritten := keys.beside_of(job_id)) is not None:  # a copy of outputs: run it again
                log.warning("job %s: its outputs' rewrite lost its worker; queued again", rewritten)
                jobqueue.enqueue_rewrite(ending.conn, rewritten, ending.settings)
            else:
                recover(ending, job_id, f"its worker {execution.worker_name} died")
        except Exception:  # the store or Redis is away: its execution stays, for the next look
            log.exception("job %s: not recovered yet", job_id)
            continue
        registry.remove_execution(execution)
        recovered.append(job_id)
    return recovered


def recover(ending: Ending, job_id: str, why: str) -> None:
    """Start a job that nobody runs again, or fail it if it has had its ``MAX_ATTEMPTS``."""
    states, settings = ending.states, ending.settings
    record = states.read(job_id)
    if record is None or record.status.is_final:
        return
    manifest = manifest_or_fail(ending, job_id)
    if manifest is None:
        return
    crashes = record.attempts - record.drained  # a start a stopping worker put back did not die
    if record.status == JobStatus.STARTED and crashes >= settings.max_attempts:
        reason = f"the worker running this job died ({crashes} attempts); it was not started again"
        log.error("job %s: %s", job_id, reason)
        ending.fail(job_id, manifest, reason)
        return
    if record.status == JobStatus.STARTED and states.requeue(job_id, why) is None:
        return  # someone else recovered it first
    log.warning("job %s: %s; queued again", job_id, why)
    jobqueue.enqueue(ending.conn, job_id, manifest.options.model, settings)


def recover_shard(ending: Ending, job_id: str, attempt: int, index: int, model: str | None, worker: str) -> None:
    """Queue a shard whose worker died again, while its job is running that attempt: the shard's
    gate (``shardstate``) counts its starts and says when its job has had enough."""
    record = ending.states.read(job_id)
    if record is None or record.status != JobStatus.STARTED or record.attempts != attempt:
        return
    ShardStates(ending.conn, job_id, attempt).abandon(index, worker)
    log.warning("job %s: shard %d: its worker died; queued again", job_id, index + 1)
    deadline = jobqueue.job_deadline(record.started_at, ending.settings)
    jobqueue.enqueue_shard(ending.conn, job_id, attempt, index, model, ending.settings, deadline=deadline)


def requeue_lost(ending: Ending, now: float | None = None) -> list[str]:
    """Work that RQ will never run, queued again: a job ``queued`` in its state, and the shards (or
    the join) of a split job, that no RQ queue or registry holds (``jobqueue.waiting``) and that have
    not moved for ``LOST_AFTER``. A worker that takes from several queues pops with BLPOP: one that
    dies between the pop and the start, or Redis losing its last second of writes, leaves them in
    no list. Workers run this each ``REAP_INTERVAL``, the janitor each run. The ids it queued."""
    conn, settings = ending.conn, ending.settings
    now = time.time() if now is None else now
    requeued = []
    for raw in cast(list[bytes], conn.zrangebyscore(keys.JOBS_OPEN, "-inf", now - settings.lost_after)):
        job_id = keys.text(raw)
        record = ending.states.read(job_id)
        if record is None or now - record.updated_at.timestamp() < settings.lost_after:
            continue  # gone, or moving (progress)
        if record.status == JobStatus.QUEUED and not jobqueue.waiting(conn, job_id):
            if (manifest := manifest_or_fail(ending, job_id)) is not None:
                log.warning("job %s: queued, but in no RQ queue for %d s; queued again", job_id, settings.lost_after)
                jobqueue.enqueue(conn, job_id, manifest.options.model, settings)
                requeued.append(job_id)
        elif record.status == JobStatus.STARTED and record.shards is not None and requeue_lost_shards(ending, record):
            requeued.append(job_id)
    return requeued


def requeue_lost_shards(ending: Ending, record: StatusRecord) -> bool:
    """The shards of a split job that RQ holds none of, freed and queued again (all done: one of
    them, whose run joins them). Whether any was."""
    conn, job_id, attempt = ending.conn, record.job_id, record.attempts
    total = record.shards.total if record.shards else 0
    if jobqueue.shards_waiting(conn, job_id, attempt, total):
        return False
    gates = ShardStates(conn, job_id, attempt)
    pending = gates.pending()
    if pending is None or not gates.free(pending):
        return False
    manifest = manifest_or_fail(ending, job_id)
    if manifest is None:
        return False
    model = record.model or manifest.options.model
    deadline = jobqueue.job_deadline(record.started_at, ending.settings)
    log.warning("job %s: %s in no RQ queue; queued again", job_id, f"shards {pending}" if pending else "its join")
    jobqueue.enqueue_shards(conn, job_id, attempt, pending or [0], model, ending.settings, deadline)
    return True


def unserved(ending: Ending, now: float | None = None) -> Iterator[tuple[str, str, str]]:
    """The jobs on the queue of a model that no live worker serves, which have waited
    ``MODEL_WAIT`` seconds since they were queued and since a worker last served the model:
    (job id, its queue, the error to fail it with). Not those of a model the fleet starts
    workers for (``WORKERS_SCALE_FROM_ZERO``): they wait for it."""
    conn, wait = ending.conn, ending.settings.model_wait
    now = time.time() if now is None else now
    served, seen = fleet.models_of(fleet.live(conn, now)), fleet.last_served(conn)
    listed = ", ".join(sorted(served)) or "none is served now"
    coming = set(ending.settings.scalable_models)  # a worker is started for these (from zero)
    for name in transcription_queues(conn):
        model = keys.model_of_queue(name)
        if model is None or model in served or model in coming or now - seen.get(model, 0.0) < wait:
            continue
        for job_id in jobqueue.queued_ids(conn, name):
            shard = keys.shard_of(job_id)
            record = ending.states.read(shard[0] if shard is not None else job_id)
            if shard is not None:  # a running job's shard: nothing has served its model since it was cut
                if record is not None and record.status == JobStatus.STARTED and record.attempts == shard[1]:
                    yield job_id, name, f"its shards wait for model {model!r}: " + _no_worker(model, wait, listed)
                continue
            if record is None or record.status != JobStatus.QUEUED:
                continue
            if now - record.updated_at.timestamp() < wait:
                break  # a queue is first in, first out: the jobs behind this one are younger still
            yield job_id, name, _no_worker(model, wait, listed)


def _no_worker(model: str, wait: float, listed: str) -> str:
    return (
        f"no live worker served model {model!r} for {wait:g} s (MODEL_WAIT); submit the job again "
        f"with a served model ({listed}) or none, or start a worker that serves {model!r} (MODELS)"
    )


def fail_unserved(ending: Ending, now: float | None = None) -> list[str]:
    """Fail the ``unserved`` jobs, with their webhooks, and take them off their queues: a whole job
    only from ``queued`` (one that a newly come worker has just started runs on); a shard's job
    only while it runs the attempt that cut the shard, whose other queued shards go with it."""
    failed = []
    for rq_id, queue, error in list(unserved(ending, now)):
        shard = keys.shard_of(rq_id)
        job_id, attempt = (shard[0], shard[1]) if shard is not None else (rq_id, None)
        if job_id in failed:  # a sibling of a shard that has failed its job already
            jobqueue.take_off(ending.conn, queue, rq_id)
            continue
        manifest = manifest_or_fail(ending, job_id)
        state = JobStatus.QUEUED if shard is None else JobStatus.STARTED
        if manifest is not None and ending.fail(job_id, manifest, error, only_from=state, attempt=attempt):
            log.error("job %s: %s", job_id, error)
            failed.append(job_id)
            if shard is not None and (record := ending.states.read(job_id)) and record.shards is not None:
                jobqueue.drop_shards(ending.conn, job_id, shard[1], record.shards.total)
        jobqueue.take_off(ending.conn, queue, rq_id)
    return failed


def manifest_or_fail(ending: Ending, job_id: str) -> Manifest | None:
    """The job's manifest; if it is missing or invalid for good, the job fails saying so (None).
    A store that stays away raises: the job is left as it is, for the next look."""
    try:
        return ending.manifest(job_id)
    except Exception as exc:
        if not unreadable(exc):
            raise
        log.error("job %s: unreadable manifest: %s", job_id, exc)
        ending.states.advance(job_id, JobStatus.FAILED, error=UNREADABLE_MANIFEST)
        return None
