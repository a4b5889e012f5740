"""What operators ask every service: is it alive, is it ready, what has it done.

The API answers on its own port (``ingest_api.routes.service``). The router, worker, webhook
sender and janitor each serve the same three paths on a small HTTP port of their own
(``<SERVICE>_METRICS_PORT`` on ``METRICS_HOST``):

- ``GET /healthz``: liveness. 200 while the service's loop is turning; 503 with a ``reason`` when it
  is stuck or has stopped, so that the supervisor restarts it.
- ``GET /readyz``: readiness. 200 when what the service needs answers (Redis, the store, its
  models), 503 with ``checks`` naming what does not.
- ``GET /metrics``: Prometheus, ``transcribe_<service>_*``.

The answers have the same shape as the API's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from transcribe_common import jobqueue
from transcribe_common.recovery import transcription_queues
from transcribe_common.store.base import ObjectStore

log = logging.getLogger(__name__)

Probe = Callable[[], object]  # raises when what it checks does not answer
Liveness = Callable[[], str | None]  # why the service is not alive, or None
Details = Callable[[], dict[str, object]]  # what /healthz tells an operator besides
READY, NOT_READY = "ready", "not ready"


# Each background service's operations port by default; ``<SERVICE>_METRICS_PORT`` sets it.
OPS_PORTS = {"ROUTER": 9101, "WORKER": 9102, "JANITOR": 9103, "WEBHOOK": 9104}

PROBE_KEY = ".readyz"  # a key no job uses: a HEAD for it tells whether the store answers


def redis_and_store(conn: redis.Redis, store: ObjectStore, bucket: str) -> dict[str, Probe]:
    """The readiness probes of a service that needs Redis and the jobs bucket."""
    return {"redis": conn.ping, "store": lambda: store.stat(bucket, PROBE_KEY)}


class Heartbeat:
    """Liveness of a service's main loop: the loop beats on every turn (waits included); it is
    dead when it has not beaten for ``stuck_after`` seconds."""

    def __init__(self, stuck_after: float) -> None:
        self.stuck_after = stuck_after
        self.last = time.monotonic()
        self.stopped: str | None = None

    def beat(self) -> None:
        self.last = time.monotonic()

    def stop(self, reason: str) -> None:
        self.stopped = reason

    def __call__(self) -> str | None:
        if self.stopped is not None:
            return self.stopped
        quiet = time.monotonic() - self.last
        return f"the main loop has not turned for {quiet:.0f} s" if quiet > self.stuck_after else None


def check(probe: Probe) -> str:
    """``ok``, or what went wrong, for one readiness check: whatever it raises means not ready."""
    try:
        probe()
    except Exception as exc:
        return f"unavailable: {exc}"
    return "ok"


def readiness(probes: dict[str, Probe]) -> tuple[bool, dict[str, object]]:
    """Every probe run; ready when all answer. The body the API's ``/readyz`` gives too."""
    checks = {name: check(probe) for name, probe in probes.items()}
    ready = all(result == "ok" for result in checks.values())
    return ready, {"status": READY if ready else NOT_READY, "checks": checks}


class OpsApp:
    """The WSGI app of a service's operations port."""

    def __init__(self, live: Liveness, probes: dict[str, Probe], details: Details | None = None) -> None:
        self.live, self.probes, self.details = live, probes, details
        self.metrics = make_wsgi_app()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self.metrics(environ, start_response)
        if path == "/healthz":
            reason = self.live()
            body: dict[str, object] = {"status": "ok"} if reason is None else {"status": "unhealthy", "reason": reason}
            body |= _details(self.details)
            return _json(start_response, 200 if reason is None else 503, body)
        if path == "/readyz":
            ready, body = readiness(self.probes)
            return _json(start_response, 200 if ready else 503, body)
        return _json(start_response, 404, {"detail": "not found; try /healthz, /readyz or /metrics"})


def _details(details: Details | None) -> dict[str, object]:
    """What a service adds to its ``/healthz`` for an operator (the router's dead letters); never
    a reason to restart it, and left out while Redis does not answer."""
    if details is None:
        return {}
    try:
        return details()
    except redis.RedisError:
        return {}


def _json(start_response: Callable, code: int, body: dict[str, object]) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
    start_response(f"{code} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds are not worth a log line each."""


def serve_ops(
    service: str, host: str, port: int, live: Liveness, probes: dict[str, Probe], details: Details | None = None
) -> WSGIServer | None:
    """Serve the operations port in a daemon thread. Port 0 serves none; a port that cannot be
    bound is logged, and the service runs on without it: doing its work matters more."""
    if not port:
        return None
    if (earlier := _SERVING.pop((host, port), None)) is not None:
        # The same service started again in this process (``embedded.light`` restarts one that
        # stopped): the port answers for the new one, not for the one that stopped.
        earlier.shutdown()
        earlier.server_close()
    try:
        server = make_server(
            host, port, OpsApp(live, probes, details), server_class=_Server, handler_class=_QuietHandler
        )
    except OSError as exc:
        log.error("%s: port %s:%d unavailable (%s); running without /metrics and health", service, host, port, exc)
        return None
    threading.Thread(target=server.serve_forever, name=f"{service}-ops", daemon=True).start()
    _SERVING[(host, port)] = server
    log.info("%s: /metrics, /healthz and /readyz on http://%s:%d", service, host, port)
    return server


_SERVING: dict[tuple[str, int], WSGIServer] = {}  # this process's operations ports, by address


@dataclass(frozen=True)
class RedisGauge:
    """One gauge read from Redis at scrape time: a number, or numbers by the value of ``label``."""

    name: str
    documentation: str
    read: Callable[[redis.Redis], float | dict[str, float]]
    label: str | None = None
    counter: bool = False  # a count kept in Redis that only grows: exported as ``<name>_total``


class RedisGauges(Collector):
    """Gauges read from Redis when Prometheus scrapes (list and registry lengths), so that every
    replica reports the shared truth and nothing has to be kept up to date between scrapes. A
    Redis that does not answer gives no samples rather than a failed scrape."""

    def __init__(self, conn: redis.Redis, gauges: list[RedisGauge]) -> None:
        self.conn, self.gauges = conn, gauges

    def collect(self) -> Iterator[Metric]:
        for gauge in self.gauges:
            try:
                value = gauge.read(self.conn)
            except redis.RedisError:
                continue
            kind = CounterMetricFamily if gauge.counter else GaugeMetricFamily
            values = value if isinstance(value, dict) else {"": value}
            family = kind(gauge.name, gauge.documentation, labels=[gauge.label] if gauge.label else [])
            for label, number in sorted(values.items()):
                family.add_metric([label] if gauge.label else [], number)
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing read at registration: Redis may not be up yet


def register_redis_gauges(conn: redis.Redis, gauges: list[RedisGauge]) -> None:
    """Export ``gauges``, read through ``conn``; registered again (a service started again in this
    process), they are read through the new connection only."""
    names = tuple(gauge.name for gauge in gauges)
    if (earlier := _REGISTERED.pop(names, None)) is not None:
        REGISTRY.unregister(earlier)
    _REGISTERED[names] = RedisGauges(conn, gauges)
    REGISTRY.register(_REGISTERED[names])


_REGISTERED: dict[tuple[str, ...], RedisGauges] = {}


def queue_lengths(conn: redis.Redis) -> dict[str, float]:
    """Jobs waiting in each transcription queue (the one to scale GPU workers on)."""
    return {name: float(jobqueue.queue_length(conn, name)) for name in transcription_queues(conn)}
