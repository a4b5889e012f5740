"""Reading jobs back: live status from Redis, else the durable ``status.json``, else the manifest
(accepted, not yet routed)."""

from __future__ import annotations

from collections.abc import Iterator

from ingest_api.auth import Identity, may_see
from ingest_api.schemas import JobView, Stats, links
from ingest_api.services import Services
from transcribe_common import fleet, jobqueue, layout
from transcribe_common.errors import InvalidInput, NotFound
from transcribe_common.models import CONTENT_TYPES, OUTPUT_FORMATS, JobStatus, Manifest, StatusRecord
from transcribe_common.store.base import delete_prefix, get_json


class Conflict(InvalidInput):
    """The job's state does not allow this: no result yet, or it has ended already (409)."""


class Gone(InvalidInput):
    """The job was deleted: it existed, and its objects are gone for good (410)."""


def read_status(services: Services, job_id: str, caller: Identity) -> StatusRecord:
    """The job's state, if ``caller`` may see it: another tenant's job is as unknown as a job that
    does not exist (404), whatever it is."""
    if not layout.is_job_id(job_id):
        raise NotFound(f"no job {job_id!r}")
    record = services.states.read_or_stored(job_id)
    if record is None or (record.owner is None and not caller.sees_all):
        # No status yet (the manifest still says whether the job exists), or none naming an owner
        # while it matters whose it is: the manifest says. Not read on every poll without keys.
        manifest = stored_manifest(services, job_id)
        if manifest is not None:
            record = record or StatusRecord(job_id=job_id, status=JobStatus.QUEUED)
            record.owner = manifest.owner
    if record is None or not may_see(caller, record.owner, services.inbox_owner):
        raise NotFound(f"no job {job_id!r}")
    return record


def stored_manifest(services: Services, job_id: str) -> Manifest | None:
    try:
        raw = get_json(services.store, services.settings.minio_bucket, layout.manifest_key(job_id))
    except NotFound:
        return None
    return Manifest.model_validate(raw)


def job_view(services: Services, job_id: str, caller: Identity) -> JobView:
    record = read_status(services, job_id, caller)
    return JobView(
        job_id=job_id,
        status=record.status,
        progress=record.progress,
        language=record.language,
        duration=record.duration,
        error=record.error,
        warnings=record.warnings,
        updated_at=record.updated_at,
        webhook=record.webhook,
        shards=record.shards,
        links=links(job_id, record.status),
    )


def cancel(services: Services, job_id: str, delete_objects: bool, caller: Identity) -> JobView:
    """``DELETE /v1/jobs/{id}``. Without ``delete_objects``: cancel a job that has not ended (409
    once it has); a running one's worker stops it within ``CANCEL_POLL``. With it: the job reads
    ``deleted`` and its objects (input, manifest, status, results) go, whatever state it was in.
    A deleted job answers 410 to both."""
    record = read_status(services, job_id, caller)
    if record.status == JobStatus.DELETED:
        if delete_objects:  # again: whatever a failed first try (a store blip) left goes now
            delete_prefix(services.store, services.settings.minio_bucket, layout.job_prefix(job_id))
        raise Gone(f"job {job_id} was deleted")
    target = JobStatus.DELETED if delete_objects else JobStatus.CANCELLED
    if target == JobStatus.CANCELLED and record.status.is_final:
        raise Conflict(_ended(job_id, record.status))
    if services.states.advance(job_id, target) is None:  # it moved meanwhile: say where to
        record = read_status(services, job_id, caller)
        raise (
            Gone(f"job {job_id} was deleted")
            if record.status == JobStatus.DELETED
            else Conflict(_ended(job_id, record.status))
        )
    jobqueue.drop(services.redis, job_id)
    if record.shards is not None:  # split into shards: the queued ones go too, the running ones stop
        jobqueue.drop_shards(services.redis, job_id, record.attempts, record.shards.total)
    if delete_objects:
        delete_prefix(services.store, services.settings.minio_bucket, layout.job_prefix(job_id))
    return job_view(services, job_id, caller)


def _ended(job_id: str, status: JobStatus) -> str:
    return (
        f"job {job_id} has already ended ({status.value}); there is nothing to cancel "
        "(delete_objects=true deletes its objects)"
    )


def result_stream(
    services: Services, job_id: str, fmt: str | None, caller: Identity
) -> tuple[str, str, Iterator[bytes]]:
    """The result in ``fmt`` (default: the format the job asked for): name, content type, bytes."""
    record = read_status(services, job_id, caller)
    if record.status == JobStatus.DELETED:
        raise Gone(f"job {job_id} was deleted, and its result with it")
    if record.status != JobStatus.FINISHED:
        raise Conflict(f"job {job_id} has no result: it is {record.status.value}")
    if fmt is None:
        if (manifest := stored_manifest(services, job_id)) is None:
            raise NotFound(f"job {job_id} has no result")
        fmt = manifest.options.main_output
    if fmt not in OUTPUT_FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    key = record.outputs.get(fmt) or layout.result_key(job_id, fmt)
    if services.store.stat(services.settings.minio_bucket, key) is None:  # before any byte is sent
        raise NotFound(f"job {job_id} has no {fmt} result")
    stream = services.store.iter_bytes(services.settings.minio_bucket, key)
    return f"{job_id}.{fmt}", CONTENT_TYPES[fmt], stream


def stats(services: Services) -> Stats:
    # Job slots of the workers alive now (their heartbeat), not of registrations that outlive them.
    return Stats(**services.states.counts(), workers=fleet.live_slots(services.redis))
