"""Reads the events list reliably and makes one RQ job per job, however often an event arrives.

Each event is moved with BLMOVE onto a processing list and removed from it only once handled, so a
router that dies mid-event finds it again at start (``recover``). Handling is idempotent: the job's
move to ``queued`` in Redis is the gate, and an event for a job that has moved already is a no-op.
"""

from __future__ import annotations

import logging
import threading

import redis
from pydantic import ValidationError
from rq.job import Job

from event_router.settings import RouterSettings
from transcribe_common import events, jobqueue, keys, layout
from transcribe_common.errors import InvalidInput, RetryableError
from transcribe_common.events import ObjectCreated
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobOptions, JobStatus, Manifest, ObjectSource
from transcribe_common.store.base import ObjectStore, put_model

log = logging.getLogger(__name__)
RETRY_DELAY = 1.0


class Router:
    def __init__(self, settings: RouterSettings, conn: redis.Redis, store: ObjectStore) -> None:
        self.settings, self.redis, self.store = settings, conn, store
        self.states = JobStates(conn, store, settings.minio_bucket)
        self.stopping = threading.Event()

    def run(self) -> None:
        self.recover()
        while not self.stopping.is_set():
            self.run_once(timeout=1.0)

    def recover(self) -> None:
        """Handle the events a previous router took but did not finish."""
        pending = self.redis.lrange(keys.EVENTS_PROCESSING, 0, -1)
        if pending:
            log.info("recovering %d in-flight events", len(pending))
        for raw in pending:
            self._process(keys.text(raw))

    def run_once(self, timeout: float) -> bool:
        try:
            # Redis takes fractional seconds here; redis-py's annotation says int.
            raw = self.redis.blmove(keys.EVENTS, keys.EVENTS_PROCESSING, timeout, "LEFT", "RIGHT")  # type: ignore[arg-type]
        except redis.ConnectionError as exc:
            log.warning("redis unavailable (%s); retrying", exc)
            self.stopping.wait(RETRY_DELAY)
            return False
        if raw is None:
            return False
        self._process(keys.text(raw))
        return True

    def _process(self, raw: str) -> None:
        while not self.stopping.is_set():
            try:
                self.handle_raw(raw)
            except (RetryableError, redis.ConnectionError) as exc:
                log.warning("event not handled yet (%s); retrying", exc)
                self.stopping.wait(RETRY_DELAY)
                continue
            except InvalidInput as exc:
                log.error("dropping malformed event to %s: %s", keys.EVENTS_DEAD, exc)
                self.redis.rpush(keys.EVENTS_DEAD, raw)
            except Exception:
                log.exception("event failed; kept in %s", keys.EVENTS_DEAD)
                self.redis.rpush(keys.EVENTS_DEAD, raw)
            self.redis.lrem(keys.EVENTS_PROCESSING, 1, raw)
            return

    def handle_raw(self, raw: str) -> None:
        for event in events.parse(raw):
            self.handle(event)

    def handle(self, event: ObjectCreated) -> None:
        if event.bucket == self.settings.minio_bucket:
            job_id = layout.job_id_of_manifest(event.key)
            if job_id is not None:
                self.enqueue(job_id, event.metadata.get("model"))
        elif event.bucket == self.settings.minio_inbox_bucket:
            if layout.OUTPUT_MARKER not in event.metadata:
                self.admit_inbox(event)
        else:
            log.debug("ignoring event for bucket %s", event.bucket)

    def admit_inbox(self, event: ObjectCreated) -> None:
        """Write the manifest for a dropped object and enqueue it."""
        job_id = layout.inbox_job_id(event.bucket, event.key, event.version)
        if self.states.read(job_id) is not None:
            log.info("inbox %s: job %s exists already", event.key, job_id)
            return
        manifest = inbox_manifest(job_id, event)
        if self.store.stat(self.settings.minio_bucket, layout.manifest_key(job_id)) is None:
            put_model(self.store, self.settings.minio_bucket, layout.manifest_key(job_id), manifest)
            log.info("inbox %s: job %s", event.key, job_id)
        self.enqueue(job_id, manifest.options.model)

    def enqueue(self, job_id: str, model: str | None) -> None:
        if self.states.advance(job_id, JobStatus.QUEUED) is None:
            current = self.states.read(job_id)
            # A job still "queued" but missing from RQ means a router died between the two steps.
            if current is None or current.status != JobStatus.QUEUED or Job.exists(job_id, self.redis):
                return
        jobqueue.enqueue(self.redis, job_id, model, self.settings)
        log.info("job %s enqueued", job_id)


def inbox_manifest(job_id: str, event: ObjectCreated) -> Manifest:
    """A manifest for an inbox object, its options taken from the object's user metadata
    (``X-Amz-Meta-Language: id`` and so on). Bad metadata still makes a job, one that fails with
    a message saying which value was wrong, so the person who dropped the file can find out."""
    source = ObjectSource(bucket=event.bucket, key=event.key, version_id=event.version_id)
    meta = {name.replace("-", "_"): value for name, value in event.metadata.items()}
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
    try:
        return Manifest.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fields.update(options={}, callback_url=None, error=f"invalid object metadata: {problems}")
        return Manifest.model_validate(fields)
