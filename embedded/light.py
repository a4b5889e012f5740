"""``python -m embedded.light SERVICE ...``: the embedded stack's services that hold no model, on
threads of one process.

The watcher, the router, the webhook sender, the janitor and the API wait on Redis, the store and
the network: as processes of their own they cost a Python interpreter and its libraries each (about
50 MiB of PSS apiece, ``bench/footprint.py``). Here they share one, each on a thread of its own,
with its own settings, Redis connections, operations port (``/metrics`` there shows the whole
process) and log lines under its own name. Production runs them apart by their own entry points
(``transcribe-router``, ``transcribe-api``, ...), which call the same ``serve``; so does the
embedded stack with ``SERVICES_APART=true``.

A service whose ``serve`` returns or raises while the others run is started again on its thread,
after ``RESTART_DELAY`` (doubled while it keeps dying young), as the supervisor would a process of
its own: the others, the API above all, run on. ``serve`` gives back what it holds for the next
one (its operations port and gauges: ``transcribe_common.ops``). The first SIGTERM or SIGINT stops
them all (the webhook sender lets the attempts it runs end, the API the requests in flight); a
second exits at once. One still running ``STOP_WAIT`` seconds after is left behind: the process
exits 1, with where each of its threads waits in the log (so does ``kill -USR1`` at any time).
The supervisor starts the whole process again only if it dies.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import embedded.watcher
import event_router.__main__
import ingest_api.__main__
import janitor.__main__
import webhook_sender.__main__
from embedded.restarts import Backoff
from event_router.settings import RouterSettings
from ingest_api.settings import ApiSettings
from janitor.settings import JanitorSettings
from transcribe_common.logs import set_service, setup_logging
from transcribe_common.runtime import command_line, stop_on_signals
from transcribe_common.settings import CommonSettings
from webhook_sender.settings import WebhookSettings

log = logging.getLogger("embedded.light")

# Seconds the services get to stop once asked: the webhook sender's attempts end within
# WEBHOOK_DEADLINE (30 s by default), the API's requests within its grace (10 s).
STOP_WAIT = 60.0


@dataclass(frozen=True)
class Light:
    name: str  # in its log lines, as when it runs alone
    settings: Callable[[], CommonSettings]
    serve: Callable[..., int]  # (its settings, the stop event) -> exit code


SERVICES = {  # by the module that runs it alone (``python -m event_router``)
    "embedded.watcher": Light("watcher", embedded.watcher.WatcherSettings, embedded.watcher.serve),
    "event_router": Light("router", RouterSettings, event_router.__main__.serve),
    "webhook_sender": Light("webhooks", WebhookSettings, webhook_sender.__main__.serve),
    "janitor": Light("janitor", JanitorSettings, janitor.__main__.serve_every),
    "ingest_api": Light("api", ApiSettings, ingest_api.__main__.serve_until),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("services", nargs="+", choices=list(SERVICES), help="the modules of the services to run")
    parser.add_argument("--restart-delay", type=float, default=1.0, help="RESTART_DELAY: see embedded.restarts")
    args = command_line("transcribe-light", __doc__, parser)
    chosen = {module: SERVICES[module] for module in dict.fromkeys(args.services)}
    settings = {module: light.settings() for module, light in chosen.items()}  # a bad setting stops us here
    first = next(iter(settings.values()))
    setup_logging("light", first.log_level, first.log_format)
    # The webhook sender's attempts may take WEBHOOK_DEADLINE to end: wait that long for it at least.
    deadlines = [s.webhook_deadline + 10 for s in settings.values() if isinstance(s, WebhookSettings)]
    stopping = stop_on_signals(second="exiting now")
    code = run(chosen, settings, stopping, args.restart_delay, max([STOP_WAIT, *deadlines]))
    # The services have stopped: end here, without waiting on threads their libraries may keep. A
    # service left running may hold a handler's lock: then not even the logs are waited for.
    if code == 0:
        logging.shutdown()
    os._exit(code)


def run(
    chosen: dict[str, Light],
    settings: dict[str, CommonSettings],
    stopping: threading.Event,
    delay: float,
    stop_wait: float = STOP_WAIT,
) -> int:
    """Each service on a thread of its own until ``stopping`` is set; one that stops before is
    started again on its thread, after ``delay`` (doubled while it keeps dying young). Then each
    gets ``stop_wait`` seconds to stop: 0 if all did, else 1, with where each thread waits in the
    log (a service that does not stop must not hold the others' process for ever)."""
    threads = [
        threading.Thread(
            target=_serve, args=(light, settings[module], stopping, Backoff(delay)), name=light.name, daemon=True
        )
        for module, light in chosen.items()
    ]
    for thread in threads:
        thread.start()
    stopping.wait()
    until = time.monotonic() + stop_wait
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))
    if running := [thread.name for thread in threads if thread.is_alive()]:
        faulthandler.dump_traceback(all_threads=True)  # first: it takes no lock a stuck thread may hold
        log.error("%s did not stop within %g s; exiting without them (where every thread waited: above)",
                  ", ".join(running), stop_wait)  # fmt: skip
        return 1
    return 0


def _serve(light: Light, settings: CommonSettings, stopping: threading.Event, backoff: Backoff) -> None:
    set_service(light.name)
    while not stopping.is_set():
        started = time.monotonic()
        code = 1
        try:
            code = light.serve(settings, stopping)
        except (Exception, SystemExit):  # uvicorn ends a server that cannot start with SystemExit
            log.exception("%s failed", light.name)
        if stopping.is_set():
            return
        lived = time.monotonic() - started
        wait = backoff.after(code, lived)
        log.error("%s stopped (exit code %d) after %.0f s; starting it again in %g s", light.name, code, lived, wait)
        stopping.wait(wait)


if __name__ == "__main__":
    main()
