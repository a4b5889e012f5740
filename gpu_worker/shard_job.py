"""The RQ job of one shard of a long or multichannel job, and the join that ends the job.

A shard runs as the job's attempt that cut it: its moves carry that attempt, so the job's fencing
holds for it, and the worker's watch for cancels stops it like a job. Its own gate
(``transcribe_common.shardstate``) keeps it from running twice at once, counts its starts, and
hands the join to exactly one worker once every shard is done. A shard whose worker died is
queued again by the reaper; only that shard runs again.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time

from gpu_worker import memory, metrics, sharding
from gpu_worker.audio import Decoded
from gpu_worker.job import PLAN, Cancelled, JobRun, Requeue, Superseded, WorkerContext, describe
from gpu_worker.transcript import Transcript
from transcribe_common import jobqueue, keys, layout
from transcribe_common.errors import NotFound, PermanentError, StateUnavailable
from transcribe_common.jobstate import Stale
from transcribe_common.logs import job_context
from transcribe_common.models import JobStatus, Manifest, utcnow
from transcribe_common.recovery import manifest_or_fail
from transcribe_common.shardstate import ShardStates
from transcribe_common.store.base import delete_prefix, download, get_json, put_model

log = logging.getLogger(__name__)


def run(job_id: str, attempt: int, index: int) -> str:
    """Entry point named in ``keys.SHARD_FUNCTION``."""
    from gpu_worker import job  # the context the worker process installed

    if job._context is None:
        raise RuntimeError("gpu_worker.shard_job.run runs only inside transcribe-worker")
    started = time.monotonic()
    try:
        with job_context(job_id), metrics.RUNNING.track_inprogress():
            outcome = ShardRun(job._context, job_id, attempt, index).run()
    finally:
        memory.give_back()
    metrics.SHARDS.labels(outcome).inc()
    metrics.JOB_SECONDS.labels("shard").observe(time.monotonic() - started)
    return outcome


class ShardRun(JobRun):
    def __init__(self, context: WorkerContext, job_id: str, attempt: int, index: int) -> None:
        super().__init__(context, job_id)
        self.attempt, self.index = attempt, index
        self.scratch = self.settings.scratch_dir / f"{job_id}-a{attempt}-s{index}"
        self.gates = ShardStates(context.conn, job_id, attempt)
        rq_job = jobqueue.running_job()
        self.worker = (rq_job.worker if rq_job is not None else None) or "no-worker"
        self.plan: sharding.ShardPlan | None = None

    def alive(self, worker: str) -> bool:
        return jobqueue.worker_alive(self.ctx.conn, worker)

    def run(self) -> str:
        manifest = manifest_or_fail(self.ctx.ending, self.job_id)
        if manifest is None:
            return JobStatus.FAILED
        try:
            self.plan = sharding.ShardPlan.model_validate(
                self.retrying(get_json, self.ctx.store, self.bucket, layout.shard_key(self.job_id, self.attempt, PLAN))
            )
        except NotFound:
            return "skipped"  # the attempt's objects are gone: the job was deleted, or started again
        shard = self.plan.shards[self.index]
        verdict = self.gates.start(self.index, self.worker, self.alive, self.settings.max_attempts)
        # Every shard runs on the model the plan was made with, on its queue, whatever a worker's default.
        manifest = manifest.model_copy(
            update={"options": manifest.options.model_copy(update={"model": self.plan.model})}
        )
        if verdict == "done":
            return self.join(manifest)
        if verdict.startswith("exhausted"):
            starts = verdict.partition(":")[2]
            self.fail_shard(manifest, f"the worker running it died {starts} times; it was not started again")
            return JobStatus.FAILED
        where = shard.describe(len(self.plan.shards))
        if not verdict.startswith("ok:"):
            log.info("job %s: %s: %s; skipping", self.job_id, where, verdict)
            return "skipped"
        if self.overdue():
            self.fail_shard(manifest, f"the job ran longer than JOB_TIMEOUT ({self.settings.job_timeout} s)")
            return JobStatus.FAILED
        log.info("job %s: %s: started on %s (start %s)", self.job_id, where, self.worker, verdict.partition(":")[2])
        with self.ctx.lock:
            self.ctx.running[threading.get_ident()] = self
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        try:
            return self.attempt_shard(manifest, shard)
        finally:
            with self.ctx.lock:
                self.ctx.running.pop(threading.get_ident(), None)
            shutil.rmtree(self.scratch, ignore_errors=True)

    def overdue(self) -> bool:
        """Whether the job has had its JOB_TIMEOUT: it bounds the whole job, not each shard."""
        record = self.ctx.states.read(self.job_id)
        deadline = jobqueue.job_deadline(record.started_at if record else None, self.settings)
        return deadline is not None and time.time() > deadline

    def attempt_shard(self, manifest: Manifest, shard: sharding.Shard) -> str:
        assert self.plan is not None
        try:
            self.interruptible = True
            try:
                part = self.transcribe_shard(manifest, shard)
            finally:
                with self.ctx.lock:
                    self.interruptible = False
            key = layout.shard_key(self.job_id, self.attempt, f"{self.index}.json")
            self.retrying(put_model, self.ctx.store, self.bucket, key, part)
            verdict = self.retrying(self.gates.done, self.index, shard.seconds, self.worker)
            if verdict != "last":
                return "shard done" if verdict == "ok" else "skipped"
        except Requeue:
            self.gates.release(self.index, self.worker)
            with self.ctx.lock:
                self.ctx.requeued.append((self.rq_id, manifest.options.model))
            return JobStatus.QUEUED
        except Cancelled:
            self.cancelled()
            self.drop_siblings()
            return JobStatus.CANCELLED
        except (Superseded, Stale):
            self.cancelled()
            return "superseded"
        except StateUnavailable as exc:
            self.leave(exc)
            return "left"
        except Exception as exc:
            if self.ended_meanwhile(exc):
                return "skipped"
            self.fail_shard(manifest, describe(exc, self.settings.job_timeout), exc)
            return JobStatus.FAILED
        return self.join(manifest)

    def join(self, manifest: Manifest) -> str:
        """``join_if_last``; whatever goes wrong in it fails the job as the join's failure, not a shard's."""
        try:
            return self.join_if_last(manifest)
        except StateUnavailable as exc:
            self.leave(exc)
            return "left"
        except Exception as exc:
            if self.ended_meanwhile(exc):
                return "skipped"
            if not isinstance(exc, PermanentError):
                log.exception("job %s: joining its shards failed unexpectedly", self.job_id)
            self.fail_once(manifest, f"joining the shards failed: {describe(exc, self.settings.job_timeout)}")
            return JobStatus.FAILED

    def ended_meanwhile(self, exc: Exception) -> bool:
        """Whether the job was cancelled or deleted, or started again, while this shard or its join
        ran: what failed then (its objects were taken away) is not the job's failure, nor news.
        What is left of the attempt goes, as with a cancel seen on the way. Not a job another
        shard failed: that shard's error is said, and this one's goes through ``fail_once``."""
        try:
            record = self.ctx.states.read(self.job_id)
        except StateUnavailable:
            return False
        if record is not None and record.attempts == self.attempt and not record.status.stops_a_run:
            return False
        log.info("job %s: attempt %d ended under it (%s)", self.job_id, self.attempt, exc)
        self.cancelled()
        self.drop_siblings()
        return True

    @property
    def rq_id(self) -> str:
        return keys.shard_job_id(self.job_id, self.attempt, self.index)

    def transcribe_shard(self, manifest: Manifest, shard: sharding.Shard) -> Transcript:
        assert self.plan is not None
        name, model = self.model_for(manifest)
        key = layout.shard_key(self.job_id, self.attempt, f"{self.index}.s16le")
        pcm = self.scratch / "shard.s16le"
        count = self.retrying(download, self.ctx.store, self.bucket, key, pcm) // 2
        # Every shard in the language the plan found once, so that shards do not disagree.
        options = manifest.options.model_copy(update={"language": self.plan.language})

        def progress(percent: float) -> None:
            verdict = self.gates.progress(self.index, shard.seconds * percent / 100, utcnow().isoformat())
            if verdict == "ended":
                raise Stale(f"job {self.job_id}: attempt {self.attempt} is no longer running")

        decoded = Decoded(pcm, count, None)
        clips = [(start - shard.start, end - shard.start) for start, end in shard.turns] if shard.turns else None
        return self.transcribe_decoded(
            name, model, decoded, options, on_progress=progress, on_info=lambda *_: None, clips=clips
        )

    def join_if_last(self, manifest: Manifest) -> str:
        """Join the shards, if every one is done and no live worker is joining them."""
        if not self.gates.take_join(self.worker, self.alive):
            return "shard done"
        assert self.plan is not None
        plan = self.plan
        name, model = self.model_for(manifest)
        parts = {}
        for shard in plan.shards:
            if shard.speech:
                key = layout.shard_key(self.job_id, self.attempt, f"{shard.index}.json")
                parts[shard.index] = Transcript.model_validate(
                    self.retrying(get_json, self.ctx.store, self.bucket, key)
                )
        self.succeed(manifest, self.joined(manifest, plan, parts, name, model))
        self.forget_shards()
        log.info("job %s: %d shards joined", self.job_id, len(plan.shards))
        return JobStatus.FINISHED

    def fail_shard(self, manifest: Manifest, error: str, exc: Exception | None = None) -> None:
        """A shard that cannot be transcribed fails its job, saying which part of the recording."""
        assert self.plan is not None
        where = self.plan.shards[self.index].describe(len(self.plan.shards))
        if exc is not None and not isinstance(exc, PermanentError | jobqueue.JobTimeout):
            log.exception("job %s: %s failed unexpectedly", self.job_id, where)
        self.fail_once(manifest, f"{where}: {error}")

    def fail_once(self, manifest: Manifest, error: str) -> None:
        """Fail the job, if no other shard of it has: two shards failing at once (the store away
        from both) move it by the same attempt, which the job's gate counts as one move made twice."""
        if not self.gates.end_once(self.worker):
            log.info("job %s: another shard has failed it already", self.job_id)
            return
        self.fail(manifest, PermanentError(error))
        self.drop_siblings()

    def drop_siblings(self) -> None:
        """The job has ended: its queued shards are taken off the queue, and its shard objects go."""
        assert self.plan is not None
        try:
            jobqueue.drop_shards(self.ctx.conn, self.job_id, self.attempt, len(self.plan.shards))
        except Exception:
            log.exception("job %s: its queued shards were not taken off the queue; they will skip", self.job_id)
        self.forget_shards()

    def forget_shards(self) -> None:
        try:
            delete_prefix(self.ctx.store, self.bucket, layout.shard_key(self.job_id, self.attempt, ""))
            self.gates.forget()
        except Exception:  # the janitor removes them once the job has ended
            log.warning("job %s: shard objects left for the janitor", self.job_id, exc_info=True)
