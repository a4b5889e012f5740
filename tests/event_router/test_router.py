"""The router on a real Redis, with events replayed exactly as the local store announced them."""

import time

import pytest
import redis
from rq import Queue

from embedded.redis_server import free_port
from event_router.router import Router
from event_router.settings import RouterSettings
from tests.conftest import INBOX_BUCKET, JOBS_BUCKET
from tests.helpers import wait_until
from transcribe_common import deadletters, keys, layout
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus, Manifest, UrlSource
from transcribe_common.store.base import get_json, put_bytes, put_model
from transcribe_common.store.s3 import S3Store


@pytest.fixture
def router(redis_conn: redis.Redis, local_store) -> Router:  # type: ignore[no-untyped-def]
    settings = RouterSettings(minio_bucket=JOBS_BUCKET, minio_inbox_bucket=INBOX_BUCKET)
    return Router(settings, redis_conn, local_store.store)


def drain(router: Router) -> None:
    while router.run_once(timeout=0.05):
        pass


def test_a_manifest_event_delivered_twice_makes_one_job(router: Router, local_store, redis_conn) -> None:  # type: ignore[no-untyped-def]
    job_id = layout.new_job_id()
    manifest = Manifest(job_id=job_id, origin="api", source=UrlSource(url="http://example.org/a.mp3"))
    put_model(local_store.store, JOBS_BUCKET, layout.manifest_key(job_id), manifest)
    (record,) = local_store.records
    redis_conn.rpush(keys.EVENTS, record, record)

    drain(router)

    queue = Queue(keys.QUEUE, connection=redis_conn)
    assert queue.job_ids == [job_id]
    assert queue.fetch_job(job_id).func_name == keys.WORKER_FUNCTION  # type: ignore[union-attr]
    assert redis_conn.llen(keys.EVENTS_PROCESSING) == 0


def test_an_inbox_drop_becomes_a_job_with_options_from_metadata(router: Router, local_store, redis_conn) -> None:  # type: ignore[no-untyped-def]
    meta = {"language": "id", "output": "vtt", "db-id": "991", "callback-url": "http://hooks.test/x"}
    info = put_bytes(local_store.store, INBOX_BUCKET, "talks/a b.mp3", b"ID3", content_type="audio/mpeg", metadata=meta)
    redis_conn.rpush(keys.EVENTS, *local_store.records, *local_store.records)

    drain(router)

    job_id = layout.inbox_job_id(INBOX_BUCKET, "talks/a b.mp3", info.etag)
    assert Queue(keys.QUEUE, connection=redis_conn).job_ids == [job_id]
    manifest = Manifest.model_validate(get_json(local_store.store, JOBS_BUCKET, layout.manifest_key(job_id)))
    assert (manifest.options.language, manifest.options.output, manifest.db_id) == ("id", ["vtt"], "991")
    assert manifest.beside is not None
    assert manifest.beside.key == "talks/a b.mp3"
    assert manifest.error is None


def test_bad_metadata_makes_a_job_that_says_what_is_wrong(router: Router, local_store, redis_conn) -> None:  # type: ignore[no-untyped-def]
    info = put_bytes(local_store.store, INBOX_BUCKET, "x.mp3", b"ID3", content_type="audio/mpeg",
                     metadata={"language": "klingon"})  # fmt: skip
    redis_conn.rpush(keys.EVENTS, *local_store.records)
    drain(router)
    job_id = layout.inbox_job_id(INBOX_BUCKET, "x.mp3", info.etag)
    manifest = Manifest.model_validate(get_json(local_store.store, JOBS_BUCKET, layout.manifest_key(job_id)))
    assert manifest.error is not None
    assert "unknown language code 'klingon'" in manifest.error


def test_transcripts_written_into_the_inbox_are_not_new_drops(router: Router, local_store, redis_conn) -> None:  # type: ignore[no-untyped-def]
    put_bytes(local_store.store, INBOX_BUCKET, "a.srt", b"1", content_type="text/plain",
              metadata={layout.OUTPUT_MARKER: "j"})  # fmt: skip
    redis_conn.rpush(keys.EVENTS, *local_store.records)
    drain(router)
    assert Queue(keys.QUEUE, connection=redis_conn).count == 0


def test_events_left_in_flight_by_a_dead_router_are_recovered(router: Router, local_store, redis_conn) -> None:  # type: ignore[no-untyped-def]
    job_id = layout.new_job_id()
    manifest = Manifest(job_id=job_id, origin="api", source=UrlSource(url="http://example.org/a.mp3"))
    put_model(local_store.store, JOBS_BUCKET, layout.manifest_key(job_id), manifest)
    # The dead router had moved the event and even marked the job queued, but never enqueued it.
    redis_conn.rpush(keys.EVENTS_PROCESSING, local_store.records[0])
    JobStates(redis_conn, local_store.store, JOBS_BUCKET).advance(job_id, JobStatus.QUEUED)

    router.recover()

    assert Queue(keys.QUEUE, connection=redis_conn).job_ids == [job_id]
    assert redis_conn.llen(keys.EVENTS_PROCESSING) == 0


def test_garbage_is_kept_aside_not_lost(router: Router, redis_conn: redis.Redis) -> None:
    redis_conn.rpush(keys.EVENTS, b"{not json")
    drain(router)
    assert [letter.event for letter in deadletters.letters(redis_conn)] == ["{not json"]
    assert redis_conn.llen(keys.EVENTS_PROCESSING) == 0


def test_a_job_naming_a_model_goes_to_that_model_s_queue(router: Router, local_store, redis_conn) -> None:  # type: ignore[no-untyped-def]
    job_id = layout.new_job_id()
    manifest = Manifest(
        job_id=job_id, origin="api", source=UrlSource(url="http://example.org/a.mp3"), options={"model": "base"}
    )
    put_model(local_store.store, JOBS_BUCKET, layout.manifest_key(job_id), manifest, metadata={"model": "base"})
    redis_conn.rpush(keys.EVENTS, *local_store.records)
    drain(router)
    assert Queue("transcribe:base", connection=redis_conn).job_ids == [job_id]
    assert Queue(keys.QUEUE, connection=redis_conn).count == 0


def test_a_backlog_is_taken_in_batches_and_each_job_is_enqueued_once(router: Router, local_store, redis_conn) -> None:  # type: ignore[no-untyped-def]
    """250 manifest events waiting at once, each delivered twice, with an unreadable event, an
    inbox drop and a model's job among them: the router takes them in batches (one gate round trip,
    one transaction), and the odd ones one at a time; nothing is lost or doubled."""
    job_ids = [layout.new_job_id() for _ in range(250)]
    for job_id in job_ids:
        manifest = Manifest(job_id=job_id, origin="api", source=UrlSource(url="http://example.org/a.mp3"))
        put_model(local_store.store, JOBS_BUCKET, layout.manifest_key(job_id), manifest)
    named = layout.new_job_id()
    manifest = Manifest(job_id=named, origin="api", source=UrlSource(url="http://example.org/b.mp3"))
    put_model(local_store.store, JOBS_BUCKET, layout.manifest_key(named), manifest, metadata={"model": "base"})
    put_bytes(local_store.store, INBOX_BUCKET, "talks/backlog.mp3", b"ID3", content_type="audio/mpeg")
    records = list(local_store.records)
    redis_conn.rpush(keys.EVENTS, *records[:100], b"{not json", *records[100:], *records)

    drain(router)

    queued = Queue(keys.QUEUE, connection=redis_conn).job_ids
    assert set(job_ids) <= set(queued)
    assert len(queued) == len(set(queued)) == 251  # the 250 and the inbox drop, once each
    assert Queue("transcribe:base", connection=redis_conn).job_ids == [named]
    assert [letter.event for letter in deadletters.letters(redis_conn)] == ["{not json"]
    assert redis_conn.llen(keys.EVENTS_PROCESSING) == 0
    assert redis_conn.llen(keys.EVENTS) == 0
    states = JobStates(redis_conn, local_store.store, JOBS_BUCKET)
    assert {states.read(job_id).status for job_id in job_ids} == {JobStatus.QUEUED}  # type: ignore[union-attr]


def test_an_event_that_keeps_failing_is_set_aside_and_the_events_behind_it_go_on(
    local_store,
    redis_conn: redis.Redis,  # type: ignore[no-untyped-def]
) -> None:
    """Hole 4 of issue 16: an inbox drop whose handling needs a store that does not answer used to
    be retried for ever, one event at a time, with every event behind it waiting."""
    put_bytes(local_store.store, INBOX_BUCKET, "talks/stuck.mp3", b"ID3", content_type="audio/mpeg")
    job_id = layout.new_job_id()
    manifest = Manifest(job_id=job_id, origin="api", source=UrlSource(url="http://example.org/a.mp3"))
    put_model(local_store.store, JOBS_BUCKET, layout.manifest_key(job_id), manifest)
    inbox_event, manifest_event = local_store.records
    redis_conn.rpush(keys.EVENTS, inbox_event, manifest_event)
    settings = RouterSettings(minio_bucket=JOBS_BUCKET, minio_inbox_bucket=INBOX_BUCKET, event_attempts=2)
    nowhere = S3Store(f"127.0.0.1:{free_port()}", "testing", "testing")  # a store that is down
    router = Router(settings, redis_conn, nowhere)

    drain(router)
    assert Queue(keys.QUEUE, connection=redis_conn).job_ids == [job_id]  # not held up
    assert redis_conn.zcard(keys.EVENTS_RETRY) == 1

    wait_until(lambda: router.run_once(timeout=0.05) or deadletters.count(redis_conn) == 1, timeout=120)
    (letter,) = deadletters.letters(redis_conn)
    assert letter.event == inbox_event
    assert letter.transient
    assert letter.attempts == 2
    assert "object store unreachable" in letter.error
    assert redis_conn.llen(keys.EVENTS_PROCESSING) == redis_conn.zcard(keys.EVENTS_RETRY) == 0
    assert deadletters.summary(redis_conn)["dead_letters"] == 1

    # Once the store is back, the janitor's replay hands it to a router that can handle it.
    assert deadletters.replay(redis_conn, everything=False) == 1
    drain(Router(settings, redis_conn, local_store.store))
    assert deadletters.count(redis_conn) == 0
    assert len(Queue(keys.QUEUE, connection=redis_conn).job_ids) == 2


def test_an_event_that_cannot_succeed_is_a_dead_letter_at_once(router: Router, redis_conn: redis.Redis) -> None:
    redis_conn.rpush(keys.EVENTS, "not an event")
    drain(router)
    (letter,) = deadletters.letters(redis_conn)
    assert (letter.event, letter.transient) == ("not an event", False)
    assert deadletters.replay(redis_conn, everything=False) == 0  # the janitor leaves it for a human
    assert deadletters.replay(redis_conn, everything=True) == 1  # --replay-dead, once it is fixed


def test_an_event_put_off_then_handled_in_a_batch_leaves_no_count_of_tries(
    router: Router, local_store, redis_conn
) -> None:  # type: ignore[no-untyped-def]
    """Its tries are counted while it is put off; handled in a batch, it forgets them (they grew
    by one entry per event ever put off)."""
    job_ids = [layout.new_job_id() for _ in range(2)]
    for job_id in job_ids:
        manifest = Manifest(job_id=job_id, origin="api", source=UrlSource(url="http://example.org/a.mp3"))
        put_model(local_store.store, JOBS_BUCKET, layout.manifest_key(job_id), manifest)
    put_off, other = local_store.records
    assert not deadletters.put_off(redis_conn, put_off, "the store was away", 8, 0.001)
    assert redis_conn.hlen(keys.EVENT_TRIES) == 1
    wait_until(lambda: deadletters.release_due(redis_conn) == 1, timeout=30)
    redis_conn.rpush(keys.EVENTS, other)  # a backlog of two: one batch
    drain(router)
    assert sorted(Queue(keys.QUEUE, connection=redis_conn).job_ids) == sorted(job_ids)
    assert redis_conn.hlen(keys.EVENT_TRIES) == 0


def test_a_drop_whose_job_ended_queues_the_rewrite_of_its_outputs_not_a_transcription(  # type: ignore[no-untyped-def]
    router: Router, local_store, redis_conn, states: JobStates
) -> None:
    """The same content dropped again once its job has ended (its transcript deleted, say): a
    small job at the front of the default queue writes what is missing beside it."""
    info = put_bytes(local_store.store, INBOX_BUCKET, "talks/a.mp3", b"ID3", content_type="audio/mpeg")
    redis_conn.rpush(keys.EVENTS, *local_store.records)
    drain(router)
    job_id = layout.inbox_job_id(INBOX_BUCKET, "talks/a.mp3", info.etag)
    queue = Queue(keys.QUEUE, connection=redis_conn)
    redis_conn.rpush(keys.EVENTS, *local_store.records)  # while it is queued: a duplicate
    drain(router)
    assert queue.job_ids == [job_id]

    queue.empty()  # a worker took it
    assert states.advance(job_id, JobStatus.STARTED) is not None
    assert states.advance(job_id, JobStatus.FINISHED, attempt=1) is not None
    queue.enqueue_call(keys.WORKER_FUNCTION, args=(job_id,), job_id="f" + "0" * 31)  # a transcription waiting
    redis_conn.rpush(keys.EVENTS, local_store.records[0])
    drain(router)
    assert queue.job_ids == [keys.beside_job_id(job_id), "f" + "0" * 31]  # in front of it
    assert queue.fetch_job(keys.beside_job_id(job_id)).func_name == keys.BESIDE_FUNCTION  # type: ignore[union-attr]
    assert states.read(job_id).status == JobStatus.FINISHED  # type: ignore[union-attr]

    # Its live state expired (STATE_TTL): status.json says it ended, and the same is done.
    queue.empty()
    redis_conn.delete(keys.job(job_id))
    redis_conn.rpush(keys.EVENTS, local_store.records[0])
    drain(router)
    assert queue.job_ids == [keys.beside_job_id(job_id)]
    assert states.read(job_id) is None  # not queued again


def test_an_inbox_drop_cannot_choose_where_its_job_is_listed(router: Router, local_store, redis_conn) -> None:  # type: ignore[no-untyped-def]
    """The review's finding: an inbox drop's metadata is the dropper's. A ``created`` in it is not
    read: the job is listed at the store's time, and NaN or infinity cannot stall its routing."""
    for n, forged in enumerate(("nan", "1e300", "-inf")):
        name = f"drop{n}.mp3"
        info = put_bytes(local_store.store, INBOX_BUCKET, name, b"ID3" + bytes(64), metadata={"created": forged})
        redis_conn.rpush(keys.EVENTS, local_store.records[-1])
        drain(router)
        job_id = layout.inbox_job_id(INBOX_BUCKET, name, info.etag)
        assert redis_conn.hget(keys.job(job_id), "status") == b"queued"
        assert job_id in Queue(keys.QUEUE, connection=redis_conn).job_ids
        made = redis_conn.zscore(keys.JOBS_CREATED, job_id)
        assert made is not None
        assert abs(made - time.time()) < 3600  # the store's time, not the dropper's


def test_a_drop_for_a_model_no_worker_serves_says_why_it_waits(router: Router, local_store, redis_conn) -> None:  # type: ignore[no-untyped-def]
    """A new user's inbox folder named model base on a stack serving tiny.en: the job sat
    'queued' for MODEL_WAIT with no word of why."""
    info = put_bytes(local_store.store, INBOX_BUCKET, "rapat/a.mp3", b"ID3", content_type="audio/mpeg",
                     metadata={"model": "large-v9"})  # fmt: skip
    redis_conn.rpush(keys.EVENTS, *local_store.records)
    drain(router)
    job_id = layout.inbox_job_id(INBOX_BUCKET, "rapat/a.mp3", info.etag)
    record = router.states.read(job_id)
    assert record is not None
    assert record.status == JobStatus.QUEUED
    assert record.warnings == [
        "waiting for a worker that serves model 'large-v9': none runs now (served: none); the job fails once it "
        "has waited MODEL_WAIT (10 minutes by default) unless one starts"
    ]
