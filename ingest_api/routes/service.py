"""The service's own endpoints, open without an API key: liveness, readiness and Prometheus metrics.

- ``GET /healthz``: the process answers (liveness; restart it if not).
- ``GET /readyz``: Redis answers a PING and the object store a HEAD; 503 naming what failed
  otherwise (readiness; send it no traffic until it passes).
- ``GET /metrics``: ``transcribe_api_requests_total{method,route,status}`` and
  ``transcribe_api_request_seconds{method,route}``, labelled by route template, not by URL.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import redis
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from ingest_api.services import ServicesDep
from transcribe_common.errors import PipelineError

router = APIRouter(tags=["service"])

REQUESTS = Counter("transcribe_api_requests_total", "HTTP requests answered.", ["method", "route", "status"])
LATENCY = Histogram(
    "transcribe_api_request_seconds",
    "Time to answer an HTTP request (an upload's includes storing it).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PROBE_KEY = ".readyz"  # a key no job uses: a HEAD for it tells whether the store answers


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Redis and the object store answer")
async def readyz(services: ServicesDep) -> JSONResponse:
    checks = {
        "redis": await run_in_threadpool(_check, services.redis.ping),
        "store": await run_in_threadpool(
            _check, lambda: services.store.stat(services.settings.minio_bucket, PROBE_KEY)
        ),
    }
    ready = all(result == "ok" for result in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except (redis.RedisError, PipelineError, OSError) as exc:
        return f"unavailable: {exc}"
    return "ok"


async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Middleware: count and time every request by its route template (``/v1/jobs/{job_id}``)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, route, str(status)).inc()
