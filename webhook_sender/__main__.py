"""``transcribe-webhooks``: ``WEBHOOK_CONCURRENCY`` RQ workers on threads of this one process
(``transcribe_common.jobqueue``) deliver from the webhook queue; the main thread keeps their keys
alive and, each second, keeps the queue (``jobqueue.keep_webhooks``): it queues the retries that are
due and gives back the attempts of senders that died.

SIGTERM or SIGINT: take no more attempts; those running end within ``WEBHOOK_DEADLINE`` and are
recorded, then the process exits. A second signal exits at once: an attempt cut short is made again
by the next sender, once this one's ``WEBHOOK_HEARTBEAT_TTL`` has run out."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid

import redis

import webhook_sender.delivery  # noqa: F401  the job function, imported before any thread asks for it
from transcribe_common import jobqueue, keys, transient
from transcribe_common.logs import setup_logging
from transcribe_common.ops import Heartbeat, RedisGauge, register_redis_gauges, serve_ops
from transcribe_common.runtime import command_line, connect_redis, stop_on_signals
from webhook_sender.settings import WebhookSettings

log = logging.getLogger("webhook_sender")

GAUGES = [
    RedisGauge(
        "transcribe_webhook_attempts",
        "Delivery attempts by outcome: delivered, retry (another attempt scheduled), failed (given up).",
        lambda r: {keys.text(k): float(v) for k, v in r.hgetall(keys.WEBHOOK_ATTEMPTS).items()},
        label="outcome",
        counter=True,
    ),
    RedisGauge(
        "transcribe_webhook_queued",
        "Webhooks waiting for a sender.",
        lambda r: jobqueue.queue_length(r, keys.WEBHOOK_QUEUE),
    ),
    RedisGauge(
        "transcribe_webhook_scheduled",
        "Webhooks waiting for their next attempt.",
        jobqueue.webhooks_due,
    ),
]

KEEP_EVERY = 1.0  # seconds between rounds of the keeper
STUCK_AFTER = 60.0  # seconds without a turn of the main loop: liveness fails


class Sender:
    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.conn = connect_redis(settings, "webhooks")
        # Names of their own: a sender that died leaves workers whose keys expire, and nothing to take over.
        self.name = f"webhooks-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.workers = [
            jobqueue.ThreadWorker(
                [keys.WEBHOOK_QUEUE],
                name=f"{self.name}-{n}",
                connection=connect_redis(settings, "webhooks"),
                heartbeat_ttl=settings.webhook_heartbeat_ttl,
            )
            for n in range(settings.webhook_concurrency)
        ]
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.failed = False
        self.liveness = Heartbeat(stuck_after=STUCK_AFTER)

    @property
    def beat(self) -> float:
        """Seconds between heartbeats: three chances before the TTL runs out."""
        return max(1.0, self.settings.webhook_heartbeat_ttl / 3)

    def run(self) -> None:
        self.threads = jobqueue.start(self.workers, daemon=True)
        log.info("delivering webhooks from %s with %d workers", keys.WEBHOOK_QUEUE, len(self.workers))
        last_beat = -self.beat
        while not self.stopping.is_set():
            self.liveness.beat()
            if not all(thread.is_alive() for thread in self.threads):
                # RQ ends a worker's loop on some Redis errors; rather than run on with fewer
                # workers, stop whole and let the supervisor start us afresh.
                log.error("a worker thread has stopped; stopping the sender so that it is restarted")
                self.failed = True
                break
            if time.monotonic() - last_beat >= self.beat:
                last_beat = time.monotonic()
                self._heartbeat()
            self._keep()
            self.stopping.wait(KEEP_EVERY)
        self._finish()

    def _finish(self) -> None:
        """The attempts running end (each within its WEBHOOK_DEADLINE) and are recorded; idle workers
        are not waited for: one may be waiting for a Redis that does not answer, for a minute."""
        for worker in self.workers:
            worker.stop_after_job()
        log.info("stopping: %d attempts running get to end", sum(worker.in_job for worker in self.workers))
        while self._finishing():
            self.liveness.beat()
            self._heartbeat()  # attempts that are finishing must not look abandoned
            time.sleep(min(self.beat, 0.2))
        log.info("stopped")

    def _finishing(self) -> bool:
        pairs = zip(self.workers, self.threads, strict=True)
        return any(worker.in_job and thread.is_alive() for worker, thread in pairs)

    def _heartbeat(self) -> None:
        try:
            for worker, thread in zip(self.workers, self.threads, strict=True):
                if thread.is_alive():
                    worker.beat()
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)

    def _keep(self) -> None:
        """One round of keeping the webhook queue: another sender's, if it holds the keeper's lease."""
        try:
            jobqueue.keep_webhooks(self.conn, self.name)
        except Exception as exc:  # Redis away: the next round does it
            if transient.transient(exc):
                log.warning("webhook keeper: %s", exc)
            else:
                log.exception("webhook keeper")

    def alive(self) -> str | None:
        """Why this sender is not alive, or None: its main loop turns and a worker thread runs."""
        if self.threads and not any(thread.is_alive() for thread in self.threads):
            return "no webhook worker thread is running"
        return self.liveness()


def main() -> None:
    command_line("transcribe-webhooks", __doc__)
    settings = WebhookSettings()
    setup_logging("webhooks", settings.log_level, settings.log_format)
    sys.exit(serve(settings, stop_on_signals(second="leaving the running attempts to the next sender")))


def serve(settings: WebhookSettings, stopping: threading.Event) -> int:
    """Deliver until ``stopping`` is set; 1 if a worker thread stopped (start afresh)."""
    if not settings.webhook_secret:
        log.warning("WEBHOOK_SECRET is empty: webhooks go out unsigned")
    sender = Sender(settings)
    sender.stopping = stopping
    register_redis_gauges(sender.conn, GAUGES)
    serve_ops(
        "webhooks", settings.metrics_host, settings.webhook_metrics_port, sender.alive, {"redis": sender.conn.ping}
    )
    sender.run()
    return 1 if sender.failed else 0


if __name__ == "__main__":
    main()
