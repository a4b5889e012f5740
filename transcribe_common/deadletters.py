"""Events the router could not handle, kept aside instead of holding up the ones behind them.

An event whose handling fails transiently (the store away, say) is put off: it waits in
``keys.EVENTS_RETRY`` until its next try is due, with backoff, while the router goes on with the
events behind it. After ``EVENT_ATTEMPTS`` tries, or at once when it cannot succeed (not an event,
a bug), it goes to ``keys.EVENTS_DEAD`` as a dead letter: the event with its error. Nothing is
dropped: the janitor replays the transient ones each run (their cause may have passed), and
``transcribe-janitor --replay-dead`` replays them all once an operator has fixed the cause.
"""

from __future__ import annotations

import hashlib
import logging
import time

import redis
from pydantic import BaseModel
from redis.client import Pipeline

from transcribe_common import keys

log = logging.getLogger(__name__)
MOST_WAIT = 60.0  # seconds, between two tries of one event

# Move the events that are due (score <= now) from the retry set back onto the events list.
_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, raw in ipairs(due) do
  redis.call('RPUSH', KEYS[2], raw)
  redis.call('ZREM', KEYS[1], raw)
end
return #due
"""


class DeadLetter(BaseModel):
    event: str
    error: str
    transient: bool  # its cause may pass: the janitor replays it
    attempts: int
    at: float


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def put_off(conn: redis.Redis, raw: str, error: str, most_attempts: int, backoff: float) -> bool:
    """One more failed try of ``raw`` (taken off the processing list): it waits in the retry set,
    or becomes a dead letter after ``most_attempts``. True if it is dead."""
    tries = int(conn.hincrby(keys.EVENT_TRIES, _digest(raw), 1))
    if tries >= most_attempts:
        with conn.pipeline() as pipe:
            bury(pipe, raw, error, transient=True, attempts=tries)
            pipe.execute()
        return True
    due = time.time() + min(MOST_WAIT, backoff * 2 ** (tries - 1))
    with conn.pipeline() as pipe:
        pipe.zadd(keys.EVENTS_RETRY, {raw: due})
        pipe.lrem(keys.EVENTS_PROCESSING, 1, raw)
        pipe.execute()
    return False


def bury(pipe: Pipeline, raw: str, error: str, *, transient: bool, attempts: int = 1) -> None:
    """Queue, in ``pipe``, the move of ``raw`` from the processing list to the dead letters."""
    letter = DeadLetter(event=raw, error=error, transient=transient, attempts=attempts, at=time.time())
    pipe.rpush(keys.EVENTS_DEAD, letter.model_dump_json())
    pipe.lrem(keys.EVENTS_PROCESSING, 1, raw)
    pipe.hdel(keys.EVENT_TRIES, _digest(raw))


def handled(pipe: Pipeline, raw: str) -> None:
    """Queue, in ``pipe``, forgetting the failed tries of an event that has now been handled."""
    pipe.hdel(keys.EVENT_TRIES, _digest(raw))


def release_due(conn: redis.Redis, most: int = 100) -> int:
    """Put the events whose next try is due back on the events list; how many."""
    return int(conn.register_script(_DUE)(keys=[keys.EVENTS_RETRY, keys.EVENTS], args=[time.time(), most]))


def letters(conn: redis.Redis) -> list[DeadLetter]:
    return [_letter(keys.text(raw)) for raw in conn.lrange(keys.EVENTS_DEAD, 0, -1)]


def _letter(raw: str) -> DeadLetter:
    """A dead letter; one kept before letters carried their error is the bare event."""
    try:
        return DeadLetter.model_validate_json(raw)
    except ValueError:
        return DeadLetter(
            event=raw, error="unknown (kept before dead letters said why)", transient=False, attempts=1, at=0
        )


def replay(conn: redis.Redis, *, everything: bool) -> int:
    """Put dead letters back on the events list: the transient ones, or ``everything``. How many."""
    replayed = 0
    for raw in conn.lrange(keys.EVENTS_DEAD, 0, -1):
        letter = _letter(keys.text(raw))
        if not (everything or letter.transient):
            continue
        with conn.pipeline() as pipe:  # one letter at a time: a replay that dies half-way loses none
            pipe.lrem(keys.EVENTS_DEAD, 1, keys.text(raw))
            pipe.rpush(keys.EVENTS, letter.event)
            pipe.execute()
        replayed += 1
    if replayed:
        log.warning("replayed %d dead letters from %s", replayed, keys.EVENTS_DEAD)
    return replayed


def count(conn: redis.Redis) -> int:
    return int(conn.llen(keys.EVENTS_DEAD))


def summary(conn: redis.Redis) -> dict[str, object]:
    """What ``/healthz`` says of them: how many, and the latest error (for an operator to act on)."""
    last = conn.lindex(keys.EVENTS_DEAD, -1)
    said: dict[str, object] = {
        "dead_letters": count(conn),
        "events_waiting_to_retry": int(conn.zcard(keys.EVENTS_RETRY)),
    }
    if last is not None:
        said["last_dead_letter_error"] = _letter(keys.text(last)).error
    return said
