"""``transcribe-router``: run the event router until SIGTERM or Ctrl-C."""

import contextlib
import logging
import threading

from event_router.ingress import create_ingress, serve_in_background
from event_router.router import GAUGES, Router
from event_router.settings import RouterSettings
from transcribe_common import deadletters, keys
from transcribe_common.logs import setup_logging
from transcribe_common.ops import redis_and_store, register_redis_gauges, serve_ops
from transcribe_common.runtime import command_line, connect_redis, open_store, stop_on_signals


def main() -> None:
    command_line("transcribe-router", __doc__)
    settings = RouterSettings()
    setup_logging("router", settings.log_level, settings.log_format)
    serve(settings, stop_on_signals())


def serve(settings: RouterSettings, stopping: threading.Event) -> int:
    """Route until ``stopping`` is set (the signals of this process, or of the embedded stack's
    process of light services, ``embedded.light``)."""
    conn = connect_redis(settings, "router")
    router = Router(settings, conn, open_store(settings, conn))
    router.stopping = stopping
    log = logging.getLogger(__name__)
    with contextlib.ExitStack() as serving:
        if settings.ingress_port:
            app = create_ingress(conn, settings.ingress_secret)
            serving.enter_context(serve_in_background(app, settings.ingress_host, settings.ingress_port))
            log.info("webhook ingress on %s:%d", settings.ingress_host, settings.ingress_port)
        register_redis_gauges(conn, GAUGES)
        probes = redis_and_store(conn, router.store, settings.minio_bucket)
        details = lambda: deadletters.summary(conn)  # noqa: E731
        serve_ops("router", settings.metrics_host, settings.router_metrics_port, router.heartbeat, probes, details)
        log.info("routing %s into RQ queue %r", keys.EVENTS, keys.QUEUE)
        router.run()
    return 0


if __name__ == "__main__":
    main()
