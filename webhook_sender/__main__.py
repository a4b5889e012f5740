"""``transcribe-webhooks``: RQ's WorkerPool on the webhook queue, with RQ's scheduler for retries."""

from __future__ import annotations

import logging

from rq.worker_pool import WorkerPool

import webhook_sender.delivery  # noqa: F401  imported before the workers fork, not once per job
from transcribe_common import keys
from transcribe_common.runtime import connect_redis, setup_logging
from webhook_sender.settings import WebhookSettings

log = logging.getLogger("webhook_sender")


def main() -> None:
    settings = WebhookSettings()
    setup_logging("webhooks", settings.log_level)
    if not settings.webhook_secret:
        log.warning("WEBHOOK_SECRET is empty: webhooks go out unsigned")
    conn = connect_redis(settings, "webhooks")
    pool = WorkerPool([keys.WEBHOOK_QUEUE], connection=conn, num_workers=settings.webhook_concurrency)
    log.info("delivering webhooks from %s with %d workers", keys.WEBHOOK_QUEUE, settings.webhook_concurrency)
    pool.start(logging_level="WARNING")


if __name__ == "__main__":
    main()
