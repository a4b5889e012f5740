"""The janitor's reconciliation of the jobs bucket with Redis, on a real Redis and a local store;
a re-announced manifest is taken by the real router."""

from __future__ import annotations

import time

import pytest
import redis

from event_router.router import Router
from event_router.settings import RouterSettings
from janitor.reconcile import DAY, Limits, Reconciler
from tests.conftest import INBOX_BUCKET, JOBS_BUCKET
from transcribe_common import keys, layout
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus, Manifest, ObjectSource, StatusRecord
from transcribe_common.store.base import get_json, put_bytes, put_model

LIMITS = Limits(orphan_after=3600, lost_after=300, retention_days=7)
LATER = 2 * 3600  # seconds: past the orphan and lost limits, within retention


def _upload_job(store, job_id: str, *, with_input: bool = True, with_manifest: bool = True) -> None:  # type: ignore[no-untyped-def]
    key = layout.input_key(job_id, "a.mp3")
    if with_input:
        put_bytes(store, JOBS_BUCKET, key, b"x" * 1000, content_type="audio/mpeg")
    if with_manifest:
        manifest = Manifest(job_id=job_id, origin="api", source=ObjectSource(bucket=JOBS_BUCKET, key=key))
        put_model(store, JOBS_BUCKET, layout.manifest_key(job_id), manifest)


@pytest.fixture
def reconcile(redis_conn: redis.Redis, local_store):  # type: ignore[no-untyped-def]
    def run(limits: Limits = LIMITS, after: float = LATER):  # type: ignore[no-untyped-def]
        return Reconciler(redis_conn, local_store.store, JOBS_BUCKET, limits).run(now=time.time() + after)

    return run


def test_an_input_without_a_manifest_is_removed_once_old(reconcile, local_store) -> None:  # type: ignore[no-untyped-def]
    job_id = layout.new_job_id()
    _upload_job(local_store.store, job_id, with_manifest=False)
    assert reconcile(after=60).counts == {}  # young: perhaps its request is still running
    report = reconcile()
    assert report.counts == {"orphans_removed": 1}
    assert report.bytes_freed == 1000
    assert list(local_store.store.list(JOBS_BUCKET)) == []


def test_a_manifest_whose_input_is_missing_fails_its_job(reconcile, local_store, states: JobStates) -> None:  # type: ignore[no-untyped-def]
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
    assert reconcile().counts == {}  # ended: nothing more to do


def test_a_manifest_whose_event_was_lost_is_announced_again_and_routed(
    reconcile, local_store, redis_conn: redis.Redis, states: JobStates
) -> None:  # type: ignore[no-untyped-def]
    job_id = layout.new_job_id()
    _upload_job(local_store.store, job_id)  # its events went to local_store.records, never to Redis
    assert redis_conn.llen(keys.EVENTS) == 0
    assert reconcile(after=60).counts == {}  # young: its event may still be on the way
    assert reconcile().counts == {"reannounced": 1}
    router = Router(
        RouterSettings(minio_bucket=JOBS_BUCKET, minio_inbox_bucket=INBOX_BUCKET), redis_conn, local_store.store
    )
    while router.run_once(timeout=0.05):
        pass
    record = states.read(job_id)
    assert record is not None
    assert record.status == JobStatus.QUEUED
    assert reconcile().counts == {}  # it has a status now


def test_ended_jobs_go_after_the_retention_and_started_ones_are_left(
    reconcile, local_store, states: JobStates, redis_conn: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    ended, running = layout.new_job_id(), layout.new_job_id()
    for job_id in (ended, running):
        _upload_job(local_store.store, job_id)
        states.advance(job_id, JobStatus.QUEUED)
        states.advance(job_id, JobStatus.STARTED)
    states.advance(ended, JobStatus.FINISHED)
    assert reconcile().counts == {}  # within 7 days
    assert reconcile(Limits(3600, 300, retention_days=0), after=400 * DAY).counts == {}  # 0 keeps forever
    report = reconcile(after=8 * DAY)
    assert report.counts == {"expired_removed": 1}
    assert not list(local_store.store.list(JOBS_BUCKET, f"{ended}/"))
    assert not redis_conn.exists(keys.job(ended))
    assert list(local_store.store.list(JOBS_BUCKET, f"{running}/"))  # started: the worker's, or the reaper's


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
