"""Serving the app with uvicorn, with the deadlines uvicorn does not have.

uvicorn waits for ever for a request's headers: 200 connections that send half a request line
stay open as long as they like. ``HeaderDeadline`` closes a connection whose first request's
headers have not all come within ``HEADER_TIMEOUT`` seconds. uvicorn has no public hook for this,
so it subclasses uvicorn's h11 protocol and reads its ``cycle`` (set once a request's headers are
in) and ``transport``; ``tests/ingest_api/test_server.py`` pins that behaviour. The body's own
deadline is the app's (``ingest_api.upload.timed``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ingest_api.settings import ApiSettings


class HeaderDeadline(H11Protocol):
    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_due = self.loop.call_later(self.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_due.cancel()
        super().connection_lost(exc)


def serve(app: Any, settings: ApiSettings) -> None:
    protocol = type("Protocol", (HeaderDeadline,), {"header_timeout": settings.header_timeout})
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_config=None, http=protocol)
