"""Serving the app with uvicorn, with the deadlines uvicorn does not have.

uvicorn waits for ever for a request's headers: 200 connections that send half a request line
stay open as long as they like. ``HeaderDeadline`` closes a connection whose next request's
headers (the first, or the next on a kept-alive connection) have not all come within
``HEADER_TIMEOUT`` seconds. uvicorn has no public hook for this,
so it subclasses uvicorn's h11 protocol and reads its ``cycle`` (set once a request's headers are
in) and ``transport``; ``tests/ingest_api/test_server.py`` pins that behaviour. The body's own
deadline is the app's (``ingest_api.upload.timed``).

``QuietReads`` keeps uvicorn's access lines of status reads (a job's status, the job list, a job's
event stream, ``/healthz``, ``/readyz``, ``/metrics``) at DEBUG: pages, clients and probes poll
them, and at INFO they buried everything else. Every other request keeps its INFO line.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ingest_api.settings import ApiSettings

# Header deadlines the rest of an answered request's body gets to arrive: 30 s at the default
# HEADER_TIMEOUT, nginx's lingering_time.
DRAIN_WINDOWS = 3


class HeaderDeadline(H11Protocol):
    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._received = 0  # bytes, all told: whether a body still arrives
        self._draining = 0  # deadlines the rest of an answered request's body has had
        super().connection_made(transport)
        self._headers_due: asyncio.TimerHandle | None = None
        self._expect_headers(after=None)

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        super().data_received(data)

    def on_response_complete(self) -> None:
        # The next request on a kept-alive connection gets the same deadline as the first: uvicorn
        # stops its keep-alive timer at the first byte of it, and would then wait for ever.
        done, self._draining = self.cycle, 0
        super().on_response_complete()
        if not self.transport.is_closing():
            self._expect_headers(after=done)

    def _expect_headers(self, after: object) -> None:
        """Close the connection unless a request's headers, after those of ``after`` (the
        request answered last, or None), are all in within ``header_timeout``."""
        if self._headers_due is not None:
            self._headers_due.cancel()
        self._headers_due = self.loop.call_later(self.header_timeout, self._headers_late, after, self._received)

    def _headers_late(self, after: object, received: int) -> None:
        if self.cycle is not after or self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY and self._received > received:
            # Answered before its body was read (a 401, a 413), and the rest of that body is still
            # coming: it comes first, as uvicorn reads it, for DRAIN_WINDOWS deadlines at most (a
            # client that drips a body nobody will read is not waited for). One that stopped is closed.
            self._draining += 1
            if self._draining < DRAIN_WINDOWS:
                self._expect_headers(after)
                return
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
        super().connection_lost(exc)


# GET (and the brief's POST) of a job's status; GET of the job list and of a job's events; probes.
READS = {"GET", "HEAD"}
STATUS_READS = [
    (READS, re.compile(r"/v1/jobs(/[^/]+(/events)?)?/?")),
    ({"POST"}, re.compile(r"/v1/jobs/[^/]+")),
    (READS, re.compile(r"/(healthz|readyz|metrics)")),
]


def is_status_read(method: str, path: str) -> bool:
    path = path.split("?", 1)[0]
    return any(method in methods and pattern.fullmatch(path) for methods, pattern in STATUS_READS)


class QuietReads(logging.Filter):
    """On ``uvicorn.access``: a status read's line becomes a DEBUG line, kept only where the logger
    is enabled for DEBUG (``LOG_LEVEL=DEBUG``). A status read that failed (5xx) keeps its INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 5):  # '%s - "%s %s HTTP/%s" %d'
            return True
        _, method, path, _, status = args
        if not is_status_read(str(method), str(path)) or int(str(status)) >= 500:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def serve(app: Any, settings: ApiSettings) -> None:
    """Until SIGTERM or SIGINT, which uvicorn takes in the main thread."""
    server(app, settings).run()


def server(app: Any, settings: ApiSettings) -> uvicorn.Server:
    """The API's uvicorn server; ``run`` serves it, on any thread, until ``should_exit`` is set
    (uvicorn takes the signals only in the main thread)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, QuietReads) for existing in access.filters):
        access.addFilter(QuietReads())
    protocol = type("Protocol", (HeaderDeadline,), {"header_timeout": settings.header_timeout})
    # On SIGTERM, requests get SHUTDOWN_GRACE to finish; an event stream of a job that is still
    # queued would hold the process for ever, so what is left then is closed (clients poll or
    # reconnect).
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        http=protocol,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        # uvicorn believes X-Forwarded-For from loopback by default: anyone on this machine could
        # then say which address a request came from (and steer AUTH_FAILURES_MAX onto another's).
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
    )
    return uvicorn.Server(config)


SHUTDOWN_GRACE = 10  # seconds; infra/k8s's API pods have 30 (Kubernetes' default)
