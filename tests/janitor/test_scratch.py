import os
import time
from pathlib import Path

from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus
from transcribe_common.scratch import sweep_scratch


def make(root: Path, name: str, age: float) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "audio.s16le").write_bytes(b"\0" * 1000)
    old = time.time() - age
    for path in (folder / "audio.s16le", folder):
        os.utime(path, (old, old))
    return folder


def test_old_folders_go_but_running_jobs_and_young_folders_stay(tmp_path: Path, states: JobStates) -> None:
    scratch = tmp_path / "scratch"
    running, done, orphan = "a" * 32, "b" * 32, "c" * 32
    states.advance(running, JobStatus.QUEUED)
    states.advance(running, JobStatus.STARTED)
    states.advance(done, JobStatus.FAILED, error="x")
    make(scratch, running, age=7200)
    make(scratch, done, age=7200)
    make(scratch, orphan, age=7200)
    young = make(scratch, "d" * 32, age=60)

    report = sweep_scratch(scratch, states, max_age=3600)

    assert sorted(p.name for p in scratch.iterdir()) == sorted([running, young.name])
    assert (report.removed, report.kept_running, report.bytes_freed) == (2, 1, 2000)
