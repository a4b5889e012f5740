"""``transcribe-router``: run the event router until SIGTERM or Ctrl-C."""

import logging
import signal

from event_router.router import Router
from event_router.settings import RouterSettings
from transcribe_common.runtime import connect_redis, open_store, setup_logging


def main() -> None:
    settings = RouterSettings()
    setup_logging("router", settings.log_level)
    conn = connect_redis(settings)
    router = Router(settings, conn, open_store(settings, conn))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: router.stopping.set())
    logging.getLogger(__name__).info("routing %s into RQ queue %r", "transcribe:events", "transcribe")
    router.run()


if __name__ == "__main__":
    main()
