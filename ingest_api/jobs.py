"""Reading jobs back: live status from Redis, else the durable ``status.json``, else the manifest
(accepted, not yet routed)."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import ValidationError
from rq import Worker

from ingest_api.schemas import JobView, Stats, links
from ingest_api.services import Services
from transcribe_common import layout
from transcribe_common.errors import InvalidInput, NotFound
from transcribe_common.models import CONTENT_TYPES, OUTPUT_FORMATS, JobStatus, Manifest, StatusRecord
from transcribe_common.store.base import get_json


class NotFinished(InvalidInput):
    """The job has no result yet (409)."""


def read_status(services: Services, job_id: str) -> StatusRecord:
    if not layout.is_job_id(job_id):
        raise NotFound(f"no job {job_id!r}")
    record = services.states.read(job_id)
    if record is not None:
        return record
    bucket = services.settings.minio_bucket
    try:
        return StatusRecord.model_validate(get_json(services.store, bucket, layout.status_key(job_id)))
    except (NotFound, ValueError, ValidationError):
        pass  # no status yet (or unreadable): the manifest still says whether the job exists
    if services.store.stat(bucket, layout.manifest_key(job_id)) is not None:
        return StatusRecord(job_id=job_id, status=JobStatus.QUEUED)
    raise NotFound(f"no job {job_id!r}")


def job_view(services: Services, job_id: str) -> JobView:
    record = read_status(services, job_id)
    return JobView(
        job_id=job_id,
        status=record.status,
        progress=record.progress,
        language=record.language,
        duration=record.duration,
        error=record.error,
        updated_at=record.updated_at,
        links=links(job_id),
    )


def result_stream(services: Services, job_id: str, fmt: str | None) -> tuple[str, str, Iterator[bytes]]:
    """The result in ``fmt`` (default: the format the job asked for): name, content type, bytes."""
    record = read_status(services, job_id)
    if record.status != JobStatus.FINISHED:
        raise NotFinished(f"job {job_id} has no result: it is {record.status.value}")
    if fmt is None:
        manifest = get_json(services.store, services.settings.minio_bucket, layout.manifest_key(job_id))
        fmt = Manifest.model_validate(manifest).options.main_output
    if fmt not in OUTPUT_FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    key = record.outputs.get(fmt) or layout.result_key(job_id, fmt)
    if services.store.stat(services.settings.minio_bucket, key) is None:  # before any byte is sent
        raise NotFound(f"job {job_id} has no {fmt} result")
    stream = services.store.iter_bytes(services.settings.minio_bucket, key)
    return f"{job_id}.{fmt}", CONTENT_TYPES[fmt], stream


def stats(services: Services) -> Stats:
    counts = services.states.counts()
    return Stats(**counts, workers=Worker.count(connection=services.redis))
