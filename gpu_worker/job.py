"""The RQ job function: one transcription from manifest to webhook.

Success and failure are each handled in one place. Whatever goes wrong — bad media, a missing
input, RQ's job timeout firing inside the model — ends as a ``failed`` status with a readable
``error`` and a failure webhook; the scratch folder always goes.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import redis
from faster_whisper import WhisperModel

from gpu_worker import audio, checkpoint, findings, memory, metrics, render, sharding
from gpu_worker.fetch import FetchLimits, fetch_source
from gpu_worker.settings import WorkerSettings
from gpu_worker.transcript import OnSegment, Resume, Transcript, transcribe_windows
from gpu_worker.whisper import Placement, is_multilingual
from transcribe_common import fleet, jobqueue, layout
from transcribe_common.ending import NOTE_TYPE, WARNINGS_NOTE, Ending, warnings_note
from transcribe_common.errors import PermanentError, PipelineError, StateUnavailable, public_message
from transcribe_common.jobstate import JobStates, Stale
from transcribe_common.logs import job_context
from transcribe_common.models import CONTENT_TYPES, JobOptions, JobStatus, Manifest
from transcribe_common.recovery import manifest_or_fail
from transcribe_common.shardstate import ShardStates
from transcribe_common.store.base import ObjectStore, delete_prefix, put_bytes, put_chunks, put_model
from transcribe_common.transient import Retry

log = logging.getLogger(__name__)
T = TypeVar("T")
PLAN = "plan.json"  # beside a split attempt's shards (``layout.shard_key``)


class Requeue(BaseException):
    """Raised into a running job by a worker that is shutting down: put the job back in the queue.
    A BaseException, so that the job's ``except Exception`` does not take it for a failure."""


class Cancelled(BaseException):
    """Raised into a running job whose status became ``cancelled`` (DELETE /v1/jobs/{id})."""


class Superseded(BaseException):
    """Raised into a running job that was started again elsewhere: this worker stalled past its
    heartbeat (a pause, SIGSTOP, a partition) and was taken for dead. It writes nothing more."""


@dataclass
class WorkerContext:
    """What a worker process sets up once: its models above all, loaded before any job runs, and
    shared by its job threads."""

    settings: WorkerSettings
    conn: redis.Redis
    store: ObjectStore
    states: JobStates
    models: dict[str, WhisperModel]
    placement: Placement  # the devices the models run on: MAX_CONCURRENCY job slots on each
    # The jobs running now, by thread, so that a draining worker can requeue them.
    running: dict[int, JobRun] = field(default_factory=dict)
    requeued: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ending: Ending = field(init=False)

    def __post_init__(self) -> None:
        self.ending = Ending(self.conn, self.states, self.store, self.settings)

    @property
    def default_model(self) -> str:
        return next(iter(self.models))


_context: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    global _context
    _context = context


def run(job_id: str) -> str:
    """Entry point named in ``keys.WORKER_FUNCTION``; RQ calls it with the job id."""
    if _context is None:
        raise RuntimeError("gpu_worker.job.run runs only inside transcribe-worker")
    started = time.monotonic()
    try:
        with job_context(job_id), metrics.RUNNING.track_inprogress():
            outcome = JobRun(_context, job_id).run()
    finally:
        memory.give_back()
    label = "requeued" if outcome == JobStatus.QUEUED else outcome
    metrics.JOBS.labels(label).inc()
    metrics.JOB_SECONDS.labels(label).observe(time.monotonic() - started)
    return outcome


class JobRun:
    def __init__(self, context: WorkerContext, job_id: str) -> None:
        self.ctx, self.job_id = context, job_id
        self.settings = context.settings
        self.bucket = context.settings.minio_bucket
        self.scratch = self.settings.scratch_dir / job_id
        self.cue_rules = render.CueRules(
            self.settings.subtitle_line_width, self.settings.subtitle_max_lines, self.settings.subtitle_max_seconds
        )
        # True while the job may be interrupted and requeued: until its transcript exists.
        self.interruptible = False
        self.attempt = 0  # this start of the job, numbered by the gate: every later move carries it
        self.keeper: checkpoint.Keeper | None = None  # what a whole job's run has decoded, once it decodes

    def run(self) -> str:
        # A store that stays away raises out of here: not the job's failure; RQ queues it again (``jobqueue``).
        manifest = manifest_or_fail(self.ctx.ending, self.job_id)
        if manifest is None:
            return JobStatus.FAILED
        if self.ended_long_ago():
            return "retired"
        rq_job = jobqueue.running_job()
        worker = rq_job.worker if rq_job is not None else None
        # Started: what the router said while it waited for a worker (``waiting_for``) is over.
        started = self.ctx.states.advance(self.job_id, JobStatus.STARTED, worker=worker, warnings="[]")
        if started is None:
            log.info("job %s: taken or done already; skipping", self.job_id)
            return "skipped"
        self.attempt = started.attempts
        log.info("job %s: started (attempt %d)", self.job_id, self.attempt)
        shutil.rmtree(self.scratch, ignore_errors=True)  # what a crashed earlier attempt left
        self.scratch.mkdir(parents=True)
        with self.ctx.lock:
            self.ctx.running[threading.get_ident()] = self
        try:
            return self._attempt(manifest)
        finally:
            with self.ctx.lock:
                self.ctx.running.pop(threading.get_ident(), None)
            shutil.rmtree(self.scratch, ignore_errors=True)

    def ended_long_ago(self) -> bool:
        """A first start of a job that ``status.json`` says has ended: a late duplicate event, after
        its live state expired (``STATE_TTL``), queued it again. It is taken back out, not rerun."""
        live = self.ctx.states.read(self.job_id)
        if live is None or live.attempts:
            return False
        stored = self.ctx.states.read_stored(self.job_id)
        if stored is None or not stored.status.is_final or not self.ctx.states.retire(self.job_id):
            return False
        log.warning("job %s: %s long ago (its status.json says so); not run again", self.job_id, stored.status.value)
        return True

    def _attempt(self, manifest: Manifest) -> str:
        try:
            self.interruptible = True
            try:
                transcript = self.transcribe(manifest)
            finally:
                # From here on the job ends here, one way or the other. Under the lock, so that an
                # exception raised into this thread (pool._raise_in) lands before this line or never.
                with self.ctx.lock:
                    self.interruptible = False
            if transcript is None:
                return "sharded"  # its shards are queued; the one that ends last joins them
            self.succeed(manifest, transcript)
            return JobStatus.FINISHED
        except Requeue:
            if self.keeper is not None:  # what it decoded goes with the job: the next run goes on from there
                self.keeper.save()
            self.requeue(manifest, "the worker is shutting down")
            return JobStatus.QUEUED
        except Cancelled:
            self.cancelled()
            return JobStatus.CANCELLED
        except (Superseded, Stale):
            self.cancelled()  # says which: cancelled meanwhile, or taken from this attempt
            return "superseded"
        except StateUnavailable as exc:
            self.leave(exc)
            return "left"
        except Exception as exc:  # every failure ends the same way, whatever raised it
            self.fail(manifest, exc)
            return JobStatus.FAILED

    def requeue(self, manifest: Manifest, reason: str) -> None:
        """Back to ``queued``; the worker process enqueues it again once its threads have stopped."""
        if self.ctx.states.requeue(self.job_id, reason, attempt=self.attempt) is not None:
            log.warning("job %s: requeued: %s", self.job_id, reason)
            with self.ctx.lock:
                self.ctx.requeued.append((self.job_id, manifest.options.model))

    def model_for(self, manifest: Manifest) -> tuple[str, WhisperModel]:
        name = manifest.options.model or self.ctx.default_model
        model = self.ctx.models.get(name)
        if model is None:
            raise PermanentError(f"this worker does not serve model {name!r}; it serves {', '.join(self.ctx.models)}")
        if (why := fleet.unfit(name, is_multilingual(model), manifest.options)) is not None:
            raise PermanentError(why)
        return name, model

    def cancelled(self) -> None:
        """The job was cancelled while it ran: nothing more is written, and if the canceller asked
        for its objects to go, what this run may have written after their deletion goes too."""
        record = self.ctx.states.read(self.job_id)
        if record is not None and record.status.stops_a_run:
            log.info("job %s: %s while it ran", self.job_id, record.status.value)
            if record.status == JobStatus.DELETED:
                delete_prefix(self.ctx.store, self.bucket, layout.job_prefix(self.job_id))
        elif record is None or record.attempts != self.attempt or record.status == JobStatus.QUEUED:
            self.superseded()

    def superseded(self) -> None:
        """This attempt was taken for dead and the job started again: the new attempt owns it."""
        log.warning(
            "job %s: attempt %d stops: the job was taken from it (this worker stalled past "
            "WORKER_HEARTBEAT_TTL and was taken for dead); a new attempt owns it, and this one writes nothing more",
            self.job_id,
            self.attempt,
        )

    def transcribe(self, manifest: Manifest) -> Transcript | None:
        """The job's transcript; None once it has been split into shards, which other jobs transcribe."""
        if manifest.error:
            raise PipelineError(manifest.error)
        name, model = self.model_for(manifest)
        self.ctx.states.note(self.job_id, self.attempt, model=name)
        limits = FetchLimits(
            policy=self.settings.url_policy,
            idle_timeout=self.settings.download_timeout,
            max_seconds=self.settings.download_max_seconds,
            max_bytes=self.settings.max_download_mb * 2**20,
        )
        with metrics.STAGE_SECONDS.labels("fetch").time():
            source = self.retrying(fetch_source, manifest, self.ctx.store, self.scratch, limits)
        with metrics.STAGE_SECONDS.labels("decode").time():
            channels = audio.decode_channels(
                source,
                self.scratch,
                timeout=self.settings.ffmpeg_timeout,
                split=manifest.options.multichannel,
                bounds=self.bounds(manifest),
            )
        source.unlink(missing_ok=True)  # the decoded audio is all that is needed from here
        decoded = channels[0]
        shard_min = self.settings.shard_min_seconds
        if manifest.options.multichannel or (shard_min and decoded.duration > shard_min):
            self.starts_over()
            return self.split(manifest, name, model, channels)
        kept = self.earlier_checkpoint(name, decoded.duration)
        resume = kept.resume() if kept is not None else None
        keeper = self.keeper = checkpoint.Keeper(
            lambda saved: put_model(
                self.ctx.store, self.bucket, layout.checkpoint_key(self.job_id, self.attempt), saved
            ),
            attempt=self.attempt,
            model=name,
            duration=decoded.duration,
            resume=resume,
            every=self.settings.checkpoint_every,
        )

        def info(language: str, probability: float, duration: float) -> None:
            keeper.heard(language, probability)
            self.detected(manifest, language, probability, duration)

        transcript = self.transcribe_decoded(
            name,
            model,
            decoded,
            manifest.options,
            on_progress=lambda percent: self.ctx.states.progress(self.job_id, percent, self.attempt),
            on_info=info,
            resume=resume,
            on_segment=keeper.add,
            on_language=keeper.heard,
        )
        transcript.warnings = self.findings(transcript, decoded.declared, model)
        return transcript

    def earlier_checkpoint(self, model: str, duration: float) -> checkpoint.Checkpoint | None:
        """What an earlier attempt of this whole job decoded, to go on from; None (and progress
        back to 0) if there is none to trust. Not reading it costs work, never the job."""
        try:
            kept = checkpoint.latest(self.ctx.store, self.bucket, self.job_id, self.attempt, model, duration)
        except Exception as exc:
            log.warning(
                "job %s: earlier checkpoints cannot be read (%s); starting from the beginning", self.job_id, exc
            )
            kept = None
        if kept is None:
            self.starts_over()
            return None
        log.info("job %s: going on from %s, where attempt %d stopped (%d segments kept)",
                 self.job_id, audio.clock(kept.until), kept.attempt, len(kept.segments))  # fmt: skip
        return kept

    def starts_over(self) -> None:
        """A job started again from the beginning shows so: progress 0, not the figure an earlier
        attempt reached (a requeue keeps it, for the attempt that goes on from a checkpoint)."""
        if self.attempt > 1:
            self.ctx.states.note(self.job_id, self.attempt, progress=0.0)

    def bounds(self, manifest: Manifest) -> audio.Bounds:
        """What this job's input may cost. Audio split into shards is kept twice: in scratch, and
        the shards' copy in the jobs bucket."""
        settings = self.settings
        may_split = manifest.options.multichannel or bool(settings.shard_min_seconds)
        return audio.Bounds(
            seconds=settings.max_audio_seconds,
            channels=settings.max_channels,
            disk_bytes=settings.max_job_disk_mb * 2**20,
            copies=2 if may_split else 1,
        )

    def transcribe_decoded(
        self,
        name: str,
        model: WhisperModel,
        decoded: audio.Decoded,
        options: JobOptions,
        *,
        on_progress: Callable[[float], None],
        on_info: Callable[[str, float, float], None],
        clips: list[tuple[float, float]] | None = None,
        resume: Resume | None = None,
        on_segment: OnSegment | None = None,
        on_language: Callable[[str, float], None] | None = None,
    ) -> Transcript:
        """A job's audio or a shard's, read from its file ``DECODE_WINDOW_SECONDS`` at a time: a
        shard is as long as its channel when a multichannel job is not cut in time. ``clips``: the
        stretches to decode, each on its own (a multichannel shard's turns)."""
        started = time.monotonic()
        transcript = transcribe_windows(
            model,
            decoded.window,
            decoded.samples,
            options,
            window_seconds=self.settings.decode_window_seconds,
            model_name=name,
            beam_size=self.settings.beam_size,
            batch_size=self.settings.batch_size,
            on_progress=on_progress,
            on_info=on_info,
            clips=clips,
            resume=resume,
            on_segment=on_segment,
            on_language=on_language,
        )
        metrics.transcribed(name, time.monotonic() - started, transcript.duration)
        return transcript

    def findings(self, transcript: Transcript, declared: float | None, model: WhisperModel) -> list[str]:
        return findings.findings(
            transcript,
            declared=declared,
            confidence_min=self.settings.language_confidence_min,
            multilingual=is_multilingual(model),
        )

    def split(
        self, manifest: Manifest, name: str, model: WhisperModel, channels: list[audio.Decoded]
    ) -> Transcript | None:
        """Cut the recording into shards (``gpu_worker.sharding``), put each shard's audio and the
        plan in the store and queue a job for each shard that has speech. None once they are
        queued; a recording with no speech at all has its (empty) transcript at once."""
        with metrics.STAGE_SECONDS.labels("split").time():
            plan = sharding.plan(
                channels,
                manifest.options,
                attempt=self.attempt,
                model=name,
                shard_seconds=self.settings.shard_seconds,
                shard_min=self.settings.shard_min_seconds,
                detect=lambda samples: detect_language(model, samples),
            )
        self.detected(manifest, plan.language, plan.language_probability, plan.duration)
        speaking = [shard for shard in plan.shards if shard.speech]
        if not speaking:
            return self.joined(manifest, plan, {}, name, model)
        for shard in speaking:
            self.retrying(self.put_shard, shard, channels[shard.channel])
        self.retrying(put_model, self.ctx.store, self.bucket, layout.shard_key(self.job_id, self.attempt, PLAN), plan)
        silent = {shard.index: shard.seconds for shard in plan.shards if not shard.speech}
        gates = ShardStates(self.ctx.conn, self.job_id, self.attempt)
        if not self.retrying(gates.begin, len(plan.shards), plan.seconds, silent):
            raise Stale(f"job {self.job_id}: attempt {self.attempt} is no longer its current one")
        indexes = [shard.index for shard in speaking]
        record = self.ctx.states.read(self.job_id)
        self.retrying(
            jobqueue.enqueue_shards,
            self.ctx.conn,
            self.job_id,
            self.attempt,
            indexes,
            name,  # the model the plan was made with: its queue
            self.settings,
            jobqueue.job_deadline(record.started_at if record else None, self.settings),
        )
        log.info(
            "job %s: %.0f s of audio split into %d shards (%d with speech), in %s",
            self.job_id, plan.duration, len(plan.shards), len(speaking), plan.language,
        )  # fmt: skip
        return None

    def joined(
        self,
        manifest: Manifest,
        plan: sharding.ShardPlan,
        parts: dict[int, Transcript],
        name: str,
        model: WhisperModel,
    ) -> Transcript:
        """The whole transcript from its shards' (none for a recording with no speech), with the findings."""
        transcript = sharding.joined(plan, parts, manifest.options, name)
        transcript.warnings = self.findings(transcript, plan.declared, model) + sharding.silent_channels(
            plan, manifest.options, parts
        )
        return transcript

    def put_shard(self, shard: sharding.Shard, decoded: audio.Decoded) -> None:
        first, count = int(shard.start * audio.SAMPLE_RATE), int(shard.seconds * audio.SAMPLE_RATE)
        key = layout.shard_key(self.job_id, self.attempt, f"{shard.index}.s16le")
        put_chunks(self.ctx.store, self.bucket, key, decoded.chunks(first, count))

    def detected(self, manifest: Manifest, language: str, probability: float, duration: float) -> None:
        """The language is known: fail now if the caller would not take a weak detection, else say it."""
        findings.check_detection(manifest.options, language, probability)
        self.ctx.states.note(self.job_id, self.attempt, language=language, duration=round(duration, 3))

    def retrying(self, step: Callable[..., T], *args: object) -> T:
        """Run an I/O step again, with exponential backoff and jitter, while it fails transiently
        (a source server's 5xx, a store or network that is briefly away); other errors at once."""
        retry = Retry(self.settings.io_attempts, self.settings.io_backoff, what=f"job {self.job_id}")
        return retry.call(step, *args)

    def succeed(self, manifest: Manifest, transcript: Transcript) -> None:
        with metrics.STAGE_SECONDS.labels("write").time():
            outputs = self.retrying(self.write_outputs, manifest, transcript)
        facts: dict[str, str | float] = {
            "language": transcript.language,
            "duration": transcript.duration,
            "outputs": json.dumps(outputs),
            "warnings": json.dumps(transcript.warnings),
        }
        # Retried while Redis is away (restarting, say), so that finished work is not thrown away.
        # A repeat by the same attempt counts as done (``jobstate``), so the whole move may be retried.
        finished = self.retrying(
            lambda: self.ctx.states.advance(
                self.job_id, JobStatus.FINISHED, attempt=self.attempt, progress=100, **facts
            )
        )
        if finished is None:  # cancelled while its results were being written, or superseded
            self.cancelled()
            return
        log.info("job %s: finished (%.1f s of %s)", self.job_id, transcript.duration, transcript.language)
        self.ctx.ending.notify(self.job_id, manifest, self.ctx.ending.finished_webhook(self.job_id, manifest, finished))

    def write_outputs(self, manifest: Manifest, transcript: Transcript) -> dict[str, str]:
        """Every format into this attempt's folder (so any can be fetched later; the final move
        publishes them), then the ones asked for beside an inbox drop, where people look: only if
        this attempt is still the job's own."""
        outputs, texts = {}, {}
        transcript = transcript.model_copy(update={"job_id": self.job_id})
        for fmt, renderer in render.RENDERERS.items():
            key = layout.result_key(self.job_id, fmt, self.attempt)
            texts[fmt] = renderer(transcript, self.cue_rules).encode()
            put_bytes(self.ctx.store, self.bucket, key, texts[fmt], content_type=CONTENT_TYPES[fmt])
            outputs[fmt] = key
        if manifest.beside is None:
            return outputs
        if not self.ctx.states.current(self.job_id, self.attempt):
            raise Stale(f"job {self.job_id}: attempt {self.attempt} is no longer its current one")
        for fmt in manifest.options.output:
            self.ctx.ending.write_beside(self.job_id, manifest, fmt, texts[fmt], CONTENT_TYPES[fmt])
        if transcript.warnings:  # said beside the transcript, where it is read
            note = warnings_note(transcript.warnings)
            self.ctx.ending.write_beside(self.job_id, manifest, WARNINGS_NOTE, note, NOTE_TYPE)
        return outputs

    def fail(self, manifest: Manifest, exc: Exception) -> None:
        error = describe(exc, self.settings.job_timeout)
        if isinstance(exc, PipelineError | jobqueue.JobTimeout):
            log.warning("job %s: failed: %s", self.job_id, error)
        else:
            log.exception("job %s: failed unexpectedly", self.job_id)
        try:
            ended = self.retrying(lambda: self.ctx.ending.fail(self.job_id, manifest, error, attempt=self.attempt))
        except StateUnavailable as exc:
            self.leave(exc)
            return
        if not ended:
            self.cancelled()  # cancelled, or ended by another worker: nothing more to say

    def leave(self, exc: StateUnavailable) -> None:
        """Redis stayed away longer than the retries: the job's end cannot be recorded, and an
        outage is not the job's failure. It stays as it is; once Redis is back, recovery (the
        reaper, or the janitor after ``LOST_AFTER``) starts it again."""
        log.error("job %s: left for recovery, its state cannot be recorded: %s", self.job_id, exc)


def detect_language(model: WhisperModel, samples: np.ndarray) -> tuple[str, float]:
    """The language of ``samples`` and its probability; English for an English-only model."""
    if not is_multilingual(model):
        return "en", 1.0
    language, probability, _ = model.detect_language(samples)
    return language, probability


def describe(exc: BaseException, job_timeout: int) -> str:
    """The error a user reads: ours are written for them; anything else is named plainly."""
    if isinstance(exc, jobqueue.JobTimeout):
        return f"the job ran longer than JOB_TIMEOUT ({job_timeout} s)"
    if isinstance(exc, PipelineError):
        return public_message(exc)
    return f"internal error ({type(exc).__name__}); the worker's log has the details"
