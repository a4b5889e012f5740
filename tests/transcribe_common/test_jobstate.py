import json
from typing import Any

import pytest
import redis

from transcribe_common import keys, layout
from transcribe_common.errors import StoreUnavailable
from transcribe_common.jobstate import JobStates, Stale, record_webhook
from transcribe_common.models import JobStatus, StatusRecord, WebhookDelivery
from transcribe_common.store.base import ObjectStore, get_json
from transcribe_common.transient import Retry


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
    states.progress(job, 30, 0)
    assert states.read(job).progress == 0  # type: ignore[union-attr]
    states.advance(job, JobStatus.STARTED)
    states.progress(job, 40, 1)
    states.progress(job, 20, 1)
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
    assert states.statuses(["c" * 32, "d" * 32]) == [("cancelled", 0), (None, 0)]
    assert states.advance("c" * 32, JobStatus.DELETED) is not None  # its objects may still be deleted
    assert states.advance("c" * 32, JobStatus.DELETED) is None  # once
    assert (states.counts()["cancelled"], states.counts()["deleted"]) == (0, 1)


class Blinking:
    """The local store, whose next ``fails`` writes of a status.json fail as a store blip does:
    the store is not what these tests are about, the moves around its failures are."""

    def __init__(self, store: ObjectStore, fails: int) -> None:
        self.store, self.fails = store, fails

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def open_writer(self, bucket: str, key: str, **kwargs: Any) -> object:
        if key.endswith(layout.STATUS) and self.fails > 0:
            self.fails -= 1
            raise StoreUnavailable("object store unreachable: a blip")
        return self.store.open_writer(bucket, key, **kwargs)


def blinking_states(redis_conn: redis.Redis, local_store: Any, tries: int) -> tuple[JobStates, Blinking]:
    store = Blinking(local_store.store, fails=0)
    retry = Retry(attempts=tries, backoff=0.01, most=0.01)
    return JobStates(redis_conn, store, "transcribe", retry=retry), store  # type: ignore[arg-type]


def started(states: JobStates, job: str) -> int:
    states.advance(job, JobStatus.QUEUED)
    record = states.advance(job, JobStatus.STARTED)
    assert record is not None
    return record.attempts


def test_a_final_move_repeated_by_its_attempt_after_the_status_write_failed_ends_the_job(
    redis_conn: redis.Redis, local_store: Any
) -> None:
    """Hole 1 of issue 16: the gate moved, status.json failed; the retry used to be refused (and read
    as "cancelled"), leaving the job with no status.json and no webhook."""
    states, store = blinking_states(redis_conn, local_store, tries=1)
    job = "e" * 32
    attempt = started(states, job)
    store.fails = 1
    with pytest.raises(StoreUnavailable):
        states.advance(job, JobStatus.FINISHED, attempt=attempt, progress=100)
    again = states.advance(job, JobStatus.FINISHED, attempt=attempt, progress=100)
    assert again is not None
    assert again.status == JobStatus.FINISHED
    stored = states.read_stored(job)
    assert stored is not None
    assert stored.status == JobStatus.FINISHED
    assert states.counts()["finished"] == 1
    assert states.counts()["started"] == 0
    assert states.advance(job, JobStatus.FAILED, attempt=attempt, error="late") is None  # still final


def test_the_status_write_is_retried_on_its_own(redis_conn: redis.Redis, local_store: Any) -> None:
    states, store = blinking_states(redis_conn, local_store, tries=3)
    job = "f" * 32
    attempt = started(states, job)
    store.fails = 2
    assert states.advance(job, JobStatus.FAILED, attempt=attempt, error="bad media") is not None
    stored = states.read_stored(job)
    assert stored is not None
    assert (stored.status, stored.error) == (JobStatus.FAILED, "bad media")


def test_a_stale_attempt_can_neither_end_nor_report_on_a_job_started_again(states: JobStates) -> None:
    """Hole 2: a worker taken for dead (reaped) and its job started again; when it wakes, its moves,
    progress and notes are refused, and the current attempt's are not."""
    job = "9" * 32
    first = started(states, job)
    assert states.requeue(job, "its worker died") is not None  # the reaper
    assert states.advance(job, JobStatus.FAILED, attempt=first, error="late") is None  # not its job any more
    second = states.advance(job, JobStatus.STARTED)
    assert second is not None
    assert second.attempts == first + 1
    assert not states.current(job, first)
    assert states.current(job, second.attempts)
    assert states.advance(job, JobStatus.FINISHED, attempt=first, progress=100) is None
    assert states.requeue(job, "draining", attempt=first) is None
    with pytest.raises(Stale):
        states.progress(job, 50, first)
    with pytest.raises(Stale):
        states.note(job, first, language="de")
    states.progress(job, 60, second.attempts)
    states.note(job, second.attempts, language="en")
    record = states.read(job)
    assert record is not None
    assert (record.status, record.progress, record.language) == ("started", 60, "en")
    assert states.advance(job, JobStatus.FINISHED, attempt=second.attempts) is not None


def test_an_ended_job_s_live_state_expires_and_readers_fall_back_to_status_json(
    redis_conn: redis.Redis, local_store: Any
) -> None:
    states = JobStates(redis_conn, local_store.store, "transcribe", ttl=3600)
    job = "8" * 32
    attempt = started(states, job)
    assert redis_conn.ttl(keys.job(job)) == -1  # a running job's state never expires
    states.advance(job, JobStatus.FINISHED, attempt=attempt, progress=100)
    assert 0 < redis_conn.ttl(keys.job(job)) <= 3600
    redis_conn.delete(keys.job(job))  # as its TTL would
    record = states.read_or_stored(job)
    assert record is not None
    assert record.status == JobStatus.FINISHED
    record_webhook(redis_conn, job, WebhookDelivery(url="http://x.example/", message_id="m"))
    assert not redis_conn.exists(keys.job(job))  # no hash with a webhook and no status
    assert states.counts()["finished"] == 1  # the counters keep counting it


def test_a_late_duplicate_of_an_expired_job_is_retired(redis_conn: redis.Redis, local_store: Any) -> None:
    states = JobStates(redis_conn, local_store.store, "transcribe", ttl=3600)
    job = "7" * 32
    states.advance(job, JobStatus.QUEUED, owner="k")
    states.advance(job, JobStatus.FAILED, error="x")
    redis_conn.delete(keys.job(job))
    assert states.claim(job, JobStatus.QUEUED, owner="k")  # the gate cannot know: its state expired
    assert states.retire(job)
    assert not redis_conn.exists(keys.job(job))
    assert states.counts()["queued"] == 0
    assert states.counts()["failed"] == 1
    assert states.open_jobs("k") == 0
