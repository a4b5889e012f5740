"""Reading jobs back: live status from Redis, else the durable ``status.json``, else the manifest
(accepted, not yet routed)."""

from __future__ import annotations

import base64
import itertools
import math
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from ingest_api import media
from ingest_api.auth import Identity, may_see
from ingest_api.schemas import JobPage, JobView, Source, Stats, links
from ingest_api.services import Services
from transcribe_common import fleet, jobqueue, layout
from transcribe_common.errors import InvalidInput, NotFound
from transcribe_common.jobstate import Made, Origin, made_by
from transcribe_common.models import (
    CONTENT_TYPES,
    OUTPUT_FORMATS,
    JobStatus,
    Manifest,
    ObjectSource,
    StatusRecord,
    UrlSource,
)
from transcribe_common.store.base import ObjectInfo, delete_prefix


class Conflict(InvalidInput):
    """The job's state does not allow this: no result yet, or it has ended already (409)."""


class Gone(InvalidInput):
    """The job was deleted: it existed, and its objects are gone for good (410)."""


def read_status(services: Services, job_id: str, caller: Identity) -> StatusRecord:
    """The job's state, if ``caller`` may see it: another tenant's job is as unknown as a job that
    does not exist (404), whatever it is."""
    if not layout.is_job_id(job_id):
        raise NotFound(f"no job {job_id!r}")
    record = _with_owner(services, job_id, services.states.read_or_stored(job_id), caller)
    if record is None or not may_see(caller, record.owner, services.inbox_owner):
        raise NotFound(f"no job {job_id!r}")
    return record


def _with_owner(services: Services, job_id: str, record: StatusRecord | None, caller: Identity) -> StatusRecord | None:
    """No status yet (the manifest still says whether the job exists), or none naming an owner
    while it matters whose it is: the manifest says."""
    if record is None:  # whether the job exists is the store's to say now, not a cached copy's
        manifest = services.manifests.stored(job_id)
        if manifest is None:
            return None
        # Queued as of its making: its view does not change with each read (an event stream of it
        # would send it anew every EVENTS_RECHECK, and never count as idle).
        return StatusRecord(
            job_id=job_id, status=JobStatus.QUEUED, owner=manifest.owner, updated_at=manifest.created_at
        )
    if record.owner is None and not caller.sees_all and (manifest := services.manifests.get(job_id)) is not None:
        record.owner = manifest.owner
    return record


def job_view(services: Services, job_id: str, caller: Identity) -> JobView:
    return view_of(read_status(services, job_id, caller), services.manifests.get(job_id))


def view_of(record: StatusRecord, manifest: Manifest | None) -> JobView:
    """What a caller reads of a job: its live state, and what its manifest asked for."""
    source, filename = described(manifest) if manifest is not None else (None, None)
    asked = manifest.options if manifest is not None else None
    return JobView(
        job_id=record.job_id,
        status=record.status,
        progress=record.progress,
        language=record.language,
        duration=record.duration,
        error=record.error,
        warnings=record.warnings,
        filename=filename,
        source=source,
        created_at=manifest.created_at if manifest is not None else None,
        started_at=record.started_at,
        finished_at=record.finished_at,
        model=record.model or (asked.model if asked is not None else None),
        options=asked,
        db_id=manifest.db_id if manifest is not None else None,
        updated_at=record.updated_at,
        webhook=record.webhook,
        shards=record.shards,
        links=links(record.job_id, record.status),
    )


def described(manifest: Manifest) -> tuple[Source, str | None]:
    """Where a job's input came from, and the name a person knows it by: the upload's file name,
    the URL, or the dropped object's key."""
    if manifest.origin == "inbox" and isinstance(manifest.source, ObjectSource):
        return "inbox", manifest.source.key
    if isinstance(manifest.source, UrlSource):
        return "url", shown_url(manifest.source.url)
    return "upload", manifest.filename


def shown_url(url: object) -> str:
    """A source URL as the job's name: without its credentials or query (a presigned link's token)."""
    parts = urllib.parse.urlsplit(str(url))
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


SCAN_MOST = 2000  # jobs looked at for one page of a filtered list
STORE_READS_MOST = 200  # jobs read back from the store for one page (their live state expired)
READ_TOGETHER = 100  # jobs whose state is read in one round trip


@dataclass(frozen=True)
class JobQuery:
    """``GET /v1/jobs``: which jobs, and from where in the newest-first order."""

    limit: int = 50
    cursor: str | None = None
    status: JobStatus | None = None
    since: datetime | None = None
    until: datetime | None = None
    db_id: str | None = None
    model: str | None = None
    source: Source | None = None

    def matches(self, view: JobView) -> bool:
        return (
            # A deleted job is listed only when asked for: nothing of it is left but that word.
            (view.status == self.status if self.status is not None else view.status != JobStatus.DELETED)
            and (self.model is None or view.model == self.model)
            and (self.source is None or view.source == self.source)
            and (self.db_id is None or (view.db_id is not None and str(view.db_id) == self.db_id))
        )


def list_jobs(services: Services, query: JobQuery, caller: Identity) -> JobPage:
    """The caller's jobs, newest first, a page at a time. The indexes say which jobs and when each
    was made; each job's status and manifest say whether it matches. At most ``SCAN_MOST`` jobs are
    looked at per page, and ``STORE_READS_MOST`` of them read from the store, so a filter that
    matches few ends a page early: ``next_cursor`` goes on."""
    if caller.sees_all:
        owners: list[str | None] | None = None
    else:
        owners = [caller.id] + ([None] if caller.id == services.inbox_owner else [])
    oldest = _seconds(query.since) if query.since is not None else -math.inf
    below = _cursor(query.cursor)
    if query.until is not None and (below is None or _seconds(query.until) < below[0]):
        below = (_seconds(query.until), "~")  # "~" sorts after every id: jobs made at ``until`` are in
    page = _Page(services, caller, owners or ())
    walk = itertools.islice(services.states.newest(owners, below, oldest), SCAN_MOST)
    try:
        for batch in iter(lambda: list(itertools.islice(walk, READ_TOGETHER)), []):
            for made, view in zip(batch, page.views([job_id for _, job_id in batch]), strict=True):
                page.last = made
                if view is not None and query.matches(view):
                    page.found.append(view)
                    if len(page.found) == query.limit:
                        return JobPage(jobs=page.found, next_cursor=_cursor_of(made))
                if page.store_reads >= STORE_READS_MOST:
                    return JobPage(jobs=page.found, next_cursor=_cursor_of(made))
            if len(batch) < READ_TOGETHER:
                return JobPage(jobs=page.found, next_cursor=None)
        # Scanned as far as a page may: the next one carries on from there (none if nothing was left).
        last = page.last
        more = last is not None and next(services.states.newest(owners, last, oldest), None) is not None
        return JobPage(jobs=page.found, next_cursor=_cursor_of(last) if more and last is not None else None)
    finally:  # after the walk: taking entries out while it pages would shift what it reads next
        services.states.unindex(page.gone, owners or ())


class _Page:
    """One page of a list as it is made: what was found, where the walk got to, the jobs found gone
    for good, and how many reads of the store it took (jobs whose live state has expired)."""

    def __init__(self, services: Services, caller: Identity, owners: Sequence[str | None]) -> None:
        self.services, self.caller, self.owners = services, caller, owners
        self.found: list[JobView] = []
        self.last: Made | None = None
        self.gone: list[str] = []
        self.store_reads = 0

    def views(self, job_ids: list[str]) -> list[JobView | None]:
        """Each job's view, or None if the caller may not see it, or it is gone."""
        services = self.services
        views: list[JobView | None] = []
        for job_id, live in zip(job_ids, services.states.read_many(job_ids), strict=True):
            if live is None:
                self.store_reads += 1
            record = _with_owner(services, job_id, live or services.states.read_stored(job_id), self.caller)
            if record is None:
                self.gone.append(job_id)
                views.append(None)
            elif not may_see(self.caller, record.owner, services.inbox_owner):
                views.append(None)
            else:
                views.append(view_of(record, services.manifests.get(job_id)))
        return views


def _seconds(moment: datetime) -> float:
    """Unix seconds of a time given in the query; one with no zone is UTC, as every time here is."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def _cursor_of(made: Made) -> str:
    return base64.urlsafe_b64encode(f"{made[0]!r}:{made[1]}".encode()).decode().rstrip("=")


def _cursor(text: str | None) -> Made | None:
    if text is None:
        return None
    try:
        score, _, job_id = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().partition(":")
        made = (float(score), job_id)
    except ValueError:
        made = None
    if made is None or not layout.is_job_id(made[1]) or not math.isfinite(made[0]):
        raise InvalidInput("cursor is not one this API gave: pass a page's next_cursor as it is")
    return made


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
    manifest = services.manifests.get(job_id)  # its first move, maybe: listed under its owner
    made = made_by(manifest) if manifest is not None else Origin()
    if services.states.advance(job_id, target, **made) is None:  # it moved meanwhile: say where to
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
        state = {
            JobStatus.QUEUED: "it is queued; its result comes once it has finished",
            JobStatus.STARTED: "it is running; its result comes once it has finished",
            JobStatus.FAILED: f"it failed: {record.error or 'its error is in GET /v1/jobs/' + job_id}",
            JobStatus.CANCELLED: "it was cancelled",
        }.get(record.status, f"it is {record.status.value}")
        raise Conflict(f"job {job_id} has no result: {state}")
    if fmt is None:
        if (manifest := services.manifests.stored(job_id)) is None:
            raise NotFound(f"job {job_id} has no result")
        fmt = manifest.options.main_output
    if fmt not in OUTPUT_FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    key = record.outputs.get(fmt) or layout.result_key(job_id, fmt)
    if services.store.stat(services.settings.minio_bucket, key) is None:  # before any byte is sent
        raise NotFound(f"job {job_id} has no {fmt} result")
    stream = services.store.iter_bytes(services.settings.minio_bucket, key)
    return f"{result_stem(job_id, services.manifests.get(job_id))}.{fmt}", CONTENT_TYPES[fmt], stream


def result_stem(job_id: str, manifest: Manifest | None) -> str:
    """A result's file name without its suffix: the input's (``meeting`` for ``meeting.mp3``, the
    last part of a URL's path or of a dropped object's key), else the job's id."""
    name = described(manifest)[1] if manifest is not None else None
    if name is not None and "://" in name:
        name = urllib.parse.unquote(urllib.parse.urlsplit(name).path)
    stem = PurePosixPath(name or "").stem.strip()
    return stem or job_id


def input_object(services: Services, job_id: str, caller: Identity) -> tuple[ObjectInfo, str]:
    """The job's own input (an upload, or an inbox drop), to be played beside its transcript, and
    the type to serve it as: what its first bytes are (``media``), whatever it was stored as."""
    record = read_status(services, job_id, caller)
    if record.status == JobStatus.DELETED:
        raise Gone(f"job {job_id} was deleted, and its input with it")
    manifest = services.manifests.get(job_id)
    if manifest is None or not isinstance(manifest.source, ObjectSource):
        raise NotFound(f"job {job_id} keeps no input of its own: it was fetched from its URL")
    source = manifest.source
    info = services.store.stat(source.bucket, source.key)
    if info is None:
        raise NotFound(f"job {job_id}'s input is no longer kept")
    if (
        manifest.origin == "inbox"
        and source.version_id is None
        and layout.inbox_job_id(source.bucket, source.key, info.etag) != job_id
    ):  # the same name dropped again with other bytes: another job's input now
        raise Gone(f"job {job_id}'s input was replaced by a newer drop of the same name")
    sniffed = min(media.SNIFF_BYTES, info.size)  # an S3 range past an empty object's end is refused
    head = b"".join(services.store.iter_bytes(info.bucket, info.key, 0, sniffed)) if sniffed else b""
    return info, media.media_type(head)


def stats(services: Services, caller: Identity) -> Stats:
    """Every job's counts for an admin (or with keys off); a tenant's own jobs' for a tenant key
    (and inbox drops' too for ``INBOX_OWNER_KEY``). Job slots: of the workers alive now (their
    heartbeat), not of registrations that outlive them."""
    owners = None if caller.sees_all else [caller.id, *([None] if caller.id == services.inbox_owner else [])]
    return Stats(**services.states.counts(owners), workers=fleet.live_slots(services.redis))
