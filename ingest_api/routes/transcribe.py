from __future__ import annotations

import contextlib
import json
import math
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ingest_api import docs, idempotency, submit
from ingest_api.auth import Caller, Identity
from ingest_api.jobs import read_status
from ingest_api.schemas import JobAccepted, TranscribeRequest, links
from ingest_api.services import Services, ServicesDep
from ingest_api.upload import TooLarge, timed
from transcribe_common import layout
from transcribe_common.errors import InvalidInput
from transcribe_common.models import JobStatus

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
    responses={
        202: docs.ok(
            {"job_id": docs.JOB_ID, "status": "queued", "links": docs.LINKS},
            description="Accepted: the job is stored and will be queued; poll links.self or await the webhook",
        ),
        **docs.errors(*docs.AUTH, 413, 429, 503),
        422: docs.invalid(
            (
                "unknown language",
                {
                    "detail": "language: unknown language code 'xx'; use an ISO 639-1 code such as 'en', or omit it",
                    "field": "language",
                },
            ),
            (
                "private source URL",
                {
                    "detail": "url: the URL's host 10.0.0.5 is a private address; such addresses are refused "
                    "unless URL_ALLOWLIST names them"
                },
            ),
            (
                "wrong content type",
                {"detail": "send application/json (source_type=url) or multipart/form-data (source_type=upload)"},
            ),
            ("model not served", {"detail": "no live worker serves model 'large-v3'; served now: small"}),
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": TranscribeRequest.model_json_schema(),
                    "examples": {
                        "url": {
                            "summary": "A URL, with a webhook",
                            "value": {
                                "source_type": "url",
                                "url": "https://media.example.com/talks/keynote.mp3",
                                "language": "en",
                                "output": ["srt", "vtt"],
                                "callback_url": "https://hooks.example.com/transcripts",
                                "db_id": "talk-42",
                            },
                        }
                    },
                },
                "multipart/form-data": {
                    "schema": _UPLOAD_FORM,
                    "examples": {
                        "upload": {
                            "summary": "An upload (curl -F file=@keynote.mp3 -F source_type=upload -F output=srt)",
                            "value": {"source_type": "upload", "file": "<the file's bytes>", "output": "srt"},
                        }
                    },
                },
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
        body = await _json_body(request, services.settings.body_timeout)
    elif not content_type.startswith("multipart/form-data"):
        raise InvalidInput("send application/json (source_type=url) or multipart/form-data (source_type=upload)")
    claimed = fingerprint = None
    if idempotency_key is not None:  # only then is a JSON body's fingerprint needed
        fingerprint = idempotency.fingerprint(body.model_dump_json().encode()) if body else None
        claimed = await _claim(services, request, caller.id, idempotency_key, fingerprint)
        if claimed.replayed:  # the job as it is now, not as it was when first accepted
            response.headers["Idempotent-Replayed"] = "true"
            record = await run_in_threadpool(read_status, services, claimed.job_id, caller)
            return _accepted(response, claimed.job_id, record.status)
    job_id = claimed.job_id if claimed else layout.new_job_id()
    async with idempotency.kept_alive(services.redis, claimed) if claimed else contextlib.nullcontext():
        await _accept(services, request, caller, job_id, body, claimed, fingerprint)
    return _accepted(response, job_id)


async def _accept(
    services: Services,
    request: Request,
    caller: Identity,
    job_id: str,
    body: TranscribeRequest | None,
    claimed: idempotency.Claim | None,
    fingerprint: str | None,
) -> None:
    """Store the job: its upload if any, then its manifest. A failure before the manifest is
    written releases the claim; one while it is written leaves it to a repeat (the write may have
    landed: the repeat reads the manifest first)."""
    try:
        await run_in_threadpool(submit.check_quota, services, caller.owner)
        if body is not None:
            manifest, received = await run_in_threadpool(submit.url_job, services, job_id, body), fingerprint
        else:
            manifest, received = await submit.accept_upload(services, request, job_id)
        manifest.owner = caller.owner
        if claimed is not None:
            manifest.request_fingerprint = received
            await run_in_threadpool(idempotency.confirm, services.redis, claimed)
    except BaseException:
        if claimed is not None:
            await run_in_threadpool(idempotency.release, services.redis, claimed)
        raise
    await run_in_threadpool(submit.write_manifest, services, manifest)
    if claimed is not None and body is None and received is not None:
        await run_in_threadpool(idempotency.settle, services.redis, claimed, received)


async def _claim(
    services: Services, request: Request, caller: str, key: str, fingerprint: str | None
) -> idempotency.Claim:
    """This request's claim of ``key``, or the first request's (``replayed``) once its job exists
    and this body is the same; a claim whose request ended without a job is taken over."""
    ttl = services.settings.idempotency_ttl
    claimed = await run_in_threadpool(idempotency.claim, services.redis, caller, key, fingerprint, ttl)
    if not claimed.replayed:
        return claimed
    if claimed.fingerprint is not None and fingerprint is not None:
        idempotency.check(claimed.fingerprint, fingerprint)  # a JSON body differs: 422 before any read
    first = await run_in_threadpool(services.manifests.get, claimed.job_id)
    if first is None and await run_in_threadpool(services.states.read, claimed.job_id) is None:
        # No job: its request is still at it (409), or ended without one.
        return await run_in_threadpool(idempotency.take_over, services.redis, claimed, caller, key, fingerprint, ttl)
    # An upload is the first one again only if its bytes say so: read them, store nothing.
    this = fingerprint if fingerprint is not None else await submit.upload_fingerprint(services, request)
    idempotency.check((first and first.request_fingerprint) or claimed.fingerprint, this)
    return claimed


def _accepted(response: Response, job_id: str, status: JobStatus = JobStatus.QUEUED) -> JobAccepted:
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return JobAccepted(job_id=job_id, status=status, links=links(job_id))


def _not_a_number(constant: str) -> float:
    """NaN and Infinity are Python's, not JSON's: refused (echoed back in a 422, they made it a 500)."""
    raise ValueError(f"{constant} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999
        raise ValueError(f"{text} is too large for a number here")
    return number


async def _json_body(request: Request, timeout: float) -> TranscribeRequest:
    raw = b""
    async for chunk in timed(request.stream(), timeout):
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise TooLarge(f"the JSON body is larger than {MAX_JSON_BYTES} bytes")
    try:
        data = json.loads(raw, parse_constant=_not_a_number, parse_float=_finite)
    except RecursionError as exc:
        raise InvalidInput("the body is not valid JSON here: it is nested too deeply") from exc
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:  # an escape "\ud800" alone: text no UTF-8 holds (the 422's echo was a 500)
        raise InvalidInput("the body holds a \\u escape of half a surrogate pair, which is no character") from exc
    try:
        return TranscribeRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc
