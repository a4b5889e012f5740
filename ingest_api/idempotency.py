"""``Idempotency-Key`` on ``POST /v1/transcribe``: the same key from the same caller returns the
same job, for ``IDEMPOTENCY_TTL`` seconds.

The first request claims the key in Redis (``SET NX``) with the job id it is about to create and a
fingerprint of its body: of a JSON body at once, of an upload once it has been received
(``settle``). The job's manifest records the fingerprint too, and it is the truth: a claim only
points at it. A repeat gets the first request's job back (202 with ``Idempotent-Replayed: true``)
when that job exists and the bodies agree (a repeated upload is read to be compared, and not
stored); the key reused with a different body is refused (422).

While it runs, the first request keeps a second key alive beside its claim (``alive``, renewed
every few seconds, expiring ``ALIVE_FOR`` seconds after its process stops renewing it). A repeat
that finds no job is 409 while the first request is alive; once it is not (it died, or it failed
and could not forget its claim because Redis was away) the repeat takes the claim over and starts
afresh. So a key is never held for ``IDEMPOTENCY_TTL`` by a job that does not exist. The first
request writes its manifest only while its claim is still its own; a request that failed once its
manifest write had begun leaves its claim to the repeat, which finds the job if the write landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis
from starlette.concurrency import run_in_threadpool

from transcribe_common import keys, layout, transient
from transcribe_common.errors import InvalidInput

log = logging.getLogger(__name__)
MAX_KEY_LENGTH = 255
ALIVE_FOR = 30.0  # seconds the first request counts as alive after its last renewal
RENEW_EVERY = 5.0

# Each takes KEYS: the claim, its alive key. The claim is JSON with the job's id.
# ARGV: the claim, its TTL, the job id, ms to stay alive. Claim the key, alive, or read who has.
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  return {1}
end
return {0, redis.call('GET', KEYS[1])}
"""
# ARGV: job id, ms to stay alive. Renew this request's alive key, if the claim is still its own.
_RENEW = """
local v = redis.call('GET', KEYS[1])
if not v or cjson.decode(v)['job_id'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""
# ARGV: job id, fingerprint. Record the upload's fingerprint on this request's claim.
_SETTLE = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local claim = cjson.decode(v)
if claim['job_id'] ~= ARGV[1] then return 0 end
claim['fingerprint'] = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(claim), 'KEEPTTL')
return 1
"""
# ARGV: job id. Forget this request's claim (and its alive key): the request failed before its manifest.
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['job_id'] == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""
# ARGV: the claim as read. Forget a claim whose request is no longer alive, if nobody changed it.
_TAKE_OVER = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@dataclass(frozen=True)
class Claim:
    redis_key: str
    job_id: str
    replayed: bool
    fingerprint: str | None = None  # the first request's, on a replay (None: its upload had not arrived)
    stored: str = ""  # the claim as Redis holds it

    @property
    def alive_key(self) -> str:
        return f"{self.redis_key}:alive"


class InProgress(InvalidInput):
    """The first request with this key is still being received (409)."""


class TakenOver(InProgress):
    """This request's claim was taken over: it went quiet for ``ALIVE_FOR`` (Redis away, say)."""


def claim(conn: redis.Redis, caller: str, key: str, fingerprint: str | None, ttl: int) -> Claim:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    redis_key = keys.idempotency(hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest())
    job_id = layout.new_job_id()
    value = json.dumps({"job_id": job_id, "fingerprint": fingerprint})
    script = conn.register_script(_CLAIM)
    mine = Claim(redis_key, job_id, replayed=False, fingerprint=fingerprint, stored=value)
    for _ in range(3):  # a claim that expires between SET and GET is simply claimed again
        found = script(keys=[redis_key, mine.alive_key], args=[value, ttl, job_id, int(ALIVE_FOR * 1000)])
        if found[0]:
            return mine
        if len(found) > 1 and found[1] is not None:
            first = json.loads(found[1])
            return Claim(redis_key, first["job_id"], True, first.get("fingerprint"), keys.text(found[1]))
    raise InvalidInput("Idempotency-Key could not be claimed; try again")


def take_over(conn: redis.Redis, first: Claim, caller: str, key: str, fingerprint: str | None, ttl: int) -> Claim:
    """Claim the key afresh in place of a first request that is no longer alive and made no job.
    Refused (409) while it is alive; a replay of whoever claimed it first meanwhile."""
    script = conn.register_script(_TAKE_OVER)
    if not script(keys=[first.redis_key, first.alive_key], args=[first.stored]):
        raise InProgress("the first request with this Idempotency-Key is still being received; try again shortly")
    log.warning(
        "Idempotency-Key claim for job %s was left by a request that ended without it; taken over", first.job_id
    )
    return claim(conn, caller, key, fingerprint, ttl)


def check(first: str | None, fingerprint: str) -> None:
    """A replay must be the first request again."""
    if first is None:
        raise InProgress("the first request with this Idempotency-Key is still being received; try again shortly")
    if first != fingerprint:
        raise InvalidInput("this Idempotency-Key was used for a different request; use a new key")


def _run(conn: redis.Redis, script: str, claimed: Claim, *args: str) -> int:
    keys_ = [claimed.redis_key, claimed.alive_key]
    return int(conn.register_script(script)(keys=keys_, args=[claimed.job_id, *args]))


def renew(conn: redis.Redis, claimed: Claim) -> bool:
    """Keep this request alive; False if its claim is no longer its own."""
    return bool(_run(conn, _RENEW, claimed, str(int(ALIVE_FOR * 1000))))


def confirm(conn: redis.Redis, claimed: Claim) -> None:
    """Just before the manifest is written: the claim must still be this request's."""
    if not renew(conn, claimed):
        raise TakenOver("this request went quiet and its Idempotency-Key was taken over by a repeat; try again")


@contextlib.asynccontextmanager
async def kept_alive(conn: redis.Redis, claimed: Claim) -> AsyncIterator[None]:
    """This request's claim kept alive (every ``RENEW_EVERY`` seconds) while the block runs."""

    async def renewing() -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                await run_in_threadpool(renew, conn, claimed)
            except Exception as exc:  # Redis away: the request goes on; confirm() tells if it lost its claim
                if not transient.transient(exc):
                    raise

    task = asyncio.create_task(renewing())
    try:
        yield
    finally:
        task.cancel()


def settle(conn: redis.Redis, claimed: Claim, fingerprint: str) -> None:
    """Record the fingerprint of the upload the claim was made for, now that it has arrived. Best
    effort: the manifest holds it too, and a replay reads it there when Redis missed it."""
    try:
        _run(conn, _SETTLE, claimed, fingerprint)
    except Exception as exc:
        if not transient.transient(exc):
            raise
        log.warning("job %s: Idempotency-Key fingerprint not kept (%s); the manifest has it", claimed.job_id, exc)


def release(conn: redis.Redis, claimed: Claim) -> None:
    """Forget a claim whose request failed before its manifest was written. Best effort: one that
    Redis could not forget is taken over once its request is no longer alive."""
    try:
        _run(conn, _RELEASE, claimed)
    except Exception as exc:
        if not transient.transient(exc):
            raise
        log.warning("job %s: Idempotency-Key claim not released (%s); it is taken over later", claimed.job_id, exc)


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
