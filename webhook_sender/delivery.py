"""One delivery attempt of one webhook, as an RQ job on ``keys.WEBHOOK_QUEUE``.

The POST is signed per the Standard Webhooks specification (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``); the id stays the same on every attempt, the timestamp and signature are
fresh. The outcome decides what comes next:

- 2xx: delivered.
- 408, 429, 5xx, or no answer: tried again after an exponential backoff with jitter, or after the
  receiver's ``Retry-After``, both capped at ``WEBHOOK_BACKOFF_MAX``; up to ``WEBHOOK_ATTEMPTS``.
  The retry is a new RQ job, waiting in Redis until it is due (``jobqueue.enqueue_webhook``), so
  waiting holds no worker. An attempt that did not end (its sender died in it, or Redis went away
  while it recorded the outcome) is made again: webhooks go out at least once.
- 410 and any other 4xx or 3xx (redirects are not followed), or a URL the policy refuses: given up.

An attempt has ``WEBHOOK_DEADLINE`` seconds in all, however slowly the receiver answers (the
connection is closed under it then), well inside RQ's job timeout, so that every attempt ends
recorded. At most ``WEBHOOK_PER_RECEIVER`` attempts go to one receiver (host:port) at once; an
attempt over that goes to the back of the queue after a short pause, so one slow receiver cannot
stall everyone else's webhooks.

Every attempt (time, status code or error) is recorded on the job, for ``GET /v1/jobs/{id}``.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import redis
from standardwebhooks import Webhook

from transcribe_common import jobqueue, jobstate, keys, netsafe, transient
from transcribe_common.errors import InvalidInput, RetryableError
from transcribe_common.logs import job_context
from transcribe_common.models import DeliveryAttempt, WebhookDelivery, utcnow
from webhook_sender.settings import WebhookSettings

log = logging.getLogger(__name__)
# Seconds an attempt pauses, when its receiver has its share of the senders, before it goes to the
# back of the queue (not RQ's scheduler, whose process does not outlive a Redis restart).
BUSY_RECEIVER_PAUSE = 0.5


@functools.cache
def settings() -> WebhookSettings:
    return WebhookSettings()


@dataclass
class Outcome:
    attempt: DeliveryAttempt
    delivered: bool = False
    retry: bool = False
    retry_after: float | None = None


def deliver(job_id: str, url: str, body: str, message_id: str, attempt: int = 1) -> str:
    """The RQ job: one attempt, recorded; the next one scheduled if it may help."""
    with job_context(job_id):
        return _deliver(job_id, url, body, message_id, attempt)


def _deliver(job_id: str, url: str, body: str, message_id: str, attempt: int) -> str:
    job = jobqueue.running_job()
    assert job is not None, "runs as an RQ job"
    conn: redis.Redis = job.connection
    config = settings()
    with receiver_slot(conn, url, config.per_receiver, holder=job.id) as taken:
        outcome = post(url, body, message_id, config) if taken else None
    if outcome is None:  # that receiver has its share of the senders: to the back of the queue
        time.sleep(BUSY_RECEIVER_PAUSE)
        jobqueue.enqueue_webhook(conn, job_id, url, body, message_id, attempt=attempt, waited=True)
        return "waiting"
    delay = next_delay(attempt, outcome, config)
    RECORDING.call(_record, conn, job_id, url, body, message_id, attempt, outcome, delay)
    return "delivered" if outcome.delivered else "failed" if delay is None else "pending"


# The outcome is recorded with a few tries of its own: an attempt that raised would be made again
# (RQ's Retry), a second POST for a Redis blip of a few seconds.
RECORDING = transient.Retry(attempts=6, backoff=0.5, most=10.0, what="recording a webhook attempt")


def _record(
    conn: redis.Redis,
    job_id: str,
    url: str,
    body: str,
    message_id: str,
    attempt: int,
    outcome: Outcome,
    delay: float | None,
) -> None:
    """The attempt on the job's delivery log, the count of outcomes and the next attempt, if any:
    in one transaction, so that a try that failed half way is simply tried again."""
    record = jobstate.read_webhook(conn, job_id) or WebhookDelivery(url=url, message_id=message_id)
    record.attempts.append(outcome.attempt)
    record.next_attempt_at = None
    if outcome.delivered:
        record.state = "delivered"
    elif delay is None:
        record.state = "failed"
        log.error("webhook %s to %s given up after %d attempts: %s", message_id, url, attempt, outcome.attempt.error)
    else:
        record.next_attempt_at = utcnow() + timedelta(seconds=delay)
        log.warning(
            "webhook %s to %s: %s; attempt %d in %.1f s", message_id, url, outcome.attempt.error, attempt + 1, delay
        )
    with conn.pipeline() as pipe:
        pipe.multi()  # RQ opens the transaction itself unless it is open already
        jobstate.record_webhook(conn, job_id, record, pipeline=pipe)
        pipe.hincrby(keys.WEBHOOK_ATTEMPTS, "retry" if delay is not None else record.state)
        if delay is not None:
            jobqueue.enqueue_webhook(
                conn, job_id, url, body, message_id, attempt=attempt + 1, delay=delay, pipeline=pipe
            )
        pipe.execute()


# KEYS: the receiver's leases. ARGV: now, when a lease taken now runs out, the holder, how many.
_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[2])))
return 1
"""


@contextmanager
def receiver_slot(conn: redis.Redis, url: str, most: int, holder: str | None = None) -> Iterator[bool]:
    """One of the ``most`` attempts that may go to ``url``'s host (and port) at once, or False if all are taken.
    Each is a lease in Redis, across every sender process, held by the attempt (its RQ job id): a
    refused attempt holds none, and one whose sender died (or lost Redis) between taking and giving
    it back is given back with the attempt (``jobqueue.give_back_abandoned``), or runs out by itself."""
    key = jobqueue.receiver_key(url)
    holder, now = holder or uuid.uuid4().hex, time.time()
    args = [f"{now:.3f}", f"{now + jobqueue.WEBHOOK_JOB_TIMEOUT:.3f}", holder, str(most)]
    taken = bool(conn.register_script(_TAKE_SLOT)(keys=[key], args=args))
    try:
        yield taken
    finally:
        if taken:
            conn.zrem(key, holder)


def post(url: str, body: str, message_id: str, config: WebhookSettings) -> Outcome:
    at = utcnow()
    started = time.monotonic()
    headers = signed_headers(config.webhook_secret, message_id, body)
    try:
        with netsafe.client(config.url_policy, timeout=config.webhook_timeout, follow_redirects=False) as http:
            watchdog = threading.Timer(config.webhook_deadline, http.close)  # however slowly it answers
            watchdog.start()
            try:
                with http.stream("POST", url, content=body, headers=headers) as response:
                    code = response.status_code  # the body is never read: a receiver cannot make us hold it
            finally:
                watchdog.cancel()
    except InvalidInput as exc:  # the URL policy refused the receiver
        return Outcome(DeliveryAttempt(at=at, error=str(exc)))
    except (RetryableError, httpx.HTTPError, RuntimeError) as exc:  # RuntimeError: closed by the watchdog
        if time.monotonic() - started >= config.webhook_deadline:
            return Outcome(
                DeliveryAttempt(at=at, error=f"no answer within WEBHOOK_DEADLINE ({config.webhook_deadline:g} s)"),
                retry=True,
            )
        return Outcome(DeliveryAttempt(at=at, error=str(exc) or type(exc).__name__), retry=transient.transient(exc))
    attempt = DeliveryAttempt(at=at, status_code=code, error=None if response.is_success else f"HTTP {code}")
    if response.is_success:
        return Outcome(attempt, delivered=True)
    if response.is_redirect:
        attempt.error = f"HTTP {code}: redirects are not followed"
    retry = transient.http_status(code)
    return Outcome(
        attempt, retry=retry, retry_after=retry_after(response.headers.get("retry-after")) if retry else None
    )


def next_delay(attempt: int, outcome: Outcome, config: WebhookSettings) -> float | None:
    """Seconds until the next attempt, or None when there is to be none."""
    if outcome.delivered or not outcome.retry or attempt >= config.webhook_attempts:
        return None
    if outcome.retry_after is not None:
        return min(outcome.retry_after, config.webhook_backoff_max)
    ceiling = min(config.webhook_backoff_max, config.webhook_backoff * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311  "equal jitter": spread, never hurried


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, from either of its forms (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def signed_headers(secret: str, message_id: str, body: str) -> dict[str, str]:
    """Standard Webhooks headers: the id (the same on every attempt, for receivers to drop repeats)
    and timestamp always, the signature when there is a secret."""
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": "transcribe-pipeline",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
    }
    if not secret:
        return headers
    return headers | {"webhook-signature": Webhook(secret).sign(message_id, now, body)}
