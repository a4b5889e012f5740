"""Removing scratch folders that workers left behind (a crash, a kill).

A folder is named after its job; it is kept, however old, while that job is still ``started`` by
a live worker: a two-hour transcription is not an orphan. The janitor sweeps folders older than
``SCRATCH_MAX_AGE``; a worker that starts sweeps at once the folders of jobs no live worker runs.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transcribe_common import keys
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    removed: int = 0
    kept_running: int = 0
    bytes_freed: int = 0


def sweep_scratch(
    root: Path,
    states: JobStates,
    *,
    max_age: float,
    now: float | None = None,
    alive: Callable[[str | None], bool] = lambda worker: True,
) -> SweepReport:
    report = SweepReport()
    if not root.is_dir():
        return report
    cutoff = (now or time.time()) - max_age
    for folder in root.iterdir():
        if not folder.is_dir() or _newest_mtime(folder) > cutoff:
            continue
        # A shard's folder is named after its RQ job: kept while its job runs, whoever runs the shard.
        shard = keys.shard_of(folder.name)
        record = states.read(shard[0] if shard else folder.name)
        if record is not None and record.status == JobStatus.STARTED and (shard is not None or alive(record.worker)):
            report.kept_running += 1
            continue
        size = _size(folder)
        shutil.rmtree(folder, ignore_errors=True)
        report.removed += 1
        report.bytes_freed += size
        log.info("removed scratch folder %s (%d bytes)", folder.name, size)
    return report


def _newest_mtime(folder: Path) -> float:
    return max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))])


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
