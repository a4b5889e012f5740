"""Bringing the buckets and Redis back into agreement: the janitor's main task.

Every hop is at-least-once, and processes die, so the bucket can hold what no job will finish and
Redis can hold jobs that no one runs. Each run, in this order:

1. **Abandoned jobs** (RQ's ``StartedJobRegistry`` names a worker whose heartbeat key expired) are
   started again or failed after ``MAX_ATTEMPTS``, and jobs that waited ``MODEL_WAIT`` for a model
   no live worker serves are failed — what live workers' reapers do, done here too so that it
   happens while no worker is alive.
2. **The jobs bucket**, one job folder at a time, streamed (memory holds one folder); a folder
   counts as old by its newest object:

   - no manifest (an upload whose request died before its manifest, leftovers of a deleted job):
     removed after ``ORPHAN_AFTER``;
   - a manifest whose uploaded input is missing: the job fails, with an error saying so;
   - open in Redis, idle for ``LOST_AFTER``, but ended in its ``status.json`` (Redis came back
     older than the bucket): its end is put back in Redis, and its webhook sent as below;
   - no live status (its creation event was lost, or Redis lost the job), or ``queued`` with no RQ
     job (a router died between the two), or ``started`` with no RQ execution: after ``LOST_AFTER``
     the manifest is announced again, or the job recovered as in 1.; the router's gate and the
     worker's move to ``started`` make a duplicate harmless;
   - ended in the last day, with a webhook owed and none queued (its worker died between the
     two): queued now;
   - ended in Redis with no ``status.json`` (the store was away longer than the writer's retries):
     written now;
   - ended, past ``RESULT_RETENTION_DAYS`` (0 keeps jobs forever): objects and live state removed.
3. **Dead letters** whose cause may have passed are replayed (``transcribe_common.deadletters``).
4. **The inbox bucket** (``janitor.inbox``): drops nothing has seen are announced again, and
   transcribed drops kept, deleted or moved as ``INBOX_AFTER`` says.
5. **Incomplete uploads** (S3 multipart uploads, local temporary files) older than
   ``INCOMPLETE_UPLOAD_AFTER`` are aborted.

``dry_run`` counts and logs the same without changing anything.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from janitor.announce import announce
from janitor.inbox import reconcile_inbox
from janitor.report import Report
from janitor.settings import JanitorSettings
from transcribe_common import deadletters, jobqueue, keys, layout, recovery
from transcribe_common.ending import Ending
from transcribe_common.models import JobStatus, Manifest, ObjectSource, StatusRecord
from transcribe_common.store.base import ObjectInfo, get_json

log = logging.getLogger(__name__)
DAY = 86400


@dataclass(frozen=True)
class Limits:
    orphan_after: float
    lost_after: float
    retention_days: float
    inbox_after: str = "keep"
    inbox_move_prefix: str = "processed/"
    incomplete_upload_after: float = DAY
    dry_run: bool = False
    interval: float = 3600.0  # JANITOR_INTERVAL

    @property
    def lookback(self) -> float:
        """How far back a run looks at every job folder: anything younger may still be lost,
        orphaned or owed a webhook. Older jobs that still need a run are in Redis's indexes."""
        return max(self.orphan_after, self.lost_after) + DAY + 2 * self.interval

    @classmethod
    def from_settings(cls, settings: JanitorSettings, dry_run: bool) -> Limits:
        return cls(
            settings.orphan_after,
            settings.lost_after,
            settings.result_retention_days,
            settings.inbox_after,
            settings.inbox_move_prefix,
            settings.incomplete_upload_after,
            dry_run,
            settings.janitor_interval,
        )


class Janitor:
    def __init__(self, ending: Ending, limits: Limits) -> None:
        self.ending, self.limits = ending, limits
        self.redis, self.store, self.states = ending.conn, ending.store, ending.states
        self.bucket = ending.settings.minio_bucket
        self.inbox_bucket = ending.settings.minio_inbox_bucket

    def run(self, now: float | None = None) -> Report:
        report = Report()
        now = now or time.time()
        queues = recovery.transcription_queues(self.redis)
        self._step(report, "abandoned jobs", self.recover_abandoned, queues, report)
        self._step(report, "jobs waiting for a model", self.fail_unserved, now, report)
        self._step(report, "dead letters", self.replay_dead, report)
        running = recovery.running(self.redis, queues)
        seen: set[str] = set()  # the jobs this run looks at (the inbox's half asks which drops have one)
        for job_id, objects in self._job_folders(now, seen):
            self._step(report, f"job {job_id}", self.reconcile_job, job_id, objects, running, now, report)
        self._step(report, "inbox", reconcile_inbox, self, seen, now, report)
        for bucket in (self.bucket, self.inbox_bucket):
            self._step(report, f"uploads to {bucket}", self.abort_incomplete, bucket, now, report)
        if not self.limits.dry_run:
            self._step(report, "watermark", self.advance_watermark, now)
        return report

    def _step(self, report: Report, what: str, step: Callable[..., object], *args: object) -> None:
        """One part of a run; a failure is logged and counted, and the run goes on."""
        try:
            step(*args)
        except Exception:
            log.exception("%s: reconciling failed; trying again next run", what)
            report.count("errors")

    def recover_abandoned(self, queues: list[str], report: Report) -> None:
        if self.limits.dry_run:
            for job_id, _, _ in jobqueue.abandoned(self.redis, queues):
                log.warning("job %s: its worker died [dry run: left]", job_id)
                report.count("abandoned_recovered")
            return
        for _ in recovery.reap(self.ending, queues):
            report.count("abandoned_recovered")

    def replay_dead(self, report: Report) -> None:
        """Dead letters whose cause may have passed (the store was away) get another round."""
        if self.limits.dry_run:
            replayed = sum(letter.transient for letter in deadletters.letters(self.redis))
        else:
            replayed = deadletters.replay(self.redis, everything=False)
        for _ in range(replayed):
            report.count("dead_letters_replayed")

    def fail_unserved(self, now: float, report: Report) -> None:
        if self.limits.dry_run:
            for job_id, _, error in recovery.unserved(self.ending, now):
                self._act(report, "unserved_failed", job_id, f"failing it: {error}")
            return
        for _ in recovery.fail_unserved(self.ending, now):
            report.count("unserved_failed")

    def _job_folders(self, now: float, seen: set[str]) -> Iterator[tuple[str, list[ObjectInfo]]]:
        """The job folders a run looks at, each once, one at a time as listings stream in (a store
        lists a folder's keys together, so memory holds one folder). A run's cost follows the jobs
        that can still need it, not every job ever kept (job ids are dated, ``layout.new_job_id``):

        - the jobs made since the watermark, ``lookback`` ago (lost events, orphans, owed webhooks);
        - the jobs Redis indexes as open, or as ended since then (inbox jobs, whose ids are not
          dated, and older jobs still running);
        - with ``RESULT_RETENTION_DAYS``, the jobs made before the retention's start (to remove).

        With no watermark (the first run, or Redis lost its data, and with it what it knew of the
        jobs) the whole bucket is listed once."""
        watermark = self.redis.get(keys.JANITOR_WATERMARK)
        if watermark is None:
            yield from self._folders(self.store.list(self.bucket), seen)
            return
        if self.limits.retention_days:
            before = layout.dated_floor(now - self.limits.retention_days * DAY)
            yield from self._folders(self.store.list(self.bucket), seen, before=before)
        since = self.store.list(self.bucket, start_after=layout.dated_floor(float(watermark)))
        yield from self._folders(since, seen, before=layout.dated_floor(now + DAY))
        for job_id in sorted(self._indexed(now) - seen):
            folder = list(self.store.list(self.bucket, prefix=layout.job_prefix(job_id)))
            if folder:
                seen.add(job_id)
                yield job_id, folder

    @staticmethod
    def _folders(
        listing: Iterator[ObjectInfo], seen: set[str], before: str | None = None
    ) -> Iterator[tuple[str, list[ObjectInfo]]]:
        """A listing, grouped by job folder, up to the first job id at or after ``before``."""
        for job_id, infos in itertools.groupby(listing, key=lambda info: info.key.split("/", 1)[0]):
            if before is not None and job_id >= before:
                return
            if layout.is_job_id(job_id) and job_id not in seen:
                seen.add(job_id)
                yield job_id, list(infos)

    def _indexed(self, now: float) -> set[str]:
        since = now - self.limits.lookback
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(keys.JOBS_OPEN, 0, -1)
            pipe.zrangebyscore(keys.JOBS_ENDED, since, "+inf")
            open_ids, ended_ids = pipe.execute()
        return {keys.text(job_id) for job_id in [*open_ids, *ended_ids]}

    def advance_watermark(self, now: float) -> None:
        """What this run looked at is behind it: the next one lists from ``lookback`` ago, and the
        ended index forgets what is older."""
        since = now - self.limits.lookback
        with self.redis.pipeline() as pipe:
            pipe.set(keys.JANITOR_WATERMARK, f"{since:.0f}")
            pipe.zremrangebyscore(keys.JOBS_ENDED, "-inf", since)
            pipe.execute()

    def reconcile_job(
        self, job_id: str, folder: list[ObjectInfo], running: set[str], now: float, report: Report
    ) -> None:
        objects = {info.key: info for info in folder}
        age = now - max(info.modified for info in folder)
        manifest_info = objects.get(layout.manifest_key(job_id))
        if manifest_info is None:
            if age > self.limits.orphan_after:
                self.remove(job_id, folder, "orphans_removed", report)
            return
        live = self._live(job_id, objects, now, report)
        if live is not None and live.status == JobStatus.DELETED:
            # Deleted, and yet objects are here: a deletion that failed half way, or results a
            # stopped worker wrote after it. They go.
            self.remove(job_id, folder, "deleted_removed", report, forget=False)
            return
        record = live or self.states.read_stored(job_id)
        if record is not None and record.status.is_final:
            if live is not None and self._recent(live, now) and not self.states.stored_agrees(live, objects):
                # Ended in Redis, but its status.json write never succeeded (the store was away).
                self._act(report, "status_written", job_id, f"{live.status} but status.json says otherwise; writing it")
                if not self.limits.dry_run:
                    self.states.persist(live)
            self._ended(job_id, folder, live, age, now, report)
            return
        manifest = Manifest.model_validate(get_json(self.store, self.bucket, manifest_info.key))
        source = manifest.source
        if isinstance(source, ObjectSource) and source.bucket == self.bucket and source.key not in objects:
            if age > self.limits.orphan_after:
                self._act(report, "missing_input_failed", job_id, "its uploaded input is missing; failing it")
                if not self.limits.dry_run:
                    error = "the job's uploaded input is missing from the bucket; submit it again"
                    self.ending.fail(job_id, manifest, error)
            return
        self._unattended(job_id, manifest_info, live, running, age, now, report)

    def _live(self, job_id: str, objects: dict[str, ObjectInfo], now: float, report: Report) -> StatusRecord | None:
        """The job's live state. One open but idle for ``LOST_AFTER`` whose ``status.json`` (listed
        in ``objects`` as written since) says it ended is restored from it first: Redis came back
        older than the bucket (a replica promoted before it synced, a restore from a backup, the
        second a crash lost). The bucket is right: its end goes back into Redis, and the stale runs
        RQ kept (whose worker lives on) out of RQ's registry."""
        live = self.states.read(job_id)
        if live is None or live.status.is_final or now - live.updated_at.timestamp() <= self.limits.lost_after:
            return live
        stored = self.states.stored_end(live, objects)
        if stored is None:
            return live
        said = f"{live.status} in Redis, {stored.status} in status.json; restoring it"
        if self.limits.dry_run:
            self._act(report, "state_restored", job_id, said)
            return stored
        restored = self.states.restore(stored, live)
        if restored is None:  # it moved meanwhile (a worker started it): it is not lost
            return self.states.read(job_id)
        self._act(report, "state_restored", job_id, said)
        runs = [job_id]
        if live.shards is not None:
            runs += [keys.shard_job_id(job_id, live.attempts, index) for index in range(live.shards.total)]
        for rq_id in runs:
            jobqueue.forget_runs(self.redis, rq_id)
        return restored

    def _unattended(
        self,
        job_id: str,
        manifest_info: ObjectInfo,
        live: StatusRecord | None,
        running: set[str],
        age: float,
        now: float,
        report: Report,
    ) -> None:
        """A job that should be moving: is anything moving it?"""
        if live is None:
            if age > self.limits.lost_after:
                self._act(report, "reannounced", job_id, "no live status; announcing its manifest again")
                if not self.limits.dry_run:
                    announce(self.redis, self.store, manifest_info)
            return
        idle = now - live.updated_at.timestamp()
        if idle <= self.limits.lost_after:
            return
        if live.status == JobStatus.QUEUED and not jobqueue.waiting(self.redis, job_id):
            self._act(report, "reannounced", job_id, "queued but not in any queue; announcing it again")
            if not self.limits.dry_run:
                announce(self.redis, self.store, manifest_info)
        elif live.status == JobStatus.STARTED and job_id not in running and not recovery.attended(self.redis, live):
            self._unrun(job_id, live, report)

    def _unrun(self, job_id: str, live: StatusRecord, report: Report) -> None:
        """Started, and neither run nor queued to run: a split job's lost shards run again, and
        only they; a whole job runs again (or fails, past MAX_ATTEMPTS)."""
        if live.shards is not None:
            self._act(report, "shards_requeued", job_id, "split, but no shard of it in any RQ queue; requeueing")
            if not self.limits.dry_run:
                recovery.requeue_lost_shards(self.ending, live)
            return
        self._act(report, "abandoned_recovered", job_id, "started but no worker runs it; recovering it")
        if not self.limits.dry_run:
            recovery.recover(self.ending, job_id, "no worker was running it")

    def _recent(self, live: StatusRecord, now: float) -> bool:
        """Ended since LOST_AFTER ago and in the day before: the jobs whose end is checked (so that
        a run does not read every status.json in the bucket)."""
        return self.limits.lost_after < now - live.updated_at.timestamp() <= self.limits.lost_after + DAY

    def _ended(
        self, job_id: str, folder: list[ObjectInfo], live: StatusRecord | None, age: float, now: float, report: Report
    ) -> None:
        if self.limits.retention_days and age > self.limits.retention_days * DAY:
            self.remove(job_id, folder, "expired_removed", report)
            return
        if live is not None:
            self._remove_unpublished(job_id, folder, live, report)
        # Only a live record says whether a webhook was queued (after a loss of Redis none is sent
        # again), and only jobs that ended in the last day are looked at, so that each run does not
        # read every manifest in the bucket.
        if live is None or live.webhook is not None:
            return
        if not self._recent(live, now):
            return
        manifest = self.ending.manifest(job_id)
        if self.ending.webhook_owed(manifest, live):
            self._act(report, "webhooks_queued", job_id, f"{live.status} with its webhook never queued; queueing it")
            if not self.limits.dry_run:
                self.ending.send_owed(job_id, manifest, live)

    def _remove_unpublished(self, job_id: str, folder: list[ObjectInfo], live: StatusRecord, report: Report) -> None:
        """Results of an attempt that did not end the job (its worker was taken for dead, or
        stopped half way): no reader sees them, and they go."""
        published = set(live.outputs.values())
        stale = [info for info in folder if layout.is_attempt_key(info.key) and info.key not in published]
        if not stale:
            return
        size = sum(info.size for info in stale)
        self._act(report, "unpublished_removed", job_id, f"{len(stale)} results of other attempts ({size} bytes)")
        report.bytes_freed += size
        if not self.limits.dry_run:
            for info in stale:
                self.store.delete(self.bucket, info.key)

    def abort_incomplete(self, bucket: str, now: float, report: Report) -> None:
        for upload in self.store.incomplete_uploads(bucket):
            if now - upload.started <= self.limits.incomplete_upload_after:
                continue
            what = f"{bucket}/{upload.key or upload.upload_id}"
            self._act(report, "uploads_aborted", what, f"incomplete upload of {upload.size} bytes; aborting it")
            report.bytes_freed += upload.size
            if not self.limits.dry_run:
                self.store.abort_upload(upload)

    def remove(
        self, job_id: str, folder: list[ObjectInfo], action: str, report: Report, *, forget: bool = True
    ) -> None:
        size = sum(info.size for info in folder)
        self._act(report, action, job_id, f"removing {len(folder)} objects ({size} bytes)")
        report.bytes_freed += size
        if self.limits.dry_run:
            return
        if forget:  # whose lists it is in: the live state says, else status.json, before it goes
            record = self.states.read(job_id) or self.states.read_stored(job_id)
            owner = record.owner if record is not None else None
        for info in folder:
            self.store.delete(self.bucket, info.key)
        if forget:
            self.redis.delete(keys.job(job_id))
            self.states.unindex([job_id], [owner])

    def _act(self, report: Report, action: str, what: str, message: str) -> None:
        report.count(action)
        level = logging.INFO if action.endswith("removed") else logging.WARNING
        log.log(level, "%s: %s%s", what, message, " [dry run: left]" if self.limits.dry_run else "")
