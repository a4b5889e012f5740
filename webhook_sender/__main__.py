"""``transcribe-webhooks``: RQ's WorkerPool on the webhook queue, and a keeper thread that queues
the retries that are due and runs again the attempts of senders that died (each second)."""

from __future__ import annotations

import logging
import threading

import redis
from rq import Queue
from rq.worker_pool import WorkerPool

import webhook_sender.delivery  # noqa: F401  imported before the workers fork, not once per job
from transcribe_common import jobqueue, keys, transient
from transcribe_common.logs import setup_logging
from transcribe_common.ops import RedisGauge, register_redis_gauges, serve_ops
from transcribe_common.runtime import connect_redis
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


def keep(conn: redis.Redis, stop: threading.Event) -> None:
    """What RQ's scheduler and maintenance would do, but each second and with no lock that a
    killed sender keeps: due retries queued, abandoned attempts run again."""
    while not stop.wait(KEEP_EVERY):
        try:
            jobqueue.release_due_webhooks(conn)
            jobqueue.rerun_abandoned_webhooks(conn)
        except Exception as exc:  # Redis away: the next round does it
            if transient.transient(exc):
                log.warning("webhook keeper: %s", exc)
            else:
                log.exception("webhook keeper")


def liveness(pool: WorkerPool) -> str | None:
    """The pool starts its worker processes again when they die; with none at all it is stuck."""
    if pool.status == pool.Status.STARTED and pool.number_of_active_workers == 0:
        return "no webhook worker process is running"
    return None


def main() -> None:
    settings = WebhookSettings()
    setup_logging("webhooks", settings.log_level, settings.log_format)
    if not settings.webhook_secret:
        log.warning("WEBHOOK_SECRET is empty: webhooks go out unsigned")
    conn = connect_redis(settings, "webhooks")
    pool = WorkerPool([keys.WEBHOOK_QUEUE], connection=conn, num_workers=settings.webhook_concurrency)
    register_redis_gauges(conn, GAUGES)
    serve_ops(
        "webhooks", settings.metrics_host, settings.webhook_metrics_port, lambda: liveness(pool), {"redis": conn.ping}
    )
    # Its own connection: the pool forks its workers while this thread may be using one.
    keeper = threading.Thread(
        target=keep, args=(connect_redis(settings, "webhooks"), threading.Event()), name="keeper", daemon=True
    )
    keeper.start()
    log.info("delivering webhooks from %s with %d workers", keys.WEBHOOK_QUEUE, settings.webhook_concurrency)
    pool.start(logging_level="WARNING")


if __name__ == "__main__":
    main()
