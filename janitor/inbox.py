"""The inbox bucket's half of reconciliation, for each object dropped there:

- **no job, nothing beside it, older than ``LOST_AFTER``**: its creation event was lost (Redis was
  away and MinIO had no ``queue_dir``, say), so it is announced again. Its job id is the router's
  (bucket, key, eTag), so an event that was only late makes no second job.
- **its job finished**: ``INBOX_AFTER=keep`` (the default) leaves it; ``delete`` removes it;
  ``move`` copies it to ``INBOX_MOVE_PREFIX`` + its key, marked as the pipeline's own so that its
  creation event starts nothing, then removes it. The transcript stays beside the original key,
  where the person who dropped it looks. A failed drop stays, with its error note beside it.

Objects under ``INBOX_MOVE_PREFIX`` and folders' options files (``.transcribe.json``) are left
alone. Versioned inbox buckets are not covered: there a job id comes from the version id, which a
listing does not give.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from janitor.announce import announce
from janitor.report import Report
from transcribe_common import layout
from transcribe_common.ending import ERROR_NOTE, WARNINGS_NOTE
from transcribe_common.models import OUTPUT_FORMATS, JobStatus
from transcribe_common.store.base import ObjectInfo, copy_object, free_place

if TYPE_CHECKING:
    from janitor.reconcile import Janitor

log = logging.getLogger(__name__)
BESIDE = (*OUTPUT_FORMATS, ERROR_NOTE, WARNINGS_NOTE)


def reconcile_inbox(janitor: Janitor, job_ids: set[str], now: float, report: Report) -> None:
    """``job_ids``: the jobs the run looked at; a drop whose job is not among them is asked for
    its manifest before it is announced again."""
    bucket, prefix = janitor.inbox_bucket, janitor.limits.inbox_move_prefix
    objects = [
        info
        for info in janitor.store.list(bucket)
        if not info.key.startswith(prefix) and not layout.is_options_file(info.key)
    ]
    present = {info.key for info in objects}
    for info in objects:
        what = f"inbox {info.key}"
        janitor._step(report, what, _reconcile_drop, janitor, info, present, job_ids, now, report)


def _reconcile_drop(
    janitor: Janitor, info: ObjectInfo, present: set[str], job_ids: set[str], now: float, report: Report
) -> None:
    job_id = layout.inbox_job_id(info.bucket, info.key, info.etag or None)
    if job_id in job_ids:
        if janitor.limits.inbox_after != "keep":
            record = janitor.states.read_or_stored(job_id)
            if record is not None and record.status == JobStatus.FINISHED:
                _settle(janitor, info, job_id, report)
        return
    if now - info.modified <= janitor.limits.lost_after:
        return
    if any(key in present for suffix in BESIDE for key in layout.beside_keys(info.key, suffix, job_id)):
        return  # transcribed (or failed) already
    current = janitor.store.stat(info.bucket, info.key)
    if current is None or layout.OUTPUT_MARKER in current.metadata:
        return  # gone meanwhile, or written by the pipeline
    if janitor.store.stat(janitor.bucket, layout.manifest_key(job_id)) is not None:
        return  # it has a job, one this run did not look at (ended long ago, cancelled, say)
    janitor._act(report, "inbox_reannounced", f"inbox {info.key}", "no job; announcing it again")
    if not janitor.limits.dry_run:
        announce(janitor.redis, janitor.store, current)


def _settle(janitor: Janitor, info: ObjectInfo, job_id: str, report: Report) -> None:
    """``INBOX_AFTER`` for a drop whose transcript is written."""
    store, mode = janitor.store, janitor.limits.inbox_after
    target = None
    if mode == "move":  # never over a file a person put there: the next free name
        places = layout.moved_keys(janitor.limits.inbox_move_prefix, info.key, job_id)
        if (target := free_place(store, info.bucket, places, job_id)) is None:
            log.warning("inbox %s: transcribed, but no name to move it to is free; left where it is", info.key)
            return
        janitor._act(report, "inbox_moved", f"inbox {info.key}", f"transcribed; moving it to {target}")
    else:
        janitor._act(report, "inbox_deleted", f"inbox {info.key}", f"transcribed; deleting it ({info.size} bytes)")
        report.bytes_freed += info.size
    if janitor.limits.dry_run:
        return
    if target is not None:
        copy_object(store, info.bucket, info.key, target, metadata={layout.OUTPUT_MARKER: job_id})
    store.delete(info.bucket, info.key)
