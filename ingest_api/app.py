"""The FastAPI application: routers, and the one place errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.requests import ClientDisconnect

from ingest_api import docs, invalid
from ingest_api.auth import authorize
from ingest_api.headers import SecurityHeaders
from ingest_api.idempotency import InProgress
from ingest_api.jobs import Conflict, Gone
from ingest_api.routes import jobs, openai, page, service, transcribe
from ingest_api.services import Services
from ingest_api.settings import ApiSettings
from ingest_api.submit import TooManyQueued
from ingest_api.upload import BodyTimeout, TooLarge
from transcribe_common.errors import (
    InvalidInput,
    NotFound,
    PipelineError,
    RetryableError,
    StateUnavailable,
    public_message,
)

log = logging.getLogger(__name__)

TAGS = [
    {"name": "jobs", "description": "Submit jobs, follow them, fetch their results, cancel them."},
    {"name": "openai", "description": "OpenAI's transcription and translation routes, for clients written for them."},
    {"name": "service", "description": "Models, counts, liveness, readiness and Prometheus metrics."},
]

STATUS_OF: list[tuple[type[Exception], int]] = [
    (TooLarge, 413),
    (BodyTimeout, 408),
    (TooManyQueued, 429),
    (NotFound, 404),
    (Conflict, 409),
    (InProgress, 409),
    (Gone, 410),
    (InvalidInput, 422),
    (RetryableError, 503),
    (redis.RedisError, 503),
]


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = app.state.services = Services.open(settings)
        services.changes.start()
        yield
        services.changes.stop()
        services.redis.close()

    # /docs from the files fastapi-offline ships (Swagger UI and a favicon), served under
    # /static-offline-docs: the page loads nothing from another host, so it works offline. Swagger
    # UI's validator badge would ask validator.swagger.io about the document: off. No /redoc: ReDoc's
    # sidebar loads its logo from its CDN, and it has no setting to stop that.
    app = FastAPIOffline(
        title="Transcription service",
        version="0.1.0",
        summary="Submit audio or video by URL or upload; poll the job or await its signed webhook.",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},
        redoc_url=None,
    )
    # Every /v1 route needs an API key when keys are set; health and metrics stay open.
    app.include_router(transcribe.router, dependencies=[Depends(authorize)])
    app.include_router(jobs.router, dependencies=[Depends(authorize)])
    app.include_router(openai.router)  # its own key check, with OpenAI's error shape
    app.include_router(service.router)
    app.include_router(page.router)
    app.mount("/static", page.static_files, name="static")
    app.add_middleware(service.Measure)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(ClientDisconnect, _gone)
    app.add_exception_handler(PipelineError, _error_response)
    app.add_exception_handler(redis.RedisError, _error_response)
    app.add_exception_handler(openai.OpenAIError, openai.error_response)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes, tags=TAGS)
        app.openapi_schema = docs.event_streams_as_openapi_31(docs.without_impossible_422(schema))
    return app.openapi_schema


async def _error_response(request: Request, exc: Exception) -> JSONResponse:
    code = next((status for kind, status in STATUS_OF if isinstance(exc, kind)), 500)
    if code >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyQueued) else None
    detail = public_message(exc) if code < 500 else _unavailable(exc)
    body = {"detail": detail}
    if code < 500 and (field := invalid.field_named(detail)) is not None:
        body["field"] = field
    return JSONResponse(body, status_code=code, headers=headers)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """A bad field: one sentence naming it (``ingest_api.invalid``), not pydantic's list."""
    assert isinstance(exc, RequestValidationError)
    if request.url.path.startswith(openai.PREFIX):
        return await openai.error_response(request, openai.invalid(exc))
    return JSONResponse(invalid.body(exc.errors()), status_code=422)


async def _gone(request: Request, exc: Exception) -> JSONResponse:
    """The client closed its connection before its body was in: nobody reads this answer, and it
    is no server error (uvicorn logged it as one, with a traceback)."""
    log.info("%s %s: the client went away before its body was in", request.method, request.url.path)
    return JSONResponse({"detail": "the client went away before its body was in"}, status_code=400)


def _unavailable(exc: Exception) -> str:
    """What a caller reads of a 5xx: which kind of service failed, not its address or its bucket
    (the log has the whole error)."""
    if isinstance(exc, redis.RedisError | StateUnavailable):
        return "a backing service (Redis) is unavailable; try again shortly"
    if isinstance(exc, RetryableError):
        return "a service this request needs did not answer; try again shortly"
    return "internal error; the server's log says more"
