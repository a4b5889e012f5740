"""``Idempotency-Key`` on ``POST /v1/transcribe``: the same key from the same caller returns the
same job, for ``IDEMPOTENCY_TTL`` seconds.

The first request claims the key in Redis (``SET NX``) with the job id it is about to create and a
fingerprint of its body: of a JSON body at once, of an upload once it has been received
(``settle``). The job's manifest records the fingerprint too, and it is the truth: a claim only
points at it. A repeat gets the first request's job back (202 with ``Idempotent-Replayed: true``)
when that job exists and the bodies agree (a repeated upload is read to be compared, and not
stored); the key reused with a different body is refused (422).

A repeat that finds no job yet is 409 while the first request may still be arriving or storing
it. The first request touches its claim while its body arrives; a claim nobody has touched for
twice ``BODY_TIMEOUT`` (the longest a live request goes without a byte) belongs to a request that
died, or failed and could not forget its claim because Redis was away: the repeat takes it over
and starts afresh. So a key is never held for ``IDEMPOTENCY_TTL`` by a job that does not exist,
and a job that exists is never made twice because Redis missed its fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import redis
from starlette.concurrency import run_in_threadpool

from transcribe_common import keys, layout, transient
from transcribe_common.errors import InvalidInput

log = logging.getLogger(__name__)
MAX_KEY_LENGTH = 255
TOUCH_EVERY = 10.0  # seconds, while a first request's upload arrives

# Delete the claim only if it is still the one read (KEYS[1]; ARGV[1]: its stored value).
_FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Claim:
    redis_key: str
    job_id: str
    replayed: bool
    fingerprint: str | None = None  # the first request's, on a replay (None: its upload had not arrived)
    at: float = 0.0  # when the first request last touched it
    stored: str = ""  # the claim as Redis holds it

    def stale(self, quiet: float, now: float | None = None) -> bool:
        """Whether the first request has gone quiet for longer than a live one can."""
        return (time.time() if now is None else now) - self.at > quiet


class InProgress(InvalidInput):
    """The first request with this key is still being received (409)."""


def _value(job_id: str, fingerprint: str | None) -> str:
    return json.dumps({"job_id": job_id, "fingerprint": fingerprint, "at": round(time.time(), 3)})


def claim(conn: redis.Redis, caller: str, key: str, fingerprint: str | None, ttl: int) -> Claim:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    redis_key = keys.idempotency(hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest())
    job_id = layout.new_job_id()
    for _ in range(3):  # a claim that expires between SET and GET is simply claimed again
        value = _value(job_id, fingerprint)
        if conn.set(redis_key, value, nx=True, ex=ttl):
            return Claim(redis_key, job_id, replayed=False, fingerprint=fingerprint, at=time.time(), stored=value)
        stored = conn.get(redis_key)
        if stored is not None:
            first = json.loads(stored)
            return Claim(
                redis_key,
                first["job_id"],
                replayed=True,
                fingerprint=first.get("fingerprint"),
                at=float(first.get("at", 0.0)),
                stored=keys.text(stored),
            )
    raise InvalidInput("Idempotency-Key could not be claimed; try again")


def take_over(conn: redis.Redis, stale: Claim, caller: str, key: str, fingerprint: str | None, ttl: int) -> Claim:
    """Claim the key afresh in place of a first request that died (or a replay of whoever won)."""
    conn.register_script(_FORGET)(keys=[stale.redis_key], args=[stale.stored])
    log.warning("Idempotency-Key claim for job %s was left by a request that died; claimed afresh", stale.job_id)
    return claim(conn, caller, key, fingerprint, ttl)


def check(first: str | None, fingerprint: str) -> None:
    """A replay must be the first request again."""
    if first is None:
        raise InProgress("the first request with this Idempotency-Key is still being received; try again shortly")
    if first != fingerprint:
        raise InvalidInput("this Idempotency-Key was used for a different request; use a new key")


def touch(conn: redis.Redis, claimed: Claim) -> None:
    """Say that the first request is alive; only while the claim is still its own."""
    _rewrite(conn, claimed, None)


def settle(conn: redis.Redis, claimed: Claim, fingerprint: str) -> None:
    """Record the fingerprint of the upload the claim was made for, now that it has arrived. Best
    effort: the manifest holds it too, and a replay reads it there when Redis missed it."""
    try:
        _rewrite(conn, claimed, fingerprint)
    except Exception as exc:
        if not transient.transient(exc):
            raise
        log.warning("job %s: Idempotency-Key fingerprint not kept (%s); the manifest has it", claimed.job_id, exc)


def _rewrite(conn: redis.Redis, claimed: Claim, fingerprint: str | None) -> None:
    stored = conn.get(claimed.redis_key)
    if stored is not None and (first := json.loads(stored)).get("job_id") == claimed.job_id:
        value = {**first, "at": round(time.time(), 3)} | ({"fingerprint": fingerprint} if fingerprint else {})
        conn.set(claimed.redis_key, json.dumps(value), xx=True, keepttl=True)


def release(conn: redis.Redis, claimed: Claim) -> None:
    """Forget a claim whose request failed (only if it is still this request's). Best effort: one
    that Redis could not forget goes stale by itself."""
    try:
        stored = conn.get(claimed.redis_key)
        if stored is not None and json.loads(stored).get("job_id") == claimed.job_id:
            conn.delete(claimed.redis_key)
    except Exception as exc:
        if not transient.transient(exc):
            raise
        log.warning("job %s: Idempotency-Key claim not released (%s); it goes stale by itself", claimed.job_id, exc)


async def touching(stream: AsyncIterator[bytes], touch_now: Callable[[], None]) -> AsyncIterator[bytes]:
    """``stream``, touching the claim every ``TOUCH_EVERY`` seconds while it flows."""
    last = time.monotonic()
    async for chunk in stream:
        if time.monotonic() - last >= TOUCH_EVERY:
            last = time.monotonic()
            try:
                await run_in_threadpool(touch_now)
            except Exception as exc:  # Redis away: the upload goes on; the claim may go stale
                if not transient.transient(exc):
                    raise
        yield chunk


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
