"""``Idempotency-Key`` on ``POST /v1/transcribe``: the same key from the same caller returns the
same job, for ``IDEMPOTENCY_TTL`` seconds.

The first request claims the key in Redis (``SET NX``) with the job id it is about to create and a
fingerprint of its body: of a JSON body at once, of an upload once it has been received
(``settle``). A repeat with the same body gets that job back (202 with ``Idempotent-Replayed:
true``; a repeated upload is read to be compared, and not stored); the key reused with a different
body is refused (422), and a repeat while the first upload is still arriving is 409. A first
request that fails releases its claim, so a retry after a 4xx or 5xx starts afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import redis

from transcribe_common import keys, layout
from transcribe_common.errors import InvalidInput

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Claim:
    redis_key: str
    job_id: str
    replayed: bool
    fingerprint: str | None = None  # the first request's, on a replay (None: its upload is still arriving)


class InProgress(InvalidInput):
    """The first request with this key is still being received (409)."""


def claim(conn: redis.Redis, caller: str, key: str, fingerprint: str | None, ttl: int) -> Claim:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    redis_key = keys.idempotency(hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest())
    job_id = layout.new_job_id()
    for _ in range(3):  # a claim that expires between SET and GET is simply claimed again
        if conn.set(redis_key, json.dumps({"job_id": job_id, "fingerprint": fingerprint}), nx=True, ex=ttl):
            return Claim(redis_key, job_id, replayed=False)
        stored = conn.get(redis_key)
        if stored is not None:
            first = json.loads(stored)
            replay = Claim(redis_key, first["job_id"], replayed=True, fingerprint=first.get("fingerprint"))
            if fingerprint is not None:
                check(replay, fingerprint)
            return replay
    raise InvalidInput("Idempotency-Key could not be claimed; try again")


def check(replay: Claim, fingerprint: str) -> None:
    """A replay must be the first request again."""
    if replay.fingerprint is None:
        raise InProgress("the first request with this Idempotency-Key is still being received; try again shortly")
    if replay.fingerprint != fingerprint:
        raise InvalidInput("this Idempotency-Key was used for a different request; use a new key")


def settle(conn: redis.Redis, claimed: Claim, fingerprint: str) -> None:
    """Record the fingerprint of the upload the claim was made for, now that it has arrived."""
    stored = conn.get(claimed.redis_key)
    if stored is not None and (first := json.loads(stored)).get("job_id") == claimed.job_id:
        conn.set(claimed.redis_key, json.dumps({**first, "fingerprint": fingerprint}), xx=True, keepttl=True)


def release(conn: redis.Redis, claimed: Claim) -> None:
    """Forget a claim whose request failed (only if it is still this request's)."""
    stored = conn.get(claimed.redis_key)
    if stored is not None and json.loads(stored).get("job_id") == claimed.job_id:
        conn.delete(claimed.redis_key)


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
