"""Jobs' changes as they happen, for ``GET /v1/jobs/{id}/events``.

Every script that changes a job's live state publishes the job's id on ``keys.JOB_CHANGES``. One
pub/sub connection per API process (a thread of redis-py's own, ``PubSub.run_in_thread``) hears
them all and wakes the streams that follow that job; each stream then reads the job again and
sends it if it differs. Pub/sub is fire-and-forget, so a stream also reads the job every
``EVENTS_RECHECK`` seconds whatever it heard: a message lost while Redis was away delays an
event, never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.client import PubSub, PubSubWorkerThread

from transcribe_common import keys

log = logging.getLogger(__name__)

_LISTEN_TIMEOUT = 1.0  # seconds the listening thread blocks on the connection at a time


class JobChanges:
    def __init__(self, conn: redis.Redis) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._followers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._thread: PubSubWorkerThread | None = None
        self._warned = False

    def start(self) -> None:
        pubsub = self._conn.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(**{keys.JOB_CHANGES: self._heard})
        self._thread = pubsub.run_in_thread(sleep_time=_LISTEN_TIMEOUT, daemon=True, exception_handler=self._trouble)

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread.join(timeout=2 * _LISTEN_TIMEOUT)
            self._thread = None

    @contextmanager
    def follow(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``job_id`` may have changed; the caller clears it once it has looked."""
        follower = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._followers.setdefault(job_id, set()).add(follower)
        try:
            yield follower[1]
        finally:
            with self._lock:
                followers = self._followers.get(job_id, set())
                followers.discard(follower)
                if not followers:
                    self._followers.pop(job_id, None)

    def _heard(self, message: dict[str, object]) -> None:
        job_id = keys.text(message["data"])  # type: ignore[arg-type]
        self._warned = False
        with self._lock:
            followers = list(self._followers.get(job_id, ()))
        for loop, event in followers:
            loop.call_soon_threadsafe(event.set)

    def _trouble(self, exc: BaseException, pubsub: PubSub, thread: PubSubWorkerThread) -> None:
        """Redis is away: streams fall back to reading their jobs every ``EVENTS_RECHECK``; the
        subscription is made again once Redis answers (redis-py resubscribes on reconnecting)."""
        if not self._warned:
            log.warning("job changes not heard (%s); event streams poll until Redis is back", exc)
            self._warned = True
        time.sleep(_LISTEN_TIMEOUT)  # then the thread listens again, reconnecting
