"""``transcribe-webhooks``: RQ's WorkerPool on the webhook queue, with RQ's scheduler for retries."""

from __future__ import annotations

import logging

import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry
from rq.worker_pool import WorkerPool

import webhook_sender.delivery  # noqa: F401  imported before the workers fork, not once per job
from transcribe_common import keys
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
        "Webhooks waiting for their next attempt (RQ's scheduled registry).",
        lambda r: ScheduledJobRegistry(queue=_queue(r)).count,
    ),
]


def _queue(conn: redis.Redis) -> Queue:
    return Queue(keys.WEBHOOK_QUEUE, connection=conn)


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
    log.info("delivering webhooks from %s with %d workers", keys.WEBHOOK_QUEUE, settings.webhook_concurrency)
    pool.start(logging_level="WARNING")


if __name__ == "__main__":
    main()
