"""The service's own endpoints, open without an API key: liveness, readiness and Prometheus metrics.

- ``GET /healthz``: the process answers (liveness; restart it if not).
- ``GET /readyz``: Redis answers a PING and the object store a HEAD; 503 naming what failed
  otherwise (readiness; send it no traffic until it passes).
- ``GET /metrics``: ``transcribe_api_requests_total{method,route,status}`` and
  ``transcribe_api_request_seconds{method,route}``, labelled by route template, not by URL, and
  by method, HTTP's own or ``other``: no request can add a series.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest_api import docs
from ingest_api.services import ServicesDep
from transcribe_common.ops import readiness, redis_and_store

router = APIRouter(tags=["service"])

REQUESTS = Counter("transcribe_api_requests_total", "HTTP requests answered.", ["method", "route", "status"])
LATENCY = Histogram(
    "transcribe_api_request_seconds",
    "Time to answer an HTTP request (an upload's includes storing it).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


@router.get("/healthz", summary="Liveness", responses={200: docs.ok({"status": "ok"})})
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis and the object store answer",
    responses={
        200: docs.ok({"status": "ready", "checks": {"redis": "ok", "store": "ok"}}),
        503: {
            "description": "Not ready: checks names what does not answer",
            "content": {
                "application/json": {
                    "example": {
                        "status": "not ready",
                        "checks": {"redis": "unavailable: Error 111 connecting to redis:6379.", "store": "ok"},
                    }
                }
            },
        },
    },
)
async def readyz(services: ServicesDep) -> JSONResponse:
    probes = redis_and_store(services.redis, services.store, services.settings.minio_bucket)
    ready, body = await run_in_threadpool(readiness, probes)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: docs.ok(docs.METRICS, media_type="text/plain; version=0.0.4")},
)
async def metrics() -> Response:
    # Built on a worker thread: however large the page, requests go on being answered meanwhile.
    return Response(await run_in_threadpool(generate_latest), media_type=CONTENT_TYPE_LATEST)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """A request's method as a label: one of HTTP's own, or ``other``. Made-up methods as labels
    grew the page by one series each (20,000 of them: 30 MB, 8 s a scrape)."""
    return method if method in METHODS else "other"


class Measure:
    """Pure ASGI middleware: count and time every request by its route template
    (``/v1/jobs/{job_id}``). Not Starlette's BaseHTTPMiddleware, which costs a task per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # the template: never the raw path
            method = method_label(scope["method"])
            LATENCY.labels(method, route).observe(time.perf_counter() - started)
            REQUESTS.labels(method, route, str(status)).inc()
