"""The one place a job changes status.

Redis decides: a Lua script checks the move against ``ALLOWED``, sets the job's live hash and moves
the per-status counters behind ``GET /v1/stats`` in one step, so duplicate events and racing
workers cannot count a job twice or move it backwards. A refused move returns None. Moves that
matter to someone reading the bucket (started, finished, failed) are then written to
``<job_id>/status.json``, the durable record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import redis
from pydantic import ValidationError

from transcribe_common import keys, layout
from transcribe_common.errors import NotFound, StateUnavailable
from transcribe_common.models import JobStatus, StatusRecord, WebhookDelivery, utcnow
from transcribe_common.store.base import ObjectStore, get_json, put_model

log = logging.getLogger(__name__)

NEW = "new"  # no status yet
ALLOWED: dict[JobStatus, tuple[str, ...]] = {
    JobStatus.QUEUED: (NEW,),
    JobStatus.STARTED: (JobStatus.QUEUED,),
    JobStatus.FINISHED: (JobStatus.STARTED,),
    JobStatus.FAILED: (NEW, JobStatus.QUEUED, JobStatus.STARTED),
    # By request (DELETE /v1/jobs/{id}); a running job's worker sees it and stops.
    JobStatus.CANCELLED: (NEW, JobStatus.QUEUED, JobStatus.STARTED),
    # DELETE with delete_objects, in any state but this one; then the objects go.
    JobStatus.DELETED: (
        NEW,
        JobStatus.QUEUED,
        JobStatus.STARTED,
        JobStatus.FINISHED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    ),
}
PERSISTED = frozenset({JobStatus.STARTED, JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED})

_ADVANCE = """
local prev = redis.call('HGET', KEYS[1], 'status') or 'new'
if not string.find(ARGV[2], ',' .. prev .. ',', 1, true) then return prev end
redis.call('HSET', KEYS[1], 'status', ARGV[1], unpack(ARGV, 3))
if ARGV[1] == 'started' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
if prev ~= 'new' then redis.call('HINCRBY', KEYS[2], prev, -1) end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local owner = redis.call('HGET', KEYS[1], 'owner')
local was_open = prev == 'queued' or prev == 'started'
local is_open = ARGV[1] == 'queued' or ARGV[1] == 'started'
if owner and was_open ~= is_open then redis.call('HINCRBY', KEYS[3], owner, is_open and 1 or -1) end
return 'ok'
"""

_PROGRESS = """
if redis.call('HGET', KEYS[1], 'status') ~= 'started' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'progress') or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'updated_at', ARGV[2])
return 1
"""


def _advance_args(status: JobStatus, sources: tuple[str, ...], fields: Mapping[str, object]) -> list[str]:
    """The arguments of the ``_ADVANCE`` script: the new status, the ones it may come from, and the
    fields recorded with it (``updated_at`` always)."""
    values = {"updated_at": utcnow().isoformat(), **fields}
    return [
        status.value,
        "," + ",".join(sources) + ",",
        *(str(v) for pair in values.items() if pair[1] is not None for v in pair),
    ]


class JobStates:
    def __init__(self, conn: redis.Redis, store: ObjectStore, bucket: str) -> None:
        self._redis, self._store, self._bucket = conn, store, bucket
        self._advance = conn.register_script(_ADVANCE)
        self._progress = conn.register_script(_PROGRESS)

    def advance(self, job_id: str, status: JobStatus, **fields: object) -> StatusRecord | None:
        """Move ``job_id`` to ``status`` and record ``fields`` with it; None if the move is refused."""
        return self._move(job_id, status, ALLOWED[status], fields)

    def advance_from(self, job_id: str, source: JobStatus, status: JobStatus, **fields: object) -> StatusRecord | None:
        """``advance``, only if the job is in ``source`` now (one of the states ``status`` may come from)."""
        assert source in ALLOWED[status]
        return self._move(job_id, status, (source,), fields)

    def requeue(self, job_id: str, reason: str) -> StatusRecord | None:
        """Put a started job back in the queue: its worker is stopping or died. Only the worker
        side does this; a duplicate event can never move a running job back."""
        return self._move(job_id, JobStatus.QUEUED, (JobStatus.STARTED,), {"requeued": reason, "progress": 0})

    def claim(self, job_id: str, status: JobStatus, **fields: object) -> bool:
        """Move ``job_id`` to ``status`` (one not kept in ``status.json``) without reading the record
        back: the router's gate, once per event."""
        assert status not in PERSISTED, "persisted moves go through advance()"
        return self._gate(job_id, status, ALLOWED[status], fields)

    def claim_many(self, claims: Sequence[tuple[str, Mapping[str, object]]], status: JobStatus) -> list[bool]:
        """``claim`` for several jobs (id, fields) in one round trip (the router working through a backlog)."""
        assert status not in PERSISTED, "persisted moves go through advance()"
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for job_id, fields in claims:
                    args = _advance_args(status, ALLOWED[status], fields)
                    self._advance(keys=[keys.job(job_id), keys.STATS, keys.OPEN_BY_OWNER], args=args, client=pipe)
                return [outcome == b"ok" for outcome in pipe.execute()]
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc

    def _move(
        self, job_id: str, status: JobStatus, sources: tuple[str, ...], fields: dict[str, object]
    ) -> StatusRecord | None:
        if not self._gate(job_id, status, sources, fields):
            return None
        record = self.read(job_id)
        assert record is not None
        if status in PERSISTED:
            put_model(self._store, self._bucket, layout.status_key(job_id), record)
        return record

    def _gate(self, job_id: str, status: JobStatus, sources: tuple[str, ...], fields: dict[str, object]) -> bool:
        args = _advance_args(status, sources, fields)
        try:
            outcome = self._advance(keys=[keys.job(job_id), keys.STATS, keys.OPEN_BY_OWNER], args=args)
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc
        if outcome != b"ok":
            # Every hop is at-least-once: a refused move is the gate doing its work, not news.
            log.debug("job %s: %s -> %s refused", job_id, outcome.decode(), status.value)
            return False
        return True

    def progress(self, job_id: str, percent: float) -> None:
        """Raise the live progress of a started job; it never goes backwards. Best effort: a
        transcription goes on while Redis is briefly away, and the next report catches up."""
        try:
            self._progress(keys=[keys.job(job_id)], args=[f"{percent:.1f}", utcnow().isoformat()])
        except redis.RedisError as exc:
            log.warning("job %s: progress not recorded (%s)", job_id, exc)

    def note(self, job_id: str, **facts: object) -> None:
        """Record facts learnt while a job runs (language, duration); not a change of status.
        Best effort, like ``progress``: the final status records them again."""
        try:
            self._redis.hset(keys.job(job_id), mapping={k: str(v) for k, v in facts.items() if v is not None})
        except redis.RedisError as exc:
            log.warning("job %s: %s not recorded (%s)", job_id, ", ".join(facts), exc)

    def statuses(self, job_ids: list[str]) -> list[str | None]:
        """The live status of each job, in one round trip (for workers watching for cancels)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(keys.job(job_id), "status")
            return [keys.text(v) if v is not None else None for v in pipe.execute()]

    def read(self, job_id: str) -> StatusRecord | None:
        raw = self._redis.hgetall(keys.job(job_id))
        if not raw:
            return None
        fields = {keys.text(k): keys.text(v) for k, v in raw.items()}
        return StatusRecord.model_validate({"job_id": job_id, **fields})

    def read_or_stored(self, job_id: str) -> StatusRecord | None:
        """The live state, else the durable ``status.json`` (Redis may have lost or expired it)."""
        return self.read(job_id) or self.read_stored(job_id)

    def read_stored(self, job_id: str) -> StatusRecord | None:
        """The durable ``status.json`` alone; None if there is none yet, or it is unreadable."""
        try:
            return StatusRecord.model_validate(get_json(self._store, self._bucket, layout.status_key(job_id)))
        except (NotFound, ValueError, ValidationError):
            return None

    def open_jobs(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or started (counted by the moves themselves)."""
        return max(0, int(self._redis.hget(keys.OPEN_BY_OWNER, owner) or 0))

    def counts(self) -> dict[str, int]:
        raw = self._redis.hgetall(keys.STATS)
        return {s.value: max(0, int(raw.get(s.value.encode(), 0))) for s in JobStatus}


def read_webhook(conn: redis.Redis, job_id: str) -> WebhookDelivery | None:
    raw = conn.hget(keys.job(job_id), "webhook")
    return WebhookDelivery.model_validate_json(raw) if raw else None


def record_webhook(conn: redis.Redis, job_id: str, delivery: WebhookDelivery) -> None:
    """The webhook's delivery log, beside the job's status; not a change of status."""
    conn.hset(keys.job(job_id), "webhook", delivery.model_dump_json())
