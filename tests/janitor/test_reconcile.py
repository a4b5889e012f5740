"""The janitor's reconciliation of the buckets with Redis, on a real Redis and a local store;
re-announced events are taken by the real router, abandoned jobs sit in RQ's real registries."""

from __future__ import annotations

import json
import time

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job

from event_router.router import Router
from event_router.settings import RouterSettings
from janitor.reconcile import DAY, Janitor, Limits
from janitor.settings import JanitorSettings
from tests.conftest import INBOX_BUCKET, JOBS_BUCKET
from transcribe_common import jobqueue, keys, layout, recovery
from transcribe_common.ending import Ending
from transcribe_common.jobstate import JobStates, read_webhook, record_webhook
from transcribe_common.models import JobStatus, Manifest, ObjectSource, StatusRecord, WebhookDelivery, utcnow
from transcribe_common.shardstate import ShardStates
from transcribe_common.store.base import get_bytes, get_json, put_bytes, put_model

LIMITS = Limits(orphan_after=3600, lost_after=300, retention_days=7)
LATER = 2 * 3600  # seconds: past the orphan and lost limits, within retention
CALLBACK = "https://hooks.example.com/transcribe"
SETTINGS = JanitorSettings(
    minio_bucket=JOBS_BUCKET, minio_inbox_bucket=INBOX_BUCKET, default_callback_url=CALLBACK, max_attempts=2
)


def _webhook_went(redis_conn: redis.Redis, job_id: str) -> None:
    """The job's webhook was delivered: not the business of the test that calls this."""
    record_webhook(redis_conn, job_id, WebhookDelivery(url=CALLBACK, message_id=f"msg_{job_id}", state="delivered"))


def _upload_job(store, job_id: str, *, with_input: bool = True, with_manifest: bool = True) -> None:  # type: ignore[no-untyped-def]
    key = layout.input_key(job_id, "a.mp3")
    if with_input:
        put_bytes(store, JOBS_BUCKET, key, b"x" * 1000, content_type="audio/mpeg")
    if with_manifest:
        manifest = Manifest(job_id=job_id, origin="api", source=ObjectSource(bucket=JOBS_BUCKET, key=key))
        put_model(store, JOBS_BUCKET, layout.manifest_key(job_id), manifest)


def _queued_job(store, states: JobStates) -> str:  # type: ignore[no-untyped-def]
    job_id = layout.new_job_id()
    _upload_job(store, job_id)
    states.advance(job_id, JobStatus.QUEUED)
    return job_id


@pytest.fixture
def reconcile(redis_conn: redis.Redis, local_store, states: JobStates):  # type: ignore[no-untyped-def]
    ending = Ending(redis_conn, states, local_store.store, SETTINGS)

    def run(limits: Limits = LIMITS, after: float = LATER):  # type: ignore[no-untyped-def]
        return Janitor(ending, limits).run(now=time.time() + after)

    return run


@pytest.fixture
def route(redis_conn: redis.Redis, local_store):  # type: ignore[no-untyped-def]
    router = Router(
        RouterSettings(minio_bucket=JOBS_BUCKET, minio_inbox_bucket=INBOX_BUCKET), redis_conn, local_store.store
    )

    def run() -> None:
        while router.run_once(timeout=0.05):
            pass

    return run


def test_an_input_without_a_manifest_is_removed_once_old(reconcile, local_store) -> None:  # type: ignore[no-untyped-def]
    job_id = layout.new_job_id()
    _upload_job(local_store.store, job_id, with_manifest=False)
    assert reconcile(after=60).counts == {}  # young: perhaps its request is still running
    report = reconcile()
    assert report.counts == {"orphans_removed": 1}
    assert report.bytes_freed == 1000
    assert list(local_store.store.list(JOBS_BUCKET)) == []


def test_a_manifest_whose_input_is_missing_fails_its_job_with_a_webhook(  # type: ignore[no-untyped-def]
    reconcile, local_store, states: JobStates, redis_conn: redis.Redis
) -> None:
    job_id = layout.new_job_id()
    _upload_job(local_store.store, job_id, with_input=False)
    states.advance(job_id, JobStatus.QUEUED)
    assert reconcile().counts == {"missing_input_failed": 1}
    record = states.read(job_id)
    assert record is not None
    assert record.status == JobStatus.FAILED
    assert record.error == "the job's uploaded input is missing from the bucket; submit it again"
    status = StatusRecord.model_validate(get_json(local_store.store, JOBS_BUCKET, layout.status_key(job_id)))
    assert status.status == JobStatus.FAILED
    webhook = read_webhook(redis_conn, job_id)
    assert webhook is not None
    assert webhook.url == CALLBACK
    assert Queue(keys.WEBHOOK_QUEUE, connection=redis_conn).count == 1
    assert reconcile().counts == {}  # ended: nothing more to do


def test_a_manifest_whose_event_was_lost_is_announced_again_and_routed(  # type: ignore[no-untyped-def]
    reconcile, route, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    job_id = layout.new_job_id()
    _upload_job(local_store.store, job_id)  # its events went to local_store.records, never to Redis
    assert redis_conn.llen(keys.EVENTS) == 0
    assert reconcile(after=60).counts == {}  # young: its event may still be on the way
    assert reconcile().counts == {"reannounced": 1}
    route()
    record = states.read(job_id)
    assert record is not None
    assert record.status == JobStatus.QUEUED
    assert Job.exists(job_id, redis_conn)
    assert reconcile().counts == {}  # it has a status and an RQ job now


def test_a_job_queued_without_an_rq_job_is_announced_again_and_enqueued(  # type: ignore[no-untyped-def]
    reconcile, route, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    job_id = layout.new_job_id()
    _upload_job(local_store.store, job_id)
    states.advance(job_id, JobStatus.QUEUED)  # a router that died before it enqueued
    assert reconcile(after=60).counts == {}
    assert reconcile().counts == {"reannounced": 1}
    route()
    assert Job.exists(job_id, redis_conn)
    assert Queue(keys.QUEUE, connection=redis_conn).job_ids == [job_id]


def _start(redis_conn: redis.Redis, states: JobStates, job_id: str, name: str) -> Worker:
    """RQ's own worker takes the job: an execution in its StartedJobRegistry."""
    queue = Queue(keys.QUEUE, connection=redis_conn)
    queue.enqueue_call(keys.WORKER_FUNCTION, args=(job_id,), job_id=job_id)
    worker = Worker([queue], connection=redis_conn, name=name)
    worker.register_birth()
    job, _ = Queue.dequeue_any([queue], None, connection=redis_conn)
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    states.advance(job_id, JobStatus.STARTED, worker=worker.name)
    return worker


def _start_then_die(redis_conn: redis.Redis, states: JobStates, job_id: str) -> None:
    """RQ's own worker takes the job, then its process is gone: its heartbeat key expires."""
    worker = _start(redis_conn, states, job_id, f"doomed-{job_id[:6]}")
    redis_conn.delete(worker.key)


def test_a_job_whose_worker_died_is_started_again_then_failed(  # type: ignore[no-untyped-def]
    reconcile, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    job_id = _queued_job(local_store.store, states)
    _start_then_die(redis_conn, states, job_id)
    dry = reconcile(Limits(3600, 300, 7, dry_run=True), after=0)
    assert dry.counts == {"abandoned_recovered": 1}
    assert reconcile(after=0).counts == {"abandoned_recovered": 1}  # at once: RQ says its worker is dead
    record = states.read(job_id)
    assert record is not None
    assert record.status == JobStatus.QUEUED
    assert Queue(keys.QUEUE, connection=redis_conn).job_ids == [job_id]
    _start_then_die(redis_conn, states, job_id)  # its second and last attempt
    assert reconcile(after=0).counts == {"abandoned_recovered": 1}
    record = states.read(job_id)
    assert record is not None
    assert record.status == JobStatus.FAILED
    assert record.error == "the worker running this job died (2 attempts); it was not started again"


def test_a_started_job_that_rq_does_not_run_is_recovered_once_idle(  # type: ignore[no-untyped-def]
    reconcile, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    job_id = _queued_job(local_store.store, states)
    states.advance(job_id, JobStatus.STARTED)  # RQ lost it: no execution anywhere
    assert reconcile(after=60).counts == {}  # a worker may still report progress
    assert reconcile().counts == {"abandoned_recovered": 1}
    record = states.read(job_id)
    assert record is not None
    assert record.status == JobStatus.QUEUED
    assert Job.exists(job_id, redis_conn)


def test_a_job_that_redis_forgot_ended_takes_its_end_from_status_json(  # type: ignore[no-untyped-def]
    reconcile, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    """Redis came back older than the bucket (a replica promoted before it synced, a restore from a
    backup, the second a crash lost): the job reads ``started`` again, and the run RQ kept names a
    worker that lives on. The final ``status.json`` wins, and its webhook goes (issue 32)."""
    job_id = _queued_job(local_store.store, states)
    worker = _start(redis_conn, states, job_id, "alive-worker")
    before = {key: redis_conn.dump(key) for key in redis_conn.scan_iter()}  # the state Redis comes back with
    outputs = {"srt": layout.result_key(job_id, "srt")}
    ended = states.advance(job_id, JobStatus.FINISHED, progress=100, language="en", outputs=json.dumps(outputs))
    assert ended is not None
    redis_conn.flushdb()
    for key, dumped in before.items():
        redis_conn.restore(key, 0, dumped)
    assert worker.key.encode() in before
    assert reconcile(after=60).counts == {}  # it may still be moving
    assert reconcile().counts == {"state_restored": 1, "webhooks_queued": 1}
    record = states.read(job_id)
    assert record is not None
    assert (record.status, record.outputs, record.language) == (JobStatus.FINISHED, outputs, "en")
    assert record.finished_at == ended.finished_at
    assert (states.counts()["finished"], states.counts()["started"]) == (1, 0)
    assert job_id not in recovery.running(redis_conn, [keys.QUEUE])
    assert reconcile().counts == {}


def test_a_stored_end_is_not_put_over_a_job_that_started_since_nor_over_another_job(  # type: ignore[no-untyped-def]
    reconcile, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    """The restore is a compare-and-set on the state the janitor read; and a ``status.json`` that
    names another job (misplaced, or written by hand) is no job's end."""
    job_id = _queued_job(local_store.store, states)
    read = states.read(job_id)
    assert read is not None
    states.advance(job_id, JobStatus.STARTED)  # a worker took it between the read and the restore
    ended = read.model_copy(update={"status": JobStatus.FINISHED, "updated_at": utcnow()})
    assert states.restore(ended, read) is None
    now = states.read(job_id)
    assert now is not None
    assert (now.status, now.attempts) == (JobStatus.STARTED, 1)
    other = _queued_job(local_store.store, states)
    stored = StatusRecord(job_id=job_id, status=JobStatus.FINISHED, outputs={"srt": layout.result_key(job_id, "srt")})
    put_model(local_store.store, JOBS_BUCKET, layout.status_key(other), stored)  # job_id's end, in other's folder
    assert "state_restored" not in reconcile().counts
    left = states.read(other)
    assert left is not None
    assert left.status != JobStatus.FINISHED


def test_a_webhook_never_queued_is_queued_once(  # type: ignore[no-untyped-def]
    reconcile, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    job_id = layout.new_job_id()
    _upload_job(local_store.store, job_id)
    for status in (JobStatus.QUEUED, JobStatus.STARTED):
        states.advance(job_id, status)
    states.advance(job_id, JobStatus.FINISHED, outputs='{{"srt": "{}"}}'.format(layout.result_key(job_id, "srt")))
    # ...and its worker died before it queued the webhook.
    assert reconcile(after=60).counts == {}
    assert reconcile().counts == {"webhooks_queued": 1}
    webhook = read_webhook(redis_conn, job_id)
    assert webhook is not None
    assert webhook.message_id == f"msg_{job_id}_finished"
    [queued] = Queue(keys.WEBHOOK_QUEUE, connection=redis_conn).get_jobs()
    assert f"/v1/jobs/{job_id}/result?format=srt" in queued.kwargs["body"]
    assert reconcile().counts == {}


def test_ended_jobs_go_after_the_retention(reconcile, local_store, states: JobStates, redis_conn: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    ended = layout.new_job_id()
    _upload_job(local_store.store, ended)
    states.advance(ended, JobStatus.FAILED, error="bad")
    _webhook_went(redis_conn, ended)
    assert redis_conn.zscore(keys.JOBS_CREATED, ended) is not None  # GET /v1/jobs lists it
    assert redis_conn.zscore(keys.jobs_of(None), ended) is not None
    assert reconcile().counts == {}  # within 7 days
    assert reconcile(Limits(3600, 300, retention_days=0), after=400 * DAY).counts == {}  # 0 keeps forever
    report = reconcile(after=8 * DAY)
    assert report.counts == {"expired_removed": 1}
    assert not list(local_store.store.list(JOBS_BUCKET, f"{ended}/"))
    assert not redis_conn.exists(keys.job(ended))
    assert redis_conn.zscore(keys.JOBS_CREATED, ended) is None  # nor in any list
    assert redis_conn.zscore(keys.jobs_of(None), ended) is None


def test_a_dry_run_reports_the_same_and_changes_nothing(reconcile, local_store, redis_conn: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    orphan, lost = layout.new_job_id(), layout.new_job_id()
    _upload_job(local_store.store, orphan, with_manifest=False)
    _upload_job(local_store.store, lost)
    before = sorted(info.key for info in local_store.store.list(JOBS_BUCKET))
    dry = reconcile(Limits(3600, 300, 7, dry_run=True))
    assert dry.counts == {"orphans_removed": 1, "reannounced": 1}
    assert dry.bytes_freed == 1000
    assert sorted(info.key for info in local_store.store.list(JOBS_BUCKET)) == before
    assert redis_conn.llen(keys.EVENTS) == 0
    assert reconcile().counts == dry.counts


def _drop(store, key: str, data: bytes = b"media" * 200) -> None:  # type: ignore[no-untyped-def]
    put_bytes(store, INBOX_BUCKET, key, data, content_type="audio/mpeg")


def _finish_inbox_job(store, states: JobStates, key: str) -> str:  # type: ignore[no-untyped-def]
    """What a worker does for a drop: its transcript beside it, then ``finished``."""
    info = store.stat(INBOX_BUCKET, key)
    job_id = layout.inbox_job_id(INBOX_BUCKET, key, info.etag)
    states.advance(job_id, JobStatus.STARTED)
    put_bytes(store, INBOX_BUCKET, layout.beside_key(key, "srt"), b"1\n", metadata={layout.OUTPUT_MARKER: job_id})
    states.advance(job_id, JobStatus.FINISHED, outputs="{}")
    _webhook_went(states._redis, job_id)
    return job_id


def test_an_inbox_drop_whose_event_was_lost_is_announced_again(  # type: ignore[no-untyped-def]
    reconcile, route, local_store, states: JobStates
) -> None:
    store = local_store.store
    _drop(store, "talks/lost.mp3")  # its event went nowhere
    _drop(store, "talks/done.mp3")
    _finish_inbox_job(store, states, "talks/done.mp3")  # transcribed once, its job since removed:
    states._redis.delete(
        keys.job(layout.inbox_job_id(INBOX_BUCKET, "talks/done.mp3", store.stat(INBOX_BUCKET, "talks/done.mp3").etag))
    )
    assert reconcile(after=60).counts == {}
    assert reconcile().counts == {"inbox_reannounced": 1}  # not done.mp3, nor its transcript
    route()
    job_id = layout.inbox_job_id(INBOX_BUCKET, "talks/lost.mp3", store.stat(INBOX_BUCKET, "talks/lost.mp3").etag)
    record = states.read(job_id)
    assert record is not None
    assert record.status == JobStatus.QUEUED
    assert reconcile().counts == {}  # it has a job now


@pytest.mark.parametrize("mode", ["keep", "delete", "move"])
def test_inbox_after_keeps_deletes_or_moves_transcribed_drops(  # type: ignore[no-untyped-def]
    mode: str, reconcile, route, local_store, states: JobStates
) -> None:
    store = local_store.store
    _drop(store, "talks/a.mp3", b"a" * 1000)
    _drop(store, "talks/waiting.mp3")
    for record in local_store.records:  # the events, delivered this time
        states._redis.rpush(keys.EVENTS, record)
    route()
    job_id = _finish_inbox_job(store, states, "talks/a.mp3")
    limits = Limits(3600, 300, 7, inbox_after=mode, inbox_move_prefix="done/")
    report = reconcile(limits, after=0)
    present = sorted(info.key for info in store.list(INBOX_BUCKET))
    if mode == "keep":
        assert report.counts == {}
        assert present == ["talks/a.mp3", "talks/a.srt", "talks/waiting.mp3"]
    elif mode == "delete":
        assert (report.counts, report.bytes_freed) == ({"inbox_deleted": 1}, 1000)
        assert present == ["talks/a.srt", "talks/waiting.mp3"]
    else:
        assert report.counts == {"inbox_moved": 1}
        assert present == ["done/talks/a.mp3", "talks/a.srt", "talks/waiting.mp3"]
        assert get_bytes(store, INBOX_BUCKET, "done/talks/a.mp3") == b"a" * 1000
        moved = store.stat(INBOX_BUCKET, "done/talks/a.mp3")
        assert moved is not None
        assert moved.metadata[layout.OUTPUT_MARKER] == job_id
        events_before = states._redis.llen(keys.EVENTS)
        states._redis.rpush(keys.EVENTS, local_store.records[-1])  # the moved copy's own event
        route()
        assert states._redis.llen(keys.EVENTS) == events_before == 0
        assert states.read(layout.inbox_job_id(INBOX_BUCKET, "done/talks/a.mp3", moved.etag)) is None
    assert reconcile(limits, after=LATER).counts == {}  # nothing left to do, nothing lost


def test_incomplete_local_uploads_are_aborted_once_stale(reconcile, local_store) -> None:  # type: ignore[no-untyped-def]
    store = local_store.store
    writer = store.open_writer(JOBS_BUCKET, "x/input/a.mp3", content_type="audio/mpeg")
    writer.write(b"x" * 5000)  # ...and its process died: never committed, never aborted
    assert reconcile(after=3600).counts == {}
    report = reconcile(after=DAY + 60)
    assert (report.counts, report.bytes_freed) == ({"uploads_aborted": 1}, 5000)
    assert list(store.incomplete_uploads(JOBS_BUCKET)) == []


def test_a_deleted_jobs_leftovers_are_removed_and_its_state_kept(reconcile, local_store, states, redis_conn) -> None:  # type: ignore[no-untyped-def]
    """Deleted, and yet its folder is there (the deletion failed half way, or a stopped worker
    wrote after it): the objects go, the live state that says 'deleted' stays."""
    job_id = _queued_job(local_store.store, states)
    states.advance(job_id, JobStatus.DELETED)
    report = reconcile()
    assert report.counts["deleted_removed"] == 1
    assert list(local_store.store.list(JOBS_BUCKET, layout.job_prefix(job_id))) == []
    assert states.read(job_id).status == JobStatus.DELETED  # type: ignore[union-attr]


def test_a_job_waiting_for_a_model_no_worker_serves_fails_after_model_wait(  # type: ignore[no-untyped-def]
    reconcile, local_store, states, redis_conn
) -> None:
    """MODEL_WAIT counts from when the job was queued and from when a worker last served its model:
    a model whose worker just went (restarting, say) is given the whole wait again."""
    from transcribe_common import fleet, jobqueue

    job_id = _queued_job(local_store.store, states)
    jobqueue.enqueue(redis_conn, job_id, "large-v3", SETTINGS)
    went = time.time() + LATER - 60  # its last worker went a minute before the janitor looks
    record = fleet.WorkerRecord(
        name="w", host="h", pid=1, slots=1, models={"large-v3": fleet.ServedModel()}, until=went
    )
    fleet.advertise(redis_conn, record)
    assert reconcile().counts["unserved_failed"] == 0  # queued two hours ago, but served a minute ago
    assert states.read(job_id).status == JobStatus.QUEUED  # type: ignore[union-attr]
    report = reconcile(after=LATER + SETTINGS.model_wait)
    assert report.counts["unserved_failed"] == 1, report.counts
    failed = states.read(job_id)
    assert failed is not None
    assert failed.status == JobStatus.FAILED
    assert failed.error.startswith("no live worker served model 'large-v3' for 600 s (MODEL_WAIT)")  # type: ignore[union-attr]
    assert Queue("transcribe:large-v3", connection=redis_conn).get_job_ids() == []
    assert read_webhook(redis_conn, job_id) is not None  # its failure webhook is queued


def test_a_split_job_whose_model_lost_every_worker_fails_after_model_wait(  # type: ignore[no-untyped-def]
    reconcile, local_store, states, redis_conn
) -> None:
    """Issue 17's review: a long job was cut into shards on large-v3's queue, then every worker of
    large-v3 went. Its shards would wait for ever; after MODEL_WAIT the job fails, saying why, and
    its queued shards go."""
    from transcribe_common import fleet, jobqueue
    from transcribe_common.shardstate import ShardStates

    job_id = _queued_job(local_store.store, states)
    attempt = states.advance(job_id, JobStatus.STARTED).attempts  # type: ignore[union-attr]
    assert ShardStates(redis_conn, job_id, attempt).begin(3, 900.0, {})
    for index in range(3):
        jobqueue.enqueue_shard(redis_conn, job_id, attempt, index, "large-v3", SETTINGS)
    went = time.time() + LATER - 60
    record = fleet.WorkerRecord(
        name="w", host="h", pid=1, slots=1, models={"large-v3": fleet.ServedModel()}, until=went
    )
    fleet.advertise(redis_conn, record)
    assert reconcile().counts["unserved_failed"] == 0  # served a minute ago: the shards may still be taken
    report = reconcile(after=LATER + SETTINGS.model_wait)
    assert report.counts["unserved_failed"] == 1, report.counts
    failed = states.read(job_id)
    assert failed is not None
    assert failed.status == JobStatus.FAILED
    assert failed.error.startswith("its shards wait for model 'large-v3': no live worker served model")  # type: ignore[union-attr]
    assert Queue("transcribe:large-v3", connection=redis_conn).get_job_ids() == []
    assert read_webhook(redis_conn, job_id) is not None
    assert Queue(keys.WEBHOOK_QUEUE, connection=redis_conn).count == 1  # one failure, one webhook


def test_an_ended_job_whose_status_json_was_never_written_gets_it_and_its_webhook(  # type: ignore[no-untyped-def]
    reconcile, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    """The last net of hole 1 (issue 16): the store stayed away past every retry of the worker's
    final write, so the job ended in Redis only, with no webhook queued."""
    job_id = layout.new_job_id()
    _upload_job(local_store.store, job_id)
    for status in (JobStatus.QUEUED, JobStatus.STARTED):
        states.advance(job_id, status)
    # The gate alone moved it, as when the status.json write after it failed:
    time.sleep(0.01)  # the end comes after the start's status.json
    ended = {"status": "failed", "error": "bad media", "updated_at": utcnow().isoformat()}
    redis_conn.hset(keys.job(job_id), mapping=ended)
    assert reconcile().counts == {"status_written": 1, "webhooks_queued": 1}
    stored = states.read_stored(job_id)
    assert stored is not None
    assert (stored.status, stored.error) == (JobStatus.FAILED, "bad media")
    assert reconcile().counts == {}


class Listed:
    """The local store, noting every key its listings hand out: what a janitor run costs."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self.store, self.keys = store, []  # type: ignore[var-annotated]

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def list(self, bucket: str, prefix: str = "", start_after: str = ""):  # type: ignore[no-untyped-def]
        for info in self.store.list(bucket, prefix, start_after):
            self.keys.append(info.key)
            yield info


def test_after_its_first_run_the_janitor_looks_only_at_jobs_that_can_need_it(  # type: ignore[no-untyped-def]
    local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    """Hole 5 of issue 16: every run listed and held the whole bucket, whatever its age."""
    now = time.time()
    old_ended, old_open = layout.new_job_id(now - 30 * DAY), layout.new_job_id(now - 30 * DAY)
    for job_id in (old_ended, old_open):
        _upload_job(local_store.store, job_id)
        states.advance(job_id, JobStatus.QUEUED)
    states.advance(old_ended, JobStatus.FAILED, error="bad media")
    redis_conn.delete(keys.job(old_ended))  # its live state expired (STATE_TTL)
    recent = _queued_job(local_store.store, states)
    listed = Listed(local_store.store)
    janitor = Janitor(
        Ending(redis_conn, states, listed, SETTINGS), Limits(orphan_after=3600, lost_after=300, retention_days=0)
    )  # type: ignore[arg-type]

    janitor.run(now=now)  # the first: no watermark, so the whole bucket
    assert any(key.startswith(old_ended) for key in listed.keys)
    listed.keys.clear()
    redis_conn.zrem(keys.JOBS_ENDED, old_ended)  # ended long before the look-back

    report = janitor.run(now=now + LATER)
    assert not any(key.startswith(old_ended) for key in listed.keys)  # ended long ago: not listed
    assert any(key.startswith(old_open) for key in listed.keys)  # still open: found by Redis's index
    assert any(key.startswith(recent) for key in listed.keys)  # recent: listed from the watermark
    assert report.counts["reannounced"] == 2  # both queued with no RQ job, past LOST_AFTER


def test_results_of_an_attempt_that_did_not_end_the_job_are_removed(  # type: ignore[no-untyped-def]
    reconcile, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    job_id = layout.new_job_id()
    _upload_job(local_store.store, job_id)
    states.advance(job_id, JobStatus.QUEUED)
    states.advance(job_id, JobStatus.STARTED)
    stale = layout.result_key(job_id, "srt", 1)  # written by attempt 1, taken for dead
    put_bytes(local_store.store, JOBS_BUCKET, stale, b"stale", content_type="text/plain")
    states.requeue(job_id, "its worker died")
    states.advance(job_id, JobStatus.STARTED)
    published = layout.result_key(job_id, "srt", 2)
    put_bytes(local_store.store, JOBS_BUCKET, published, b"1\n", content_type="text/plain")
    states.advance(job_id, JobStatus.FINISHED, attempt=2, outputs=f'{{"srt": "{published}"}}')
    _webhook_went(redis_conn, job_id)
    assert reconcile().counts == {"unpublished_removed": 1}
    assert local_store.store.stat(JOBS_BUCKET, stale) is None
    assert local_store.store.stat(JOBS_BUCKET, published) is not None


def test_a_started_job_whose_shards_are_queued_is_left_to_them(  # type: ignore[no-untyped-def]
    reconcile, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    """A long job split into shards: its own RQ job has ended, and its shards wait in the queue
    behind other work. It is not lost; once RQ has none of its shards, they are, and they (only
    they: not the whole job again, from zero) are queued again (issue 32)."""
    job_id = _queued_job(local_store.store, states)
    started = states.advance(job_id, JobStatus.STARTED)
    assert started is not None
    assert ShardStates(redis_conn, job_id, started.attempts).begin(3, 30.0, {0: 10.0})
    jobqueue.enqueue_shards(redis_conn, job_id, started.attempts, [1, 2], None, SETTINGS)
    record = states.read(job_id)
    assert record is not None
    assert record.shards is not None
    assert (record.shards.total, record.shards.done) == (3, 1)
    assert reconcile().counts == {}
    for index in (1, 2):
        jobqueue.drop(redis_conn, keys.shard_job_id(job_id, started.attempts, index))
    assert reconcile().counts == {"shards_requeued": 1}
    shards = [keys.shard_job_id(job_id, started.attempts, index) for index in (1, 2)]
    assert all(jobqueue.waiting(redis_conn, shard) for shard in shards)
    assert states.read(job_id).attempts == started.attempts  # the same attempt goes on


def test_work_popped_and_lost_is_queued_again_by_the_workers_reaper(  # type: ignore[no-untyped-def]
    local_store, redis_conn: redis.Redis, states: JobStates
) -> None:
    """Issue 32, finding 1, as ``recovery.requeue_lost`` (each worker's reaper) sees it: a job
    popped off its queue (BLPOP, as a worker on two queues takes it) by a worker that died before
    it started it, and a split job's shard lost the same way, are in no RQ list; once they have
    not moved for LOST_AFTER, they are queued again, and only they."""
    ending = Ending(redis_conn, states, local_store.store, SETTINGS)
    lost, waiting = _queued_job(local_store.store, states), _queued_job(local_store.store, states)
    for job_id in (lost, waiting):
        jobqueue.enqueue(redis_conn, job_id, None, SETTINGS)
    queue = Queue(keys.QUEUE, connection=redis_conn)
    assert redis_conn.lrem(queue.key, 1, lost) == 1  # taken off the list, as BLPOP does, and never started
    split = _queued_job(local_store.store, states)
    started = states.advance(split, JobStatus.STARTED)
    assert started is not None
    assert ShardStates(redis_conn, split, started.attempts).begin(2, 20.0, {})
    jobqueue.enqueue_shards(redis_conn, split, started.attempts, [0, 1], None, SETTINGS)
    shard = keys.shard_job_id(split, started.attempts, 1)
    shards = Queue(keys.shard_queue_for(None), connection=redis_conn)
    assert redis_conn.lrem(shards.key, 1, shard) == 1
    # Finding 4: its worker took it, then gave up while Redis was away ("left"): RQ counts the shard
    # finished, and the gate still names the live worker.
    gates = ShardStates(redis_conn, split, started.attempts)
    assert gates.start(1, "alive-worker", lambda worker: True, 2) == "ok:1"
    assert not jobqueue.waiting(redis_conn, lost)  # RQ still calls it "queued"
    assert Job.fetch(lost, connection=redis_conn).get_status() == "queued"

    assert recovery.requeue_lost(ending, now=time.time()) == []  # not idle for LOST_AFTER yet
    assert sorted(recovery.requeue_lost(ending, now=time.time() + 301)) == sorted([lost])  # shard 0 still waits
    assert jobqueue.waiting(redis_conn, lost)
    redis_conn.lrem(shards.key, 1, keys.shard_job_id(split, started.attempts, 0))  # now no shard is in RQ
    assert recovery.requeue_lost(ending, now=time.time() + 301) == [split]
    assert jobqueue.waiting(redis_conn, shard)
    assert gates.start(1, "next-worker", lambda worker: True, 2) == "ok:1"  # free, its lost start given back
    assert states.read(split).attempts == started.attempts  # not split again from zero
    assert queue.get_job_ids().count(waiting) == 1  # what RQ held is left as it was


def test_a_move_never_writes_over_a_file_a_person_put_at_its_target(  # type: ignore[no-untyped-def]
    reconcile, route, local_store, states: JobStates
) -> None:
    """Issue 31, the third attack: INBOX_AFTER=move replaced a person's done/talks/a.mp3 with the drop."""
    store = local_store.store
    _drop(store, "talks/a.mp3", b"a" * 1000)
    for record in local_store.records:
        states._redis.rpush(keys.EVENTS, record)
    route()
    job_id = _finish_inbox_job(store, states, "talks/a.mp3")
    _drop(store, "done/talks/a.mp3", b"a person's own file")
    limits = Limits(3600, 300, 7, inbox_after="move", inbox_move_prefix="done/")
    assert reconcile(limits, after=0).counts == {"inbox_moved": 1}
    assert get_bytes(store, INBOX_BUCKET, "done/talks/a.mp3") == b"a person's own file"
    assert get_bytes(store, INBOX_BUCKET, f"done/talks/a.{job_id[-8:]}.mp3") == b"a" * 1000
    assert store.stat(INBOX_BUCKET, "talks/a.mp3") is None
