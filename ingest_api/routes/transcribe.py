from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ingest_api import idempotency, submit
from ingest_api.auth import Caller
from ingest_api.schemas import JobAccepted, TranscribeRequest, links
from ingest_api.services import ServicesDep
from ingest_api.upload import TooLarge
from transcribe_common import layout
from transcribe_common.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["jobs"])

MAX_JSON_BYTES = 64 * 1024

_UPLOAD_FORM = {
    "type": "object",
    "required": ["source_type", "file"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        **{
            name: {"type": "string", "description": field.description or ""}
            for name, field in TranscribeRequest.model_fields.items()
            if name != "url"
        },
    },
}


@router.post(
    "/transcribe",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    summary="Submit a job: JSON for a URL source, multipart/form-data for an upload",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": TranscribeRequest.model_json_schema()},
                "multipart/form-data": {"schema": _UPLOAD_FORM},
            },
        }
    },
)
async def transcribe(
    request: Request,
    response: Response,
    services: ServicesDep,
    caller: Caller,
    idempotency_key: Annotated[
        str | None,
        Header(description="Repeat a request with the same key to get the same job back, not a second one."),
    ] = None,
) -> JobAccepted:
    content_type = request.headers.get("content-type", "")
    body: TranscribeRequest | None = None
    if content_type.startswith("application/json"):
        body = await _json_body(request)
    elif not content_type.startswith("multipart/form-data"):
        raise InvalidInput("send application/json (source_type=url) or multipart/form-data (source_type=upload)")
    claimed = None
    if idempotency_key is not None:
        fingerprint = idempotency.fingerprint(body.model_dump_json().encode()) if body else None
        ttl = services.settings.idempotency_ttl
        claimed = await run_in_threadpool(idempotency.claim, services.redis, caller, idempotency_key, fingerprint, ttl)
        if claimed.replayed:
            response.headers["Idempotent-Replayed"] = "true"
            return _accepted(response, claimed.job_id)
    job_id = claimed.job_id if claimed else layout.new_job_id()
    try:
        if body is not None:
            manifest = submit.url_manifest(job_id, body)
            await run_in_threadpool(submit.check_request, services, body)
        else:
            manifest = await submit.accept_upload(services, request, job_id)
        await run_in_threadpool(submit.write_manifest, services, manifest)
    except BaseException:
        if claimed is not None:
            await run_in_threadpool(idempotency.release, services.redis, claimed)
        raise
    return _accepted(response, job_id)


def _accepted(response: Response, job_id: str) -> JobAccepted:
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return JobAccepted(job_id=job_id, links=links(job_id))


async def _json_body(request: Request) -> TranscribeRequest:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise TooLarge(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    try:
        return TranscribeRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc
