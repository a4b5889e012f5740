"""Reads the events list reliably and makes one RQ job per job, however often an event arrives.

Each event is moved with BLMOVE onto a processing list and removed from it only once handled, so a
router that dies mid-event finds it again at start (``recover``). Handling is idempotent: the job's
move to ``queued`` in Redis is the gate, and an event for a job that has moved already is a no-op.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from redis.client import Pipeline

from event_router.settings import RouterSettings
from transcribe_common import deadletters, events, fleet, jobqueue, keys, layout
from transcribe_common.errors import InvalidInput, NotFound, StateUnavailable, public_message
from transcribe_common.events import ObjectCreated
from transcribe_common.jobstate import JobStates
from transcribe_common.logs import job_context
from transcribe_common.models import JobOptions, JobStatus, Manifest, ObjectSource
from transcribe_common.ops import Heartbeat, RedisGauge, queue_lengths
from transcribe_common.store.base import ObjectStore, get_json, put_model
from transcribe_common.transient import transient

log = logging.getLogger(__name__)
RETRY_DELAY = 1.0
BATCH = 100  # events taken at once when a backlog is waiting
DUE_EVERY = 0.5  # seconds between two looks for put-off events that are due again

EVENTS = Counter(
    "transcribe_router_events_total",
    "Bucket events handled, by outcome: enqueued; duplicate (its job had moved on already); rewrite (an inbox "
    "drop whose job had ended: what is missing beside it is written again); ignored (not a "
    "manifest or an inbox drop, or a transcript written beside one); retry (failed transiently, put off); "
    "dead (unreadable, or failed EVENT_ATTEMPTS times: kept in events:dead).",
    ["outcome"],
)
LAG = Histogram(
    "transcribe_router_lag_seconds",
    "From the object's creation (the event's eventTime, the store's clock) to its job being enqueued.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
GAUGES = [
    RedisGauge("transcribe_router_backlog", "Events waiting for the router.", lambda r: r.llen(keys.EVENTS)),
    RedisGauge(
        "transcribe_router_in_flight", "Events taken but not yet handled.", lambda r: r.llen(keys.EVENTS_PROCESSING)
    ),
    RedisGauge(
        "transcribe_router_dead_events",
        "Dead letters: events not handled (unreadable, or failing EVENT_ATTEMPTS times), kept for a replay.",
        lambda r: r.llen(keys.EVENTS_DEAD),
    ),
    RedisGauge(
        "transcribe_router_events_put_off",
        "Events that failed transiently, waiting for their next try.",
        lambda r: r.zcard(keys.EVENTS_RETRY),
    ),
    RedisGauge("transcribe_queue_length", "Jobs waiting in each transcription queue.", queue_lengths, "queue"),
]


class Router:
    def __init__(self, settings: RouterSettings, conn: redis.Redis, store: ObjectStore) -> None:
        self.settings, self.redis, self.store = settings, conn, store
        self.states = JobStates.for_settings(conn, store, settings)
        self.stopping = threading.Event()
        self.heartbeat = Heartbeat(stuck_after=30)
        self._next_due = 0.0

    def run(self) -> None:
        self.recover()
        while not self.stopping.is_set():
            self.heartbeat.beat()
            self.run_once(timeout=1.0)

    def recover(self) -> None:
        """Handle the events a previous router took but did not finish (once Redis answers)."""
        while True:
            self.heartbeat.beat()
            try:
                pending = self.redis.lrange(keys.EVENTS_PROCESSING, 0, -1)
                break
            except redis.ConnectionError as exc:
                log.warning("redis unavailable (%s); retrying", exc)
                if self.stopping.wait(RETRY_DELAY):
                    return
        if pending:
            log.info("recovering %d in-flight events", len(pending))
        for raw in pending:
            self._process(keys.text(raw))

    def run_once(self, timeout: float) -> bool:
        try:
            if time.monotonic() >= self._next_due:  # events put off whose next try is due
                self._next_due = time.monotonic() + DUE_EVERY
                deadletters.release_due(self.redis)
            # Redis takes fractional seconds here; redis-py's annotation says int.
            raw = self.redis.blmove(keys.EVENTS, keys.EVENTS_PROCESSING, timeout, "LEFT", "RIGHT")  # type: ignore[arg-type]
        except redis.ConnectionError as exc:
            log.warning("redis unavailable (%s); retrying", exc)
            self.stopping.wait(RETRY_DELAY)
            return False
        if raw is None:
            return False
        backlog = self._take_more(BATCH - 1)
        if backlog:
            self._process_many([keys.text(raw), *backlog])
        else:
            self._process(keys.text(raw))
        return True

    def _take_more(self, most: int) -> list[str]:
        """Events already waiting behind the one just taken, up to ``most``, in one round trip
        (and one more to ask how many wait: none, when events come one by one)."""
        try:
            waiting = min(most, int(self.redis.llen(keys.EVENTS)))
            with self.redis.pipeline(transaction=False) as pipe:
                for _ in range(waiting):
                    pipe.lmove(keys.EVENTS, keys.EVENTS_PROCESSING, "LEFT", "RIGHT")
                return [keys.text(raw) for raw in pipe.execute() if raw is not None]
        except redis.ConnectionError:
            return []  # what was moved is on the processing list: recovered at the next start

    def _process_many(self, raws: list[str]) -> None:
        """A backlog: the plain manifest events' gates in one round trip, their RQ jobs and their
        removal from the processing list in one transaction. Everything else (inbox drops, events
        for jobs that moved on, unreadable ones, any error) goes one at a time through ``_process``,
        whose gate makes a second look harmless."""
        plain: list[tuple[str, str, ObjectCreated]] = []
        rest: list[str] = []
        for raw in raws:
            found = self._plain_manifest_event(raw)
            if found is None:
                rest.append(raw)
            else:
                plain.append((raw, *found))
        try:
            claims = [
                (job_id, {"owner": event.metadata.get("owner"), "made": made(event)}) for _, job_id, event in plain
            ]
            claimed = self.states.claim_many(claims, JobStatus.QUEUED)
            with self.redis.pipeline() as pipe:
                done = []
                for (raw, job_id, event), ok in zip(plain, claimed, strict=True):
                    if not ok:
                        rest.append(raw)
                        continue
                    jobqueue.enqueue(self.redis, job_id, event.metadata.get("model"), self.settings, pipeline=pipe)
                    pipe.lrem(keys.EVENTS_PROCESSING, 1, raw)
                    deadletters.handled(pipe, raw)  # one put off before leaves no count of its tries
                    done.append((job_id, event))
                pipe.execute()
        except Exception as exc:  # one at a time, each event then retried or kept aside as ``_process`` decides
            log.warning("%d events not handled together (%s); one at a time", len(plain), exc)
            rest = raws
            done = []
        for job_id, event in done:
            log.info("job %s enqueued", job_id, extra={"job_id": job_id})
            self._count("enqueued", event)
        for raw in rest:
            self._process(raw)

    def _plain_manifest_event(self, raw: str) -> tuple[str, ObjectCreated] | None:
        try:
            parsed = events.parse(raw)
        except InvalidInput:
            return None
        if len(parsed) != 1 or parsed[0].bucket != self.settings.minio_bucket:
            return None
        job_id = layout.job_id_of_manifest(parsed[0].key)
        return None if job_id is None else (job_id, parsed[0])

    @staticmethod
    def _count(outcome: str, event: ObjectCreated) -> None:
        EVENTS.labels(outcome).inc()
        if outcome == "enqueued" and event.event_time is not None:
            LAG.observe(max(0.0, (datetime.now(UTC) - event.event_time).total_seconds()))

    def _process(self, raw: str) -> None:
        """Handle one event. Redis away: wait for it (every event needs it). Anything else that may
        pass (the store away): the event is put off, and the ones behind it go on; after
        ``EVENT_ATTEMPTS`` tries, or at once if it cannot succeed, it becomes a dead letter."""
        while not self.stopping.is_set():
            self.heartbeat.beat()  # waiting for Redis is alive, not stuck
            try:
                # The jobs are enqueued and the event leaves the processing list in one transaction.
                with self.redis.pipeline() as pipe:
                    self.handle_raw(raw, pipe)
                    pipe.lrem(keys.EVENTS_PROCESSING, 1, raw)
                    deadletters.handled(pipe, raw)
                    pipe.execute()
                return
            except (redis.ConnectionError, redis.TimeoutError, StateUnavailable) as exc:
                log.warning("redis unavailable (%s); retrying", exc)
                self.stopping.wait(RETRY_DELAY)
                continue
            except Exception as exc:
                self._set_aside(raw, exc)
                return

    def _set_aside(self, raw: str, exc: Exception) -> None:
        error = public_message(exc) if isinstance(exc, InvalidInput) else f"{type(exc).__name__}: {exc}"
        if transient(exc):
            dead = deadletters.put_off(self.redis, raw, error, self.settings.event_attempts, RETRY_DELAY)
            if not dead:
                log.warning("event not handled yet (%s); tried again later", exc)
                EVENTS.labels("retry").inc()
                return
            log.error("event failed %d times (%s); kept in %s", self.settings.event_attempts, exc, keys.EVENTS_DEAD)
        else:
            if isinstance(exc, InvalidInput):
                log.error("malformed event, kept in %s: %s", keys.EVENTS_DEAD, exc)
            else:
                log.exception("event failed; kept in %s", keys.EVENTS_DEAD)
            with self.redis.pipeline() as pipe:
                deadletters.bury(pipe, raw, error, transient=False)
                pipe.execute()
        EVENTS.labels("dead").inc()

    def handle_raw(self, raw: str, pipe: Pipeline) -> None:
        for event in events.parse(raw):
            self._count(self.handle(event, pipe), event)

    def handle(self, event: ObjectCreated, pipe: Pipeline) -> str:
        """What became of the event: ``enqueued`` or ``rewrite`` (in ``pipe``), ``duplicate`` or ``ignored``."""
        if event.bucket == self.settings.minio_bucket:
            job_id = layout.job_id_of_manifest(event.key)
            if job_id is not None:
                with job_context(job_id):
                    owner = event.metadata.get("owner")
                    return self.enqueue(job_id, event.metadata.get("model"), pipe, owner=owner, made=made(event))
        elif event.bucket == self.settings.minio_inbox_bucket:
            if layout.OUTPUT_MARKER not in event.metadata and not layout.is_options_file(event.key):
                job_id = layout.inbox_job_id(event.bucket, event.key, event.version)
                with job_context(job_id):
                    return self.admit_inbox(job_id, event, pipe)
        else:
            log.debug("ignoring event for bucket %s", event.bucket)
        return "ignored"

    def admit_inbox(self, job_id: str, event: ObjectCreated, pipe: Pipeline) -> str:
        """Write the manifest for a dropped object and enqueue it; for a drop whose job has ended
        (the same content put back, or a late duplicate event), queue the rewrite of what is
        missing beside it instead (``rewrite``)."""
        manifest_key = layout.manifest_key(job_id)
        has_manifest = self.store.stat(self.settings.minio_bucket, manifest_key) is not None
        record = self.states.read(job_id)
        if record is None and has_manifest:  # its live state expired, or Redis lost it: status.json says
            stored = self.states.read_stored(job_id)
            record = stored if stored is not None and stored.status.is_final else None
        if record is not None:
            return self.ended_drop(job_id, record.status, event, pipe)
        manifest = inbox_manifest(job_id, event, self.folder_options(event))
        if not has_manifest:
            put_model(self.store, self.settings.minio_bucket, manifest_key, manifest)
            log.info("inbox %s: job %s", event.key, job_id)
        model = manifest.options.model  # any a drop likes: the API refused its own jobs' at once
        waiting = self.waiting_for(model) if model is not None else None
        return self.enqueue(job_id, model, pipe, made=made(event, trusted=False), waiting=waiting)

    def ended_drop(self, job_id: str, status: JobStatus, event: ObjectCreated, pipe: Pipeline) -> str:
        """A drop whose job exists: one that finished or failed has what it wrote beside the drop
        written again where it is missing, by a worker, from the stored results (``rewrite``); one
        still running, or cancelled, is a duplicate."""
        if status not in (JobStatus.FINISHED, JobStatus.FAILED):
            log.info("inbox %s: job %s exists already (%s)", event.key, job_id, status.value)
            return "duplicate"
        jobqueue.enqueue_rewrite(self.redis, job_id, self.settings, pipeline=pipe)
        log.info(
            "inbox %s: job %s %s already; its outputs beside the drop are written again",
            event.key,
            job_id,
            status.value,
        )
        return "rewrite"

    def folder_options(self, event: ObjectCreated) -> FolderOptions:
        """The nearest folder options file above a drop (``layout.OPTIONS_FILE``). One that is too
        large, or that cannot be read as a JSON object of options for whatever reason (its JSON
        broken or nested too deep, say), makes the job of each drop under it fail saying so, with its
        note beside the drop; only a store that does not answer puts the event off."""
        for key in layout.options_files(event.key):
            info = self.store.stat(event.bucket, key)
            if info is None:
                continue
            if info.size > MAX_OPTIONS_BYTES:
                return FolderOptions(
                    error=f"the folder's {layout.OPTIONS_FILE} is {info.size:,} bytes; at most {MAX_OPTIONS_BYTES:,}"
                )
            try:
                found = get_json(self.store, event.bucket, key)
            except NotFound:  # gone since it was seen
                continue
            except Exception as exc:
                if transient(exc):
                    raise
                reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
                return FolderOptions(error=f"the folder's {layout.OPTIONS_FILE} is not valid JSON: {reason}")
            if not isinstance(found, dict):
                return FolderOptions(error=f"the folder's {layout.OPTIONS_FILE} must hold a JSON object of options")
            return FolderOptions(found)
        return FolderOptions()

    def enqueue(
        self,
        job_id: str,
        model: str | None,
        pipe: Pipeline,
        owner: str | None = None,
        made: str | None = None,
        waiting: str | None = None,
    ) -> str:
        """The gate (``queued`` in Redis, once per job), then the RQ job, written with ``pipe``. If
        the transaction is lost, the retried event finds the job queued with no RQ job, and
        enqueues it then. ``waiting``: why it will wait for a worker, in its warnings until one
        starts it (the worker's findings replace them)."""
        # The owner comes from the manifest's metadata, which only the API writes: never from an
        # inbox drop's, which anyone who may drop a file sets.
        fields: dict[str, object] = {"owner": owner, "made": made}
        if waiting is not None:
            fields["warnings"] = json.dumps([waiting])
        if not self.states.claim(job_id, JobStatus.QUEUED, **fields):
            current = self.states.read(job_id)
            # A job still "queued" that RQ will not run means a router died between the two steps,
            # or RQ gave up on it (its manifest could not be read, a few times).
            if current is None or current.status != JobStatus.QUEUED or jobqueue.waiting(self.redis, job_id):
                return "duplicate"
        jobqueue.enqueue(self.redis, job_id, model, self.settings, pipeline=pipe)
        log.info("job %s enqueued", job_id)
        return "enqueued"

    def waiting_for(self, model: str) -> str | None:
        """Why a job for ``model`` will wait, if no live worker serves it (nor one the fleet starts
        for it): an inbox drop names any model it likes, and would sit 'queued' with no word of why
        until MODEL_WAIT failed it."""
        try:
            served = fleet.available(fleet.live(self.redis), self.settings.scalable_models)
        except redis.RedisError:
            return None  # the enqueue that follows says what Redis says
        if model in served:
            return None
        listed = ", ".join(sorted(served)) or "none"
        return (
            f"waiting for a worker that serves model {model!r}: none runs now (served: {listed}); the job "
            "fails once it has waited MODEL_WAIT (10 minutes by default) unless one starts"
        )


def made(event: ObjectCreated, trusted: bool = True) -> str | None:
    """When the job was made, in Unix seconds: its manifest's ``created_at``, which the API puts in
    the manifest's metadata (``trusted``: only the API writes the jobs bucket), else when the store
    made the object. An inbox drop's metadata is the dropper's to set, so it is never read here."""
    if trusted and (created := event.metadata.get("created")):
        return created
    return f"{event.event_time.timestamp():.6f}" if event.event_time is not None else None


MAX_OPTIONS_BYTES = 64 * 1024  # a folder options file: a handful of options, never megabytes


@dataclass(frozen=True)
class FolderOptions:
    values: dict[str, object] = field(default_factory=dict)
    error: str | None = None


def inbox_manifest(job_id: str, event: ObjectCreated, folder: FolderOptions | None = None) -> Manifest:
    """A manifest for an inbox object. Its options come from the folder's options file
    (``folder``), overridden by the object's user metadata (``X-Amz-Meta-Language: id`` and so on).
    Bad options still make a job, one that fails with a message saying which value was wrong, so
    the person who dropped the file can find out."""
    source = ObjectSource(bucket=event.bucket, key=event.key, version_id=event.version_id)
    folder = folder or FolderOptions()
    meta = {**folder.values, **{name.replace("-", "_"): value for name, value in event.metadata.items()}}
    option_names = JobOptions.model_fields.keys()
    fields = {
        "job_id": job_id,
        "origin": "inbox",
        "source": source,
        "filename": event.key.rsplit("/", 1)[-1],
        "beside": ObjectSource(bucket=event.bucket, key=event.key),
        "callback_url": meta.get("callback_url"),
        "db_id": meta.get("db_id"),
        "options": {k: v for k, v in meta.items() if k in option_names},
    }
    unknown = sorted(set(folder.values) - set(option_names) - {"callback_url", "db_id"})
    try:
        if folder.error or unknown:
            listed = ", ".join(unknown)
            raise ValueError(folder.error or f"unknown options in the folder's {layout.OPTIONS_FILE}: {listed}")
        return Manifest.model_validate(fields)
    except Exception as exc:  # whatever the options hold, the drop gets a job that says what was wrong
        fields.update(options={}, callback_url=None, db_id=None, error=_invalid_options(exc))
        return Manifest.model_validate(fields)


def _invalid_options(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return f"invalid options (object metadata or the folder's {layout.OPTIONS_FILE}): {problems}"
