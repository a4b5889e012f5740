from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from ingest_api import docs, jobs, media, submit
from ingest_api.auth import Caller
from ingest_api.changes import TooManyStreams
from ingest_api.schemas import JobPage, JobView, Source, Stats
from ingest_api.services import ServicesDep
from transcribe_common.models import JobStatus

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.get(
    "/jobs",
    response_model=JobPage,
    summary="Your jobs, newest first, a page at a time",
    responses={
        200: docs.ok({"jobs": [docs.JOB_VIEWS["finished"]], "next_cursor": "MTc2NDY4..."}),
        **docs.errors(*docs.AUTH, 503),
    },
)
async def list_jobs(
    services: ServicesDep,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=200, description="Jobs per page.")] = 50,
    cursor: Annotated[str | None, Query(description="The previous page's next_cursor.")] = None,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this state.")] = None,
    since: Annotated[datetime | None, Query(description="Only jobs made at or after this time (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Only jobs made at or before this time (ISO 8601).")] = None,
    db_id: Annotated[str | None, Query(description="Only jobs with this db_id.")] = None,
    model: Annotated[str | None, Query(description="Only jobs for this model.")] = None,
    source: Annotated[Source | None, Query(description="Only uploads, URL jobs or inbox drops.")] = None,
) -> JobPage:
    query = jobs.JobQuery(limit, cursor, status, since, until, db_id, model, source)
    return await run_in_threadpool(jobs.list_jobs, services, query, caller)


@router.get(
    "/jobs/{job_id}",
    response_model=JobView,
    summary="Status and progress of a job",
    responses={200: docs.ok_examples(docs.JOB_VIEWS), **docs.errors(*docs.AUTH, 404, 503)},
)
@router.post(
    "/jobs/{job_id}",
    response_model=JobView,
    summary="Status and progress of a job (the same as GET; kept for callers of the first API)",
    responses={200: docs.ok_examples(docs.JOB_VIEWS), **docs.errors(*docs.AUTH, 404, 503)},
    operation_id="get_job_by_post",
)
async def get_job(job_id: str, services: ServicesDep, caller: Caller) -> JobView:
    return await _visible(job_id, services, caller)


@router.delete(
    "/jobs/{job_id}",
    response_model=JobView,
    summary="Cancel a queued or running job; with delete_objects, delete any job's objects",
    responses={
        200: docs.ok_examples(
            {
                "cancelled": {**docs.JOB_VIEWS["started"], "status": "cancelled", "links": docs.NO_RESULT_LINKS},
                "deleted": docs.JOB_VIEWS["deleted"],
            }
        ),
        **docs.errors(*docs.AUTH, 404, 409, 410, 503),
        422: docs.invalid(docs.NOT_A_BOOLEAN),
    },
)
async def cancel_job(
    job_id: str,
    services: ServicesDep,
    caller: Caller,
    delete_objects: Annotated[
        bool,
        Query(
            description="Delete the job's input, manifest, status and results, cancelling it first if it runs "
            "(allowed in any state); the job then reads 'deleted'."
        ),
    ] = False,
) -> JobView:
    return await run_in_threadpool(jobs.cancel, services, job_id, delete_objects, caller)


@router.get(
    "/jobs/{job_id}/result",
    summary="The transcript of a finished job",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The transcript, in the format asked for (default: the job's first output format)",
            "content": {
                "application/x-subrip": {"example": docs.SRT},
                "text/vtt": {"example": docs.VTT},
                "text/plain": {"example": docs.TXT},
                "text/tab-separated-values": {"example": docs.TSV},
                "application/json": {"example": docs.TRANSCRIPT_JSON},
            },
        },
        **docs.errors(*docs.AUTH, 404, 503),
        409: docs.error(409, example={"detail": f"job {docs.JOB_ID} has no result: it is started"}),
        410: docs.error(410, example={"detail": f"job {docs.JOB_ID} was deleted, and its result with it"}),
        422: docs.invalid(docs.BAD_FORMAT),
    },
)
async def get_result(
    job_id: str,
    services: ServicesDep,
    caller: Caller,
    fmt: Annotated[str | None, Query(alias="format", description="srt, vtt, txt or json")] = None,
) -> StreamingResponse:
    name, content_type, stream = await run_in_threadpool(jobs.result_stream, services, job_id, fmt, caller)
    headers = {"Content-Disposition": disposition(name)}
    return StreamingResponse(stream, media_type=content_type, headers=headers)


async def _visible(job_id: str, services: ServicesDep, caller: Caller) -> JobView:
    """The job as the caller sees it, before a stream starts: a 404 is an answer, not an event."""
    return await run_in_threadpool(jobs.job_view, services, job_id, caller)


async def _stream_slot(request: Request, services: ServicesDep, caller: Caller) -> Callable[[], None]:
    """One of the event streams a caller may hold open (``StreamSlots``); what gives it back, which
    the stream does when it ends (a dependency's own end comes before the stream's)."""
    who = caller.id if caller.owner else f"address:{request.client.host if request.client else '?'}"
    try:
        return services.streams.take(who)
    except TooManyStreams as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc), headers={"Retry-After": "5"}) from exc


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    summary="The job's changes as they happen (Server-Sent Events)",
    description="Each message is `event: job` with the job's status as `data` (as GET /v1/jobs/{id} answers): "
    "the first at once, then one per change (status, progress, warnings, shards); the stream ends after the "
    "message whose status is final. Comment lines keep it alive. A stream with nothing new for "
    "EVENTS_IDLE_SECONDS ends too: reconnect if the job has not ended. Streams are capped per caller and in all "
    "(429).",
    responses={
        **docs.errors(*docs.AUTH, 404, 503),
        429: docs.error(
            429,
            "Too many event streams open: EVENTS_MAX_PER_CALLER for this caller, or EVENTS_MAX_STREAMS in all",
            {"detail": "you have 50 event streams open (EVENTS_MAX_PER_CALLER); close one, or poll"},
        ),
    },
)
async def job_events(
    job_id: str,
    services: ServicesDep,
    caller: Caller,
    first: Annotated[JobView, Depends(_visible)],
    give_back: Annotated[Callable[[], None], Depends(_stream_slot)],
) -> AsyncIterator[ServerSentEvent]:
    view, sent = first, None
    settings = services.settings
    quiet_since = time.monotonic()
    with contextlib.ExitStack() as held, services.changes.follow(job_id) as changed:
        held.callback(give_back)
        changed.set()  # read once more now that changes are heard: one between the first read and now is not lost
        while True:
            if view != sent:
                yield ServerSentEvent(data=view, event="job")
                sent, quiet_since = view, time.monotonic()
            if view.status.is_final or time.monotonic() - quiet_since >= settings.events_idle_seconds:
                return  # ended, or quiet for EVENTS_IDLE_SECONDS: a client that still cares reconnects
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(settings.events_recheck, settings.events_idle_seconds))
            changed.clear()
            view = await run_in_threadpool(jobs.job_view, services, job_id, caller)


RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@router.get(
    "/jobs/{job_id}/input",
    summary="The job's own input (an upload or an inbox drop), to play beside its transcript",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The input's bytes, as uploaded or dropped; a Range header gets 206 and just those bytes.",
            "content": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}, "example": "ID3..."}},
        },
        **docs.errors(*docs.AUTH, 404, 503),
        410: docs.error(410, example={"detail": f"job {docs.JOB_ID} was deleted, and its input with it"}),
    },
)
async def get_input(
    job_id: str,
    services: ServicesDep,
    caller: Caller,
    range_: Annotated[str | None, Header(alias="Range", include_in_schema=False)] = None,
) -> Response:
    info, kind = await run_in_threadpool(jobs.input_object, services, job_id, caller)
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=3600",
        "Vary": "Authorization",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": media.INPUT_POLICY,
        "Content-Disposition": disposition(info.key.rsplit("/", 1)[-1]),
    }
    try:
        span = _span(range_, info.size)
    except ValueError:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{info.size}"})
    if span is None:
        stream = services.store.iter_bytes(info.bucket, info.key)
        return StreamingResponse(stream, media_type=kind, headers={**headers, "Content-Length": str(info.size)})
    start, end = span
    stream = services.store.iter_bytes(info.bucket, info.key, start, end - start + 1)
    headers |= {"Content-Range": f"bytes {start}-{end}/{info.size}", "Content-Length": str(end - start + 1)}
    return StreamingResponse(stream, status_code=206, media_type=kind, headers=headers)


def _span(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte a ``Range: bytes=a-b`` header asks for; None for the whole object
    (no header, or one this route does not serve ranges for, such as several ranges); ValueError
    for a range past the end."""
    match = RANGE.match(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last)) if last else size - 1
    if start >= size:
        raise ValueError(f"bytes {start}-{end} of {size}")
    if start > end:  # last before first: not a valid range (RFC 9110), so the whole object
        return None
    return start, end


@router.get(
    "/models",
    tags=["service"],
    summary="Models that live workers serve now; name one in 'model'",
    responses={200: docs.ok({"models": ["small", "tiny.en"]}), **docs.errors(*docs.AUTH, 503)},
)
async def get_models(services: ServicesDep) -> dict[str, list[str]]:
    return {"models": await run_in_threadpool(submit.served_models, services)}


@router.get(
    "/stats",
    response_model=Stats,
    tags=["service"],
    summary="Jobs by status (a tenant key's own; every job for an admin key), and live workers",
    responses={
        200: docs.ok({"queued": 3, "started": 2, "failed": 1, "finished": 1532, "cancelled": 4, "workers": 2}),
        **docs.errors(*docs.AUTH, 503),
    },
)
async def get_stats(services: ServicesDep, caller: Caller) -> Stats:
    return await run_in_threadpool(jobs.stats, services, caller)


def disposition(name: str) -> str:
    """``inline`` with the file's name: plain ASCII in ``filename``, the name itself in
    ``filename*`` (RFC 6266) when it is not ASCII."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    if plain == name:
        return f'inline; filename="{name}"'
    return f"inline; filename=\"{plain}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
