"""Jobs' changes as they happen, for ``GET /v1/jobs/{id}/events``.

Every script that changes a job's live state publishes the job's id on ``keys.JOB_CHANGES``. One
pub/sub connection per API process, on a thread of its own, hears them all and wakes the streams
that follow that job; each stream then reads the job again and sends it if it differs. Pub/sub is
fire-and-forget, so a stream also reads the job every ``EVENTS_RECHECK`` seconds whatever it
heard: a message lost while Redis was away delays an event, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from transcribe_common import keys, logs

log = logging.getLogger(__name__)

_LISTEN_TIMEOUT = 1.0  # seconds the listening thread blocks on the connection at a time


class JobChanges:
    def __init__(self, conn: redis.Redis) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._followers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen on a thread of its own; Redis may be away now (the API starts all the same, and
        says it is not ready): the thread subscribes once it answers."""
        self._thread = logs.thread(self._listen, "job-changes")
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is None:
            return
        # A message wakes the listener at once, rather than at the end of its wait; with Redis away
        # it is waiting to try again, and sees the stop in that wait.
        with contextlib.suppress(redis.RedisError):
            self._conn.publish(keys.JOB_CHANGES, "")
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

    def _listen(self) -> None:
        warned = False
        while not self._stopping.is_set():
            pubsub = self._conn.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(keys.JOB_CHANGES)
                if warned:
                    log.info("job changes heard again")
                    warned = False
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=_LISTEN_TIMEOUT)
                    if message is not None and message["type"] == "message":
                        self._heard(keys.text(message["data"]))
            except Exception as exc:  # Redis away, above all: streams read their jobs every EVENTS_RECHECK
                if not warned:
                    log.warning("job changes not heard (%s); event streams poll until Redis is back", exc)
                    warned = True
                self._stopping.wait(_LISTEN_TIMEOUT)
            finally:
                pubsub.close()

    def _heard(self, job_id: str) -> None:
        with self._lock:
            followers = list(self._followers.get(job_id, ()))
        for loop, event in followers:
            if not loop.is_closed():  # a stream whose loop ended without leaving (the process stopping)
                loop.call_soon_threadsafe(event.set)


class TooManyStreams(Exception):
    """An event stream past ``EVENTS_MAX_STREAMS`` or ``EVENTS_MAX_PER_CALLER`` (429)."""


class StreamSlots:
    """The event streams this API process holds open: at most ``most`` in all and ``per_caller``
    for one caller (an API key, or an address when keys are off). 8,000 open streams left
    ``/v1/stats`` unanswered for 18 s and grew the API by 200 MB."""

    def __init__(self, most: int, per_caller: int) -> None:
        self.most, self.per_caller = most, per_caller
        self.open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> Callable[[], None]:
        """A slot for ``caller``'s stream, or ``TooManyStreams``; what gives it back (once)."""
        with self._lock:
            if sum(self.open.values()) >= self.most:
                raise TooManyStreams(f"this server has {self.most} event streams open (EVENTS_MAX_STREAMS)")
            if self.open.get(caller, 0) >= self.per_caller:
                raise TooManyStreams(
                    f"you have {self.per_caller} event streams open (EVENTS_MAX_PER_CALLER); close one, or poll"
                )
            self.open[caller] = self.open.get(caller, 0) + 1
        given_back = threading.Event()

        def give_back() -> None:
            with self._lock:
                if given_back.is_set():
                    return
                given_back.set()
                self.open[caller] -= 1
                if not self.open[caller]:
                    del self.open[caller]

        return give_back
