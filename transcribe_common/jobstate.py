"""The one place a job changes status.

Redis decides: a Lua script checks the move against ``ALLOWED``, sets the job's live hash and moves
the per-status counters behind ``GET /v1/stats`` in one step, so duplicate events and racing
workers cannot count a job twice or move it backwards. A refused move returns None. Moves that
matter to someone reading the bucket (started, finished, failed) are then written to
``<job_id>/status.json``, the durable record; that write is retried on its own.

**Fencing.** Each start of a job is an attempt, numbered by the gate (``attempts``). The worker
running attempt N makes every later move, progress report and note with ``attempt=N``, and the
gate refuses them once the job has been started again (its worker was reaped while it stalled).
The same move made twice by the same attempt (a retry after the reply was lost, or after the
``status.json`` write failed) counts as done: "already there, by the same attempt" is success.

**Expiry.** An ended job's live hash expires after ``STATE_TTL``; ``status.json`` stays the record,
and readers fall back to it (``read_or_stored``). The counters keep counting the job.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TypedDict, cast

import redis
from pydantic import ValidationError

from transcribe_common import keys, layout
from transcribe_common.errors import NotFound, RetryableError, StateUnavailable
from transcribe_common.models import JobStatus, Manifest, StatusRecord, WebhookDelivery, utcnow
from transcribe_common.settings import CommonSettings
from transcribe_common.store.base import ObjectInfo, ObjectStore, get_json, put_model
from transcribe_common.transient import Retry

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

# KEYS: the job's hash, the counters, the open jobs by owner, the janitor's open and ended indexes,
# every job by when it was made (and, beside it, ``keys.jobs_of`` its owner: named here, from the
# owner the first move records, so that no caller has to know it). When it was made is the field
# ``made`` the first move records (Unix seconds), else now.
# ARGV: status, the statuses it may come from (",a,b,"), the attempt that moves it ("" for none:
# the router, the API, a reaper), seconds the hash lives once ended (0: for ever), now (Unix
# seconds), then fields.
_ADVANCE = (
    """
local prev = redis.call('HGET', KEYS[1], 'status') or 'new'
local attempts = redis.call('HGET', KEYS[1], 'attempts') or '0'
local by = ARGV[3]
if by ~= '' then
  if attempts ~= by then return 'stale:' .. attempts end
  if prev == ARGV[1] and redis.call('HGET', KEYS[1], 'moved_by') == by then return 'ok:' .. attempts end
  -- Queued again by a reaper that took its worker for dead: the job is no longer this attempt's.
  if prev == 'queued' then return 'stale:' .. attempts end
end
if not string.find(ARGV[2], ',' .. prev .. ',', 1, true) then return prev end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'moved_by', by, unpack(ARGV, 6))
if ARGV[1] == 'started' then attempts = tostring(redis.call('HINCRBY', KEYS[1], 'attempts', 1)) end
-- Put back by the attempt itself (its worker stopping): a start that did not die, not held against it.
if ARGV[1] == 'queued' and by ~= '' then redis.call('HINCRBY', KEYS[1], 'drained', 1) end
local owner = redis.call('HGET', KEYS[1], 'owner')
local owners = KEYS[2] .. ':' .. (owner or '-')  -- keys.stats_of(owner): what GET /v1/stats shows a tenant
if prev ~= 'new' then
  redis.call('HINCRBY', KEYS[2], prev, -1)
  redis.call('HINCRBY', owners, prev, -1)
end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', owners, ARGV[1], 1)
local was_open = prev == 'queued' or prev == 'started'
local is_open = ARGV[1] == 'queued' or ARGV[1] == 'started'
if owner and was_open ~= is_open then redis.call('HINCRBY', KEYS[3], owner, is_open and 1 or -1) end
local job_id = string.sub(KEYS[1], -32)
if prev == 'new' then
  local made = tonumber(redis.call('HGET', KEYS[1], 'made') or '')
  if not made or made ~= made or made == math.huge or made == -math.huge then made = tonumber(ARGV[5]) end
  redis.call('ZADD', KEYS[6], made, job_id)
  redis.call('ZADD', KEYS[6] .. ':' .. (owner or '-'), made, job_id)
end
if is_open then
  redis.call('ZADD', KEYS[4], ARGV[5], job_id)
else
  redis.call('ZREM', KEYS[4], job_id)
  redis.call('ZADD', KEYS[5], ARGV[5], job_id)
end
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) else redis.call('PERSIST', KEYS[1]) end
"""
    + keys.lua_publish_change("KEYS[1]")
    + """return 'ok:' .. attempts
"""
)

# ARGV: percent, now, the attempt reporting. 1: raised; 0: not higher, or the job is not running;
# -1: the job has been started again since (this attempt is stale).
_PROGRESS = (
    """
if (redis.call('HGET', KEYS[1], 'attempts') or '0') ~= ARGV[3] then return -1 end
if redis.call('HGET', KEYS[1], 'status') ~= 'started' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'progress') or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'updated_at', ARGV[2])
"""
    + keys.lua_publish_change("KEYS[1]")
    + """return 1
"""
)

# Facts (ARGV: the attempt, then fields) recorded only by the job's current attempt, while it runs.
_NOTE = (
    """
if (redis.call('HGET', KEYS[1], 'attempts') or '0') ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'status') ~= 'started' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
"""
    + keys.lua_publish_change("KEYS[1]")
    + """return 1
"""
)

# A webhook's delivery log, only on a job that still has live state (not one that has expired).
_RECORD_WEBHOOK = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'webhook', ARGV[1])
"""
    + keys.lua_publish_change("KEYS[1]")
    + """return 1
"""
)

# A queued job whose live state had expired, started again by a late duplicate event: it ended
# long ago (its status.json says so), so it is taken back out of the counts and forgotten.
_RETIRE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
redis.call('HINCRBY', KEYS[2], 'queued', -1)
local owner = redis.call('HGET', KEYS[1], 'owner')
redis.call('HINCRBY', KEYS[2] .. ':' .. (owner or '-'), 'queued', -1)
if owner then redis.call('HINCRBY', KEYS[3], owner, -1) end
redis.call('ZREM', KEYS[4], string.sub(KEYS[1], -32))
redis.call('DEL', KEYS[1])
return 1
"""


class Stale(Exception):
    """The attempt making a move is no longer the job's current one: the job was started again."""


def _advance_args(
    status: JobStatus, sources: tuple[str, ...], fields: Mapping[str, object], attempt: int | None, ttl: int
) -> list[str]:
    """The arguments of the ``_ADVANCE`` script (``updated_at`` is always among the fields, and
    ``started_at`` or ``finished_at`` with a start or an end)."""
    now = utcnow().isoformat()
    values: dict[str, object] = {"updated_at": now, **fields}
    if status == JobStatus.STARTED:
        values["started_at"] = now
    elif status.is_final and status != JobStatus.DELETED and values.get("finished_at") is None:
        values["finished_at"] = now
    return [
        status.value,
        "," + ",".join(sources) + ",",
        "" if attempt is None else str(attempt),
        str(ttl if status.is_final else 0),
        f"{time.time():.3f}",
        *(str(v) for pair in values.items() if pair[1] is not None for v in pair),
    ]


class Origin(TypedDict, total=False):
    made: str  # Unix seconds
    owner: str


def made_by(manifest: Manifest) -> Origin:
    """What a job's first move records, whoever makes it (the router's claim, a cancel or a
    failure before it was routed): its owner and when it was made, from its manifest, so that it
    is listed under its owner at its making (a first move without them listed it under the
    inbox's, made "now")."""
    origin = Origin(made=f"{manifest.created_at.timestamp():.6f}")
    if manifest.owner is not None:
        origin["owner"] = manifest.owner
    return origin


class JobStates:
    def __init__(
        self, conn: redis.Redis, store: ObjectStore, bucket: str, *, ttl: int = 0, retry: Retry | None = None
    ) -> None:
        self._redis, self._store, self._bucket = conn, store, bucket
        self.ttl = ttl  # STATE_TTL: seconds an ended job's live state is kept; 0 keeps it
        self._retry = retry or Retry(attempts=5, backoff=0.5, most=10, what="writing status.json")
        self._advance = conn.register_script(_ADVANCE)
        self._progress = conn.register_script(_PROGRESS)
        self._note = conn.register_script(_NOTE)
        self._retire = conn.register_script(_RETIRE)

    @classmethod
    def for_settings(cls, conn: redis.Redis, store: ObjectStore, settings: CommonSettings) -> JobStates:
        return cls(conn, store, settings.minio_bucket, ttl=settings.state_ttl)

    def advance(
        self, job_id: str, status: JobStatus, *, attempt: int | None = None, **fields: object
    ) -> StatusRecord | None:
        """Move ``job_id`` to ``status`` and record ``fields`` with it; None if the move is refused.
        ``attempt``: the job's attempt making the move, refused if it is no longer the current one
        (and counted as done if that attempt made this move already)."""
        return self._move(job_id, status, ALLOWED[status], fields, attempt)

    def advance_from(
        self, job_id: str, source: JobStatus, status: JobStatus, *, attempt: int | None = None, **fields: object
    ) -> StatusRecord | None:
        """``advance``, only if the job is in ``source`` now (one of the states ``status`` may come from)."""
        assert source in ALLOWED[status]
        return self._move(job_id, status, (source,), fields, attempt)

    def requeue(self, job_id: str, reason: str, attempt: int | None = None) -> StatusRecord | None:
        """Put a started job back in the queue: its worker is stopping (``attempt``: its own) or
        died. Only the worker side does this; a duplicate event can never move a running job back.
        Its progress stays: the next run goes on from what this one kept (``gpu_worker.checkpoint``);
        one that has to start from the beginning sets it back to 0 when it starts."""
        fields: dict[str, object] = {"requeued": reason}
        return self._move(job_id, JobStatus.QUEUED, (JobStatus.STARTED,), fields, attempt)

    def restore(self, stored: StatusRecord, live: StatusRecord) -> StatusRecord | None:
        """Put a job's stored end (its ``status.json``) back over ``live``, a live state in which it
        is still open: Redis came back older than the bucket (a replica promoted before it synced, a
        restore from a backup, the second a crash lost). Only if the job is still as ``live`` says
        (the same status and attempt: a worker that has started it since keeps it); None if not."""
        if not stored.status.is_final or stored.status == JobStatus.DELETED or live.status.is_final:
            raise ValueError(f"job {live.job_id}: {stored.status} cannot be restored over {live.status}")
        kept = stored.model_dump(mode="json", include={"progress", "language", "duration", "error", "model"})
        fields: dict[str, object] = {
            **kept,
            "outputs": json.dumps(stored.outputs),
            "warnings": json.dumps(stored.warnings),
            "started_at": stored.started_at and stored.started_at.isoformat(),
            "finished_at": stored.finished_at and stored.finished_at.isoformat(),
            "updated_at": stored.updated_at.isoformat(),
        }
        if stored.shards is not None:
            fields |= {"shards_total": stored.shards.total, "shards_done": stored.shards.done}
        # A queued job's gate takes no attempt (a started one's would be refused as put back).
        attempt = live.attempts if live.status == JobStatus.STARTED else None
        if self._gate(live.job_id, stored.status, (live.status,), fields, attempt) is None:
            return None
        return self.read(live.job_id)

    def claim(self, job_id: str, status: JobStatus, **fields: object) -> bool:
        """Move ``job_id`` to ``status`` (one not kept in ``status.json``) without reading the record
        back: the router's gate, once per event."""
        assert status not in PERSISTED, "persisted moves go through advance()"
        return self._gate(job_id, status, ALLOWED[status], fields, None) is not None

    def claim_many(self, claims: Sequence[tuple[str, Mapping[str, object]]], status: JobStatus) -> list[bool]:
        """``claim`` for several jobs (id, fields) in one round trip (the router working through a backlog)."""
        assert status not in PERSISTED, "persisted moves go through advance()"
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for job_id, fields in claims:
                    args = _advance_args(status, ALLOWED[status], fields, None, self.ttl)
                    self._advance(keys=self._keys(job_id), args=args, client=pipe)
                return [keys.text(outcome).startswith("ok") for outcome in pipe.execute()]
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc

    def _move(
        self, job_id: str, status: JobStatus, sources: tuple[str, ...], fields: dict[str, object], attempt: int | None
    ) -> StatusRecord | None:
        attempts = self._gate(job_id, status, sources, fields, attempt)
        if attempts is None:
            return None
        try:
            record = self.read(job_id)
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc
        assert record is not None
        record.attempts = attempts  # the gate's: the attempt this move belongs to, even if another began since
        if status in PERSISTED:
            self.persist(record)
        return record

    def persist(self, record: StatusRecord) -> None:
        """Write ``status.json``, retried on its own while the store fails transiently. A start that
        cannot be written is only logged: the job runs on, and its end is written over it."""
        try:
            self._retry.call(put_model, self._store, self._bucket, layout.status_key(record.job_id), record)
        except RetryableError:
            if record.status != JobStatus.STARTED:
                raise
            log.warning("job %s: status.json not written for its start; its end will be", record.job_id)

    def _gate(
        self, job_id: str, status: JobStatus, sources: tuple[str, ...], fields: dict[str, object], attempt: int | None
    ) -> int | None:
        """The move in Redis; the job's attempt count after it, or None if it was refused."""
        args = _advance_args(status, sources, fields, attempt, self.ttl)
        try:
            outcome = keys.text(self._advance(keys=self._keys(job_id), args=args))
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc
        verdict, _, attempts = outcome.partition(":")
        if verdict == "ok":
            return int(attempts)
        if verdict == "stale":
            log.warning(
                "job %s: attempt %s may not move it to %s: the job was taken from it (queued or started "
                "again since; now attempt %s)",
                job_id,
                attempt,
                status.value,
                attempts,
            )
        else:
            # Every hop is at-least-once: a refused move is the gate doing its work, not news.
            log.debug("job %s: %s -> %s refused", job_id, verdict, status.value)
        return None

    @staticmethod
    def _keys(job_id: str) -> list[str]:
        return [keys.job(job_id), keys.STATS, keys.OPEN_BY_OWNER, keys.JOBS_OPEN, keys.JOBS_ENDED, keys.JOBS_CREATED]

    def progress(self, job_id: str, percent: float, attempt: int) -> None:
        """Raise the live progress of a started job; it never goes backwards. Best effort: a
        transcription goes on while Redis is briefly away, and the next report catches up.
        Raises ``Stale`` if the job has been started again since ``attempt`` began."""
        try:
            moved = self._progress(keys=[keys.job(job_id)], args=[f"{percent:.1f}", utcnow().isoformat(), str(attempt)])
        except redis.RedisError as exc:
            log.warning("job %s: progress not recorded (%s)", job_id, exc)
            return
        if moved == -1:
            raise Stale(f"job {job_id} was started again since attempt {attempt}")

    def note(self, job_id: str, attempt: int, **facts: object) -> None:
        """Record facts learnt while a job runs (language, duration); not a change of status.
        Best effort, like ``progress``: the final status records them again."""
        values = [str(v) for pair in facts.items() if pair[1] is not None for v in pair]
        try:
            noted = self._note(keys=[keys.job(job_id)], args=[str(attempt), *values])
        except redis.RedisError as exc:
            log.warning("job %s: %s not recorded (%s)", job_id, ", ".join(facts), exc)
            return
        if noted == -1:
            raise Stale(f"job {job_id} was started again since attempt {attempt}")

    def current(self, job_id: str, attempt: int) -> bool:
        """Whether ``attempt`` is still the job's running attempt (before it writes where readers look)."""
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.hget(keys.job(job_id), "attempts")
                pipe.hget(keys.job(job_id), "status")
                attempts, status = pipe.execute()
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc
        return attempts is not None and int(attempts) == attempt and status == JobStatus.STARTED.value.encode()

    def retire(self, job_id: str) -> bool:
        """Forget a queued job that had ended before its live state expired (``_RETIRE``)."""
        try:
            return bool(self._retire(keys=self._keys(job_id)))
        except redis.RedisError as exc:
            raise StateUnavailable(f"redis: {exc}") from exc

    def statuses(self, job_ids: list[str]) -> list[tuple[str | None, int]]:
        """The live status and attempt count of each job, in one round trip (for workers watching
        for cancels, and for their own attempts being taken over)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(keys.job(job_id), ["status", "attempts"])
            return [(keys.text(s) if s is not None else None, int(a or 0)) for s, a in pipe.execute()]

    def read(self, job_id: str) -> StatusRecord | None:
        return _record(job_id, self._redis.hgetall(keys.job(job_id)))

    def read_many(self, job_ids: Sequence[str]) -> list[StatusRecord | None]:
        """``read`` for several jobs, in one round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(keys.job(job_id))
            return [_record(job_id, raw) for job_id, raw in zip(job_ids, pipe.execute(), strict=True)]

    def newest(self, owners: Sequence[str | None] | None, below: Made | None, oldest: float) -> Iterator[Made]:
        """Jobs by when they were made, newest first: every job (``owners`` None), or those of the
        owners named (None among them: the jobs with none); only those made before ``below`` and
        no earlier than ``oldest`` (Unix seconds). Read from Redis a page at a time, as consumed."""
        indexes = [keys.JOBS_CREATED] if owners is None else [keys.jobs_of(owner) for owner in owners]
        walks = [_descending(self._redis, index, below, oldest) for index in indexes]
        return heapq.merge(*walks, reverse=True)

    def unindex(self, job_ids: Sequence[str], owners: Sequence[str | None] = ()) -> None:
        """Take jobs gone for good (no live state, status or manifest) out of the list of every
        job, and of the ``owners`` named (None among them: the jobs with none). An owner's list
        that still names one drops it when it next meets it (``GET /v1/jobs``)."""
        if not job_ids:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for index in (keys.JOBS_CREATED, *(keys.jobs_of(owner) for owner in owners)):
                pipe.zrem(index, *job_ids)
            pipe.execute()

    def read_or_stored(self, job_id: str) -> StatusRecord | None:
        """The live state, else the durable ``status.json`` (Redis may have lost or expired it)."""
        return self.read(job_id) or self.read_stored(job_id)

    def read_stored(self, job_id: str) -> StatusRecord | None:
        """The durable ``status.json`` alone; None if there is none yet, or it is unreadable."""
        try:
            return StatusRecord.model_validate(get_json(self._store, self._bucket, layout.status_key(job_id)))
        except (NotFound, ValueError, ValidationError):
            return None

    def stored_end(self, live: StatusRecord, folder: Mapping[str, ObjectInfo]) -> StatusRecord | None:
        """The job's end as its ``status.json`` records it, when ``folder`` (the job's objects by
        key, as listed) shows one written since ``live`` last moved, and it is an end of this job
        (finished, failed or cancelled) newer than ``live``; None otherwise, read or not."""
        info = folder.get(layout.status_key(live.job_id))
        if info is None or info.modified < live.updated_at.timestamp():
            return None  # none written since (a queued job has none): nothing to read
        stored = self.read_stored(live.job_id)
        if stored is None or not stored.status.is_final or stored.status == JobStatus.DELETED:
            return None
        if stored.job_id != live.job_id:
            log.warning("job %s: its status.json names job %s; left as it is", live.job_id, stored.job_id)
            return None
        return stored if stored.updated_at >= live.updated_at else None

    def stored_agrees(self, live: StatusRecord, folder: Mapping[str, ObjectInfo]) -> bool:
        """Whether ``status.json`` records the live status: read only when ``folder`` (the job's
        objects by key, as listed) says it is missing or older than that status."""
        info = folder.get(layout.status_key(live.job_id))
        if info is not None and info.modified >= live.updated_at.timestamp():
            return True
        stored = self.read_stored(live.job_id)
        return stored is not None and stored.status == live.status

    def open_jobs(self, owner: str) -> int:
        """How many of ``owner``'s jobs are queued or started (counted by the moves themselves)."""
        return max(0, int(self._redis.hget(keys.OPEN_BY_OWNER, owner) or 0))

    def counts(self, owners: Sequence[str | None] | None = None) -> dict[str, int]:
        """Jobs by status: every job's, or those of ``owners`` (an API key's digest; None: no key's)."""
        if owners is None:
            hashes = [self._redis.hgetall(keys.STATS)]
        else:
            with self._redis.pipeline(transaction=False) as pipe:
                for owner in owners:
                    pipe.hgetall(keys.stats_of(owner))
                hashes = pipe.execute()
        return {s.value: max(0, sum(int(raw.get(s.value.encode(), 0)) for raw in hashes)) for s in JobStatus}


Made = tuple[float, str]  # (Unix seconds it was made, job id): a job's place in the newest-first order
_PAGE = 200


def _record(job_id: str, raw: Mapping[bytes | str, bytes | str]) -> StatusRecord | None:
    if not raw:
        return None
    fields: dict[str, object] = {keys.text(k): keys.text(v) for k, v in raw.items()}
    if "shards_total" in fields:  # kept as two counters, so that each shard's end moves one
        fields["shards"] = {"total": fields.pop("shards_total"), "done": fields.pop("shards_done", 0)}
    return StatusRecord.model_validate({"job_id": job_id, **fields})


def _descending(conn: redis.Redis, index: str, below: Made | None, oldest: float) -> Iterator[Made]:
    """One index's jobs, newest first, strictly before ``below``. Among jobs made in the same
    instant Redis orders by id, descending, as tuples compare; ``skip`` steps over those of them
    already read, so that any number of equal scores pages through."""
    top = below[0] if below is not None else math.inf
    skip = 0
    while True:
        raw = conn.zrevrangebyscore(index, top, oldest, start=skip, num=_PAGE, withscores=True)
        page = [(float(score), keys.text(member)) for member, score in cast(list[tuple[bytes, float]], raw)]
        yield from (made for made in page if below is None or made < below)
        if len(page) < _PAGE:
            return
        last = page[-1][0]
        same = sum(1 for score, _ in page if score == last)
        skip = skip + same if last == top else same
        top = last


def read_webhook(conn: redis.Redis, job_id: str) -> WebhookDelivery | None:
    raw = conn.hget(keys.job(job_id), "webhook")
    return WebhookDelivery.model_validate_json(raw) if raw else None


def record_webhook(
    conn: redis.Redis, job_id: str, delivery: WebhookDelivery, pipeline: redis.client.Pipeline | None = None
) -> None:
    """The webhook's delivery log, beside the job's status; not a change of status, and not kept
    for a job whose live state has expired (it would be a hash with no status). With a
    ``pipeline``, written when the caller executes it."""
    script = conn.register_script(_RECORD_WEBHOOK)
    script(keys=[keys.job(job_id)], args=[delivery.model_dump_json()], client=pipeline)
