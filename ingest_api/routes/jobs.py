from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ingest_api import docs, jobs, submit
from ingest_api.auth import Caller
from ingest_api.schemas import JobView, Stats
from ingest_api.services import ServicesDep

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.get(
    "/jobs/{job_id}",
    response_model=JobView,
    summary="Status and progress of a job",
    responses={200: docs.ok_examples(docs.JOB_VIEWS), **docs.errors(*docs.AUTH, 404, 503)},
)
@router.post("/jobs/{job_id}", response_model=JobView, include_in_schema=False)
async def get_job(job_id: str, services: ServicesDep, caller: Caller) -> JobView:
    return await run_in_threadpool(jobs.job_view, services, job_id, caller)


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
    headers = {"Content-Disposition": f'inline; filename="{name}"'}
    return StreamingResponse(stream, media_type=content_type, headers=headers)


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
    summary="Jobs by status, and live workers",
    responses={
        200: docs.ok({"queued": 3, "started": 2, "failed": 1, "finished": 1532, "cancelled": 4, "workers": 2}),
        **docs.errors(*docs.AUTH, 503),
    },
)
async def get_stats(services: ServicesDep) -> Stats:
    return await run_in_threadpool(jobs.stats, services)
