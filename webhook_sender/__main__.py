"""``transcribe-webhooks``: RQ's WorkerPool (``webhook_sender.pool``) on the webhook queue, and a
keeper process that queues the retries that are due and gives back the attempts of senders that
died (each second)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
import uuid

import redis
from rq import Queue

import webhook_sender.delivery  # noqa: F401  imported before the workers fork, not once per job
from transcribe_common import jobqueue, keys, transient
from transcribe_common.logs import setup_logging
from transcribe_common.ops import RedisGauge, register_redis_gauges, serve_ops
from transcribe_common.runtime import command_line, connect_redis
from webhook_sender.pool import WorkerPool
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
    RedisGauge("transcribe_webhook_queued", "Webhooks waiting for a sender.", lambda r: _queue(r).count),
    RedisGauge(
        "transcribe_webhook_scheduled",
        "Webhooks waiting for their next attempt.",
        jobqueue.webhooks_due,
    ),
]


def _queue(conn: redis.Redis) -> Queue:
    return Queue(keys.WEBHOOK_QUEUE, connection=conn)


KEEP_EVERY = 1.0  # seconds
STUCK_AFTER = 60.0  # seconds without a round of the keeper: liveness fails


class Keeper:
    """Each second, ``jobqueue.keep_webhooks`` (when this sender holds the keeper's lease): what
    RQ's scheduler and maintenance would do, but without a lock that a killed sender keeps. A
    process of its own, forked before any thread starts: the pool forks its workers again later,
    and a thread caught in a lock or an import at that moment would leave the new worker stuck."""

    def __init__(self, redis_url: str) -> None:
        # No lock: a keeper killed while it held one would leave the liveness check waiting for ever.
        self.last_round = multiprocessing.Value("d", time.time(), lock=False)
        self.process = multiprocessing.Process(
            target=self._run, args=(redis_url, os.getpid()), name="webhook-keeper", daemon=True
        )

    def start(self) -> None:
        self.process.start()

    def _run(self, redis_url: str, parent: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops its sender, which it follows
        # Its own connection, which gives up on a Redis that stops answering.
        conn = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        while os.getppid() == parent:  # it goes with its sender, even one that was SIGKILLed
            try:
                jobqueue.keep_webhooks(conn, holder)
            except Exception as exc:  # Redis away: the next round does it
                if transient.transient(exc):
                    log.warning("webhook keeper: %s", exc)
                else:
                    log.exception("webhook keeper")
            self.last_round.value = time.time()
            time.sleep(KEEP_EVERY)

    def stuck(self) -> str | None:
        if not self.process.is_alive():
            return "the keeper process is not running"
        idle = time.time() - self.last_round.value
        return f"the keeper has not run for {idle:.0f} s" if idle > STUCK_AFTER else None


def liveness(pool: WorkerPool, keeper: Keeper) -> str | None:
    """The pool starts its worker processes again when they die; with none at all it is stuck."""
    if pool.status == pool.Status.STARTED and pool.number_of_active_workers == 0:
        return "no webhook worker process is running"
    return keeper.stuck()


def main() -> None:
    command_line("transcribe-webhooks", __doc__)
    settings = WebhookSettings()
    setup_logging("webhooks", settings.log_level, settings.log_format)
    if not settings.webhook_secret:
        log.warning("WEBHOOK_SECRET is empty: webhooks go out unsigned")
    conn = connect_redis(settings, "webhooks")
    pool = WorkerPool([keys.WEBHOOK_QUEUE], connection=conn, num_workers=settings.webhook_concurrency)
    keeper = Keeper(settings.redis_url)
    keeper.start()  # before the threads of the gauges and the ops server
    register_redis_gauges(conn, GAUGES)
    serve_ops(
        "webhooks",
        settings.metrics_host,
        settings.webhook_metrics_port,
        lambda: liveness(pool, keeper),
        {"redis": conn.ping},
    )
    log.info("delivering webhooks from %s with %d workers", keys.WEBHOOK_QUEUE, settings.webhook_concurrency)
    pool.start(logging_level="WARNING")


if __name__ == "__main__":
    main()
