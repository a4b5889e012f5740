"""A shard's join when its job ends under it, in-process: a real Redis, a local store and tiny.en."""

from __future__ import annotations

import logging

import pytest
import redis
from faster_whisper import WhisperModel

from gpu_worker.job import WorkerContext
from gpu_worker.settings import WorkerSettings
from gpu_worker.shard_job import ShardRun
from gpu_worker.sharding import Shard, ShardPlan
from gpu_worker.whisper import place
from tests.conftest import INBOX_BUCKET, JOBS_BUCKET, Published
from transcribe_common import layout
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus, Manifest, ObjectSource
from transcribe_common.shardstate import ShardStates
from transcribe_common.store.base import delete_prefix, put_model


class DeletedWhileRead:
    """The local store, with the job deleted (as ``DELETE /v1/jobs/{id}?delete_objects=true`` does)
    just before the join reads its first shard: the window the test is about."""

    def __init__(self, store, states: JobStates, job_id: str) -> None:  # type: ignore[no-untyped-def]
        self.store, self.states, self.job_id = store, states, job_id

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def iter_bytes(self, bucket: str, key: str):  # type: ignore[no-untyped-def]
        if key.endswith("/0.json") and self.states.advance(self.job_id, JobStatus.DELETED) is not None:
            delete_prefix(self.store, JOBS_BUCKET, layout.job_prefix(self.job_id))
        return self.store.iter_bytes(bucket, key)


def test_a_job_deleted_while_its_shards_are_joined_stays_deleted_and_is_no_failure(
    redis_server: str,
    redis_conn: redis.Redis,
    local_store: Published,
    tiny: dict[str, WhisperModel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 32: the join's failure path ran (an error logged, the join counted ``failed``)."""
    states = JobStates(redis_conn, local_store.store, JOBS_BUCKET)
    job_id = layout.new_job_id()
    manifest = Manifest(job_id=job_id, origin="inbox", source=ObjectSource(bucket=INBOX_BUCKET, key="talk.wav"))
    put_model(local_store.store, JOBS_BUCKET, layout.manifest_key(job_id), manifest)
    states.advance(job_id, JobStatus.QUEUED)
    states.advance(job_id, JobStatus.STARTED)
    shards = [Shard(index=i, channel=0, start=10.0 * i, end=10.0 * (i + 1), speech=True) for i in range(2)]
    plan = ShardPlan(
        attempt=1, model="tiny.en", language="en", language_probability=1.0, duration=20.0, channels=1,
        multichannel=False, declared=None, shards=shards,
    )  # fmt: skip
    gates = ShardStates(redis_conn, job_id, 1)
    assert gates.begin(2, 20.0, {})
    for shard in shards:
        assert gates.start(shard.index, "w", lambda _: True, 2).startswith("ok")
        put_model(local_store.store, JOBS_BUCKET, layout.shard_key(job_id, 1, f"{shard.index}.json"), shard)
        gates.done(shard.index, shard.seconds, "w")
    store = DeletedWhileRead(local_store.store, states, job_id)
    settings = WorkerSettings(redis_url=redis_server, minio_bucket=JOBS_BUCKET, worker_name="joiner")
    context = WorkerContext(settings, redis_conn, store, states, tiny, place("cpu", "default", None))  # type: ignore[arg-type]
    run = ShardRun(context, job_id, 1, 1)
    run.plan = plan
    with caplog.at_level(logging.INFO):
        outcome = run.join(manifest)
    assert outcome == "skipped"
    record = states.read(job_id)
    assert record is not None
    assert record.status == JobStatus.DELETED
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert list(local_store.store.list(JOBS_BUCKET, prefix=layout.job_prefix(job_id))) == []
