"""Bringing the jobs bucket and Redis back into agreement: the janitor's second task.

Every hop is at-least-once, and processes die, so the bucket can hold what no job will finish.
Each run walks the jobs bucket one job folder at a time and, for a folder older than its limit:

- **no manifest** (an upload whose request died before its manifest, or leftovers of a deleted
  job): the folder is removed after ``ORPHAN_AFTER`` seconds;
- **a manifest whose uploaded input is missing**: the job, unless it has ended or is running, is
  failed with an error saying so;
- **a manifest with no status anywhere** (no live state in Redis, no ``status.json``): its
  creation event was lost — Redis down when it was sent, say — so it is announced again after
  ``LOST_AFTER`` seconds; the router's gate makes a duplicate harmless;
- **an ended job past ``RESULT_RETENTION_DAYS``** (0 keeps jobs forever): its objects and live
  state are removed.

``dry_run`` counts and logs the same without changing anything.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis

from transcribe_common import keys, layout
from transcribe_common.events import access_record
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus, Manifest, ObjectSource
from transcribe_common.store.base import ObjectInfo, ObjectStore, get_json

log = logging.getLogger(__name__)
DAY = 86400


@dataclass(frozen=True)
class Limits:
    orphan_after: float
    lost_after: float
    retention_days: float
    dry_run: bool = False


@dataclass
class ReconcileReport:
    counts: Counter[str] = field(default_factory=Counter)
    bytes_freed: int = 0

    def summary(self) -> str:
        counted = ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items())) or "nothing to do"
        return f"{counted}; {self.bytes_freed} bytes freed"


class Reconciler:
    def __init__(self, conn: redis.Redis, store: ObjectStore, bucket: str, limits: Limits) -> None:
        self.redis, self.store, self.bucket, self.limits = conn, store, bucket, limits
        self.states = JobStates(conn, store, bucket)

    def run(self, now: float | None = None) -> ReconcileReport:
        report = ReconcileReport()
        now = now or time.time()
        for job_id, objects in self._job_folders():
            age = now - max(info.modified for info in objects)
            try:
                self._reconcile(job_id, {info.key: info for info in objects}, age, report)
            except Exception:
                log.exception("job %s: reconciling failed; trying again next run", job_id)
                report.counts["errors"] += 1
        return report

    def _job_folders(self) -> Iterator[tuple[str, list[ObjectInfo]]]:
        folders: dict[str, list[ObjectInfo]] = defaultdict(list)
        for info in self.store.list(self.bucket):
            job_id = info.key.split("/", 1)[0]
            if layout.is_job_id(job_id):
                folders[job_id].append(info)
        yield from folders.items()

    def _reconcile(self, job_id: str, objects: dict[str, ObjectInfo], age: float, report: ReconcileReport) -> None:
        manifest_info = objects.get(layout.manifest_key(job_id))
        if manifest_info is None:
            if age > self.limits.orphan_after:
                self._remove(job_id, objects, "orphans_removed", report)
            return
        record = self.states.read_or_stored(job_id)
        if record is not None and record.status.is_final:
            if self.limits.retention_days and age > self.limits.retention_days * DAY:
                self._remove(job_id, objects, "expired_removed", report)
            return
        if record is not None and record.status == JobStatus.STARTED:
            return  # a worker has it; a dead worker's job is the reaper's
        manifest = Manifest.model_validate(get_json(self.store, self.bucket, manifest_info.key))
        source = manifest.source
        input_missing = isinstance(source, ObjectSource) and source.bucket == self.bucket and source.key not in objects
        if input_missing and age > self.limits.orphan_after:
            report.counts["missing_input_failed"] += 1
            log.warning("job %s: its uploaded input is missing; failing it%s", job_id, self._dry)
            if not self.limits.dry_run:
                error = "the job's uploaded input is missing from the bucket; submit it again"
                self.states.advance(job_id, JobStatus.FAILED, error=error)
        elif record is None and age > self.limits.lost_after:
            report.counts["reannounced"] += 1
            log.warning("job %s: no status %d s after its manifest; announcing it again%s", job_id, age, self._dry)
            if not self.limits.dry_run:
                self._announce(manifest_info)

    def _announce(self, info: ObjectInfo) -> None:
        """The manifest's creation event again, in MinIO's format, as the bucket would send it."""
        record = access_record(
            info.bucket,
            info.key,
            size=info.size,
            etag=info.etag,
            content_type=info.content_type,
            metadata=(self.store.stat(info.bucket, info.key) or info).metadata,
        )
        self.redis.rpush(keys.EVENTS, record)

    def _remove(self, job_id: str, objects: dict[str, ObjectInfo], count: str, report: ReconcileReport) -> None:
        size = sum(info.size for info in objects.values())
        report.counts[count] += 1
        report.bytes_freed += size
        log.info("job %s: removing %d objects (%d bytes)%s", job_id, len(objects), size, self._dry)
        if self.limits.dry_run:
            return
        for key in objects:
            self.store.delete(self.bucket, key)
        self.redis.delete(keys.job(job_id))

    @property
    def _dry(self) -> str:
        return " [dry run: kept]" if self.limits.dry_run else ""
