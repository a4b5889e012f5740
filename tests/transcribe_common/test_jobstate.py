import json

from transcribe_common import layout
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus, StatusRecord
from transcribe_common.store.base import get_json


def test_a_job_moves_forward_once_and_is_counted_once(states: JobStates) -> None:
    assert states.advance("a" * 32, JobStatus.QUEUED) is not None
    assert states.advance("a" * 32, JobStatus.QUEUED) is None  # duplicate event
    assert states.advance("a" * 32, JobStatus.STARTED, worker="w1") is not None
    assert states.advance("a" * 32, JobStatus.STARTED, worker="w2") is None  # racing worker
    assert states.advance("a" * 32, JobStatus.QUEUED) is None  # never backwards
    assert states.counts() == {"queued": 0, "started": 1, "finished": 0, "failed": 0, "cancelled": 0, "deleted": 0}
    done = states.advance("a" * 32, JobStatus.FINISHED, outputs=json.dumps({"srt": "x"}))
    assert done is not None
    assert done.outputs == {"srt": "x"}
    assert states.advance("a" * 32, JobStatus.FAILED, error="late") is None  # final is final
    assert states.counts() == {"queued": 0, "started": 0, "finished": 1, "failed": 0, "cancelled": 0, "deleted": 0}


def test_progress_only_rises_and_only_while_started(states: JobStates) -> None:
    job = "b" * 32
    states.advance(job, JobStatus.QUEUED)
    states.progress(job, 30)
    assert states.read(job).progress == 0  # type: ignore[union-attr]
    states.advance(job, JobStatus.STARTED)
    states.progress(job, 40)
    states.progress(job, 20)
    assert states.read(job).progress == 40  # type: ignore[union-attr]


def test_final_status_is_written_to_the_bucket(states: JobStates, local_store) -> None:  # type: ignore[no-untyped-def]
    job = "c" * 32
    states.advance(job, JobStatus.FAILED, error="bad media")
    record = StatusRecord.model_validate(get_json(local_store.store, "transcribe", layout.status_key(job)))
    assert (record.status, record.error) == (JobStatus.FAILED, "bad media")


def test_a_cancelled_job_goes_nowhere_else(states: JobStates) -> None:
    states.advance("c" * 32, JobStatus.QUEUED)
    assert states.advance("c" * 32, JobStatus.CANCELLED) is not None
    for later in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED):
        assert states.advance("c" * 32, later) is None
    record = states.read("c" * 32)
    assert record is not None
    assert record.status == JobStatus.CANCELLED
    assert states.counts()["cancelled"] == 1
    assert states.statuses(["c" * 32, "d" * 32]) == ["cancelled", None]
    assert states.advance("c" * 32, JobStatus.DELETED) is not None  # its objects may still be deleted
    assert states.advance("c" * 32, JobStatus.DELETED) is None  # once
    assert (states.counts()["cancelled"], states.counts()["deleted"]) == (0, 1)
