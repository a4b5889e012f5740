"""Accepting jobs: the input object (for uploads) and then the manifest, whose creation event
starts the job."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import mutagen
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ingest_api.schemas import TranscribeRequest
from ingest_api.services import Services
from ingest_api.upload import MultipartReader, TooLarge, boundary_of, drain_upload, receive_upload, timed
from transcribe_common import fleet, layout
from transcribe_common.errors import InvalidInput
from transcribe_common.models import JobOptions, Manifest, ObjectSource, UrlSource
from transcribe_common.store.base import ObjectWriter, put_model

log = logging.getLogger(__name__)

# Bytes a multipart body carries beyond the file itself (boundaries, headers, small fields).
MULTIPART_OVERHEAD = 1024 * 1024


class TooManyQueued(InvalidInput):
    """The caller has MAX_QUEUED_PER_KEY jobs queued or running already (429, with Retry-After)."""

    retry_after = 30


def check_quota(services: Services, owner: str | None) -> None:
    """One tenant's flood waits at the door instead of in front of everyone else's jobs."""
    most = services.settings.max_queued_per_key
    if owner is not None and most and services.states.open_jobs(owner) >= most:
        raise TooManyQueued(
            f"this API key has {most} jobs queued or running (MAX_QUEUED_PER_KEY); submit more as they end"
        )


def write_manifest(services: Services, manifest: Manifest) -> None:
    """The manifest's creation event starts the job; its metadata names the model for routing."""
    # The router reads these from the creation event: the queue to put the job on, its owner, and
    # when it was made (its place in GET /v1/jobs).
    found = {
        "model": manifest.options.model,
        "owner": manifest.owner,
        "created": f"{manifest.created_at.timestamp():.6f}",
    }
    metadata = {name: value for name, value in found.items() if value} or None
    key = layout.manifest_key(manifest.job_id)
    put_model(services.store, services.settings.minio_bucket, key, manifest, metadata=metadata)
    # A URL's host only: its path and query may hold a token (a presigned link, say).
    source = f"URL on {manifest.source.url.host}" if isinstance(manifest.source, UrlSource) else manifest.filename
    log.info("job %s: submitted (%s)", manifest.job_id, source, extra={"job_id": manifest.job_id})


def served_models(services: Services) -> list[str]:
    """The live workers' models, and those the fleet starts workers for (WORKERS_SCALE_FROM_ZERO)."""
    return sorted(fleet.available(fleet.live(services.redis), services.settings.scalable_models))


def check_model_served(services: Services, options: JobOptions) -> None:
    """The model the job names must be served by a live worker, or by one the fleet will start,
    and able to do what it asks; a job naming none runs on some worker's default model, so each
    of those must be able to."""
    workers = fleet.live(services.redis)
    served = fleet.available(workers, services.settings.scalable_models)
    if options.model is not None and options.model not in served:
        listed = ", ".join(sorted(served)) or "none"
        raise InvalidInput(f"model: no live worker serves model {options.model!r}; served now: {listed}")
    candidates = [options.model] if options.model else sorted({w.default_model for w in workers})
    for name in candidates:
        if (why := fleet.unfit(name, served[name].multilingual, options)) is not None:
            others = sorted(n for n, m in served.items() if m.multilingual)
            hint = f" (served now: {', '.join(others)})" if others else " (none is served here now)"
            default = "" if options.model else "the default "
            field = "model" if options.model else "task" if options.task == "translate" else "language"
            said = why.removeprefix("model ") if field == "model" else f"{default}{why}"
            raise InvalidInput(f"{field}: {said}{hint}, or leave 'language' empty and 'task' as transcribe")


def check_request(services: Services, request: TranscribeRequest) -> None:
    """What can be refused before anything is stored: a model no worker serves, and source or
    callback URLs the workers would not be allowed to reach. Blocking (DNS): run in a thread."""
    check_model_served(services, request)
    policy = services.settings.url_policy
    for name, url in (("url", request.url), ("callback_url", request.callback_url)):
        if url is not None:
            try:
                policy.check(str(url))
            except InvalidInput as exc:
                raise InvalidInput(f"{name}: {exc}") from exc


# Bytes of an upload's head read to count its channels (a header, and an MP3's first frames).
HEAD_BYTES = 256 * 1024


def check_channels(services: Services, key: str) -> None:
    """A multichannel upload with one channel, or more than ``MAX_CHANNELS``, is refused at once.
    Read from the file's header with mutagen, for the formats it knows (WAV, MP3, FLAC, Ogg, MP4
    with its index first); the others the worker checks, and fails the job saying the same."""
    head = bytearray()
    for chunk in services.store.iter_bytes(services.settings.minio_bucket, key):
        head += chunk
        if len(head) >= HEAD_BYTES:
            break
    try:
        found = mutagen.File(io.BytesIO(bytes(head)))
    except Exception:  # mutagen's errors are many and undocumented as a tree: a header it cannot read
        found = None
    channels = getattr(getattr(found, "info", None), "channels", None)
    if channels == 1:
        raise InvalidInput("multichannel: the file has one audio channel; submit it without multichannel")
    most = services.settings.max_channels
    if isinstance(channels, int) and channels > most:
        raise InvalidInput(
            f"multichannel: the file has {channels} audio channels; MAX_CHANNELS allows {most}: "
            "submit it without multichannel to transcribe its mix"
        )


def url_job(services: Services, job_id: str, request: TranscribeRequest) -> Manifest:
    """A URL job's manifest, its request checked (blocking: one trip to a thread)."""
    manifest = url_manifest(job_id, request)
    check_request(services, request)
    return manifest


def url_manifest(job_id: str, request: TranscribeRequest) -> Manifest:
    if request.source_type != "url":
        raise InvalidInput("source_type 'upload' needs a multipart/form-data body with the file in 'file'")
    assert request.url is not None
    return Manifest(
        job_id=job_id,
        origin="api",
        source=UrlSource(url=request.url),
        options=request.options(),
        filename=request.url.path.rsplit("/", 1)[-1] if request.url.path else None,
        callback_url=request.callback_url,
        db_id=request.db_id,
        created_at=layout.made_at(job_id),
    )


def upload_reader(
    services: Services, request: Request, on_file: Callable[[dict[str, str]], None] | None = None
) -> MultipartReader:
    """A reader for this request's multipart body, refused at once if it declares more than MAX_UPLOAD_MB."""
    settings = services.settings
    max_bytes = settings.max_upload_mb * 2**20
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise TooLarge(f"the upload is larger than MAX_UPLOAD_MB ({settings.max_upload_mb} MiB)")
    return MultipartReader(boundary_of(request.headers.get("content-type", "")), max_bytes, on_file)


async def upload_fingerprint(services: Services, request: Request) -> str:
    """The fingerprint of an upload that is not stored: a replay, to be compared with the first."""
    body = timed(request.stream(), services.settings.body_timeout)
    return await drain_upload(body, upload_reader(services, request))


def refuse_early(validate: Callable[[dict[str, str]], object], fields: dict[str, str]) -> None:
    """Refuse a field sent before the file that is wrong whatever follows (``language=xx``), before
    the file is read: a caller does not wait for a gigabyte to go up to learn of a typo. Fields not
    sent yet, and checks across fields, wait for the whole form. ``validate`` runs on the event
    loop, in the parser: it must do no I/O."""
    try:
        validate(fields)
    except (ValidationError, RequestValidationError) as exc:
        wrong = [error for error in exc.errors() if error["type"] != "missing" and len(error.get("loc", ())) > 0]
        if wrong:
            raise RequestValidationError(wrong) from exc
    except Exception:  # noqa: S110  a check that needs the whole form: it is made once the form is in
        pass


async def accept_upload(
    services: Services,
    request: Request,
    job_id: str,
    form_of: Callable[[dict[str, str]], TranscribeRequest] = TranscribeRequest.model_validate,
    early: Callable[[dict[str, str]], object] = TranscribeRequest.model_validate,
) -> tuple[Manifest, str]:
    """Stream the upload into ``<job_id>/input/``, then validate the form fields (read as ours by
    default; the OpenAI-compatible route reads OpenAI's). The manifest, and the upload's fingerprint."""
    settings = services.settings
    reader = upload_reader(services, request, on_file=lambda fields: refuse_early(early, fields))

    def open_writer(filename: str, content_type: str) -> ObjectWriter:
        key = layout.input_key(job_id, filename)
        return services.store.open_writer(settings.minio_bucket, key, content_type=content_type)

    info = await receive_upload(timed(request.stream(), settings.body_timeout), reader, open_writer)
    try:
        form = form_of(reader.fields)
        if form.source_type != "upload":
            raise InvalidInput("a multipart body is an upload: set source_type=upload, or send JSON for a URL")
        await run_in_threadpool(check_request, services, form)
        if form.multichannel:
            await run_in_threadpool(check_channels, services, info.key)
    except (ValidationError, InvalidInput) as exc:
        await run_in_threadpool(services.store.delete, settings.minio_bucket, info.key)
        if isinstance(exc, ValidationError):
            raise RequestValidationError(exc.errors(include_url=False)) from exc
        raise
    manifest = Manifest(
        job_id=job_id,
        origin="api",
        source=ObjectSource(bucket=settings.minio_bucket, key=info.key),
        options=form.options(),
        filename=reader.filename,
        callback_url=form.callback_url,
        db_id=form.db_id,
        created_at=layout.made_at(job_id),  # when it was submitted, not when its upload ended
    )
    return manifest, reader.fingerprint()
