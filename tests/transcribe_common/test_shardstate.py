"""The shard gates on a real Redis: one holder per shard, starts counted, one join, one end."""

from __future__ import annotations

import redis

from transcribe_common import keys, layout
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus
from transcribe_common.shardstate import ShardStates


def started_job(states: JobStates) -> tuple[str, int]:
    job_id = layout.new_job_id()
    states.advance(job_id, JobStatus.QUEUED)
    record = states.advance(job_id, JobStatus.STARTED)
    assert record is not None
    return job_id, record.attempts


def test_a_shard_runs_on_one_live_worker_and_its_dead_holder_is_replaced(
    redis_conn: redis.Redis, states: JobStates
) -> None:
    job_id, attempt = started_job(states)
    gates = ShardStates(redis_conn, job_id, attempt)
    assert gates.begin(2, 20.0, {})
    alive = {"w1": True, "w2": True}
    assert gates.start(0, "w1", alive.__getitem__, most=2) == "ok:1"
    assert gates.start(0, "w2", alive.__getitem__, most=2) == "held"  # a duplicate while w1 runs it
    alive["w1"] = False
    assert gates.start(0, "w2", alive.__getitem__, most=2) == "ok:2"  # w1 died in it
    assert gates.start(0, "w3", lambda _: False, most=2).startswith("exhausted")
    assert gates.done(0, 10.0, "w1") == "held"  # the stale holder's result is not counted
    assert gates.done(0, 10.0, "w2") == "ok"
    assert gates.start(0, "w1", alive.__getitem__, most=2) == "done"
    assert states.read(job_id).progress == 50.0  # type: ignore[union-attr]


def test_the_last_shard_joins_once_and_the_job_is_ended_once(redis_conn: redis.Redis, states: JobStates) -> None:
    job_id, attempt = started_job(states)
    gates = ShardStates(redis_conn, job_id, attempt)
    assert gates.begin(2, 20.0, {1: 10.0})  # shard 1 is silent: done from the start
    assert not gates.take_join("w1", lambda _: True)  # a shard is still to do
    assert gates.start(0, "w1", lambda _: True, most=2) == "ok:1"
    assert gates.done(0, 10.0, "w1") == "last"
    assert gates.take_join("w1", lambda _: True)
    assert not gates.take_join("w2", lambda _: True)  # w1 joins, and lives
    assert gates.end_once("w1")
    assert not gates.end_once("w2")
    record = states.read(job_id)
    assert record is not None
    assert record.shards is not None
    assert (record.shards.total, record.shards.done) == (2, 2)


def test_a_shard_of_a_cancelled_or_restarted_job_is_refused(redis_conn: redis.Redis, states: JobStates) -> None:
    job_id, attempt = started_job(states)
    gates = ShardStates(redis_conn, job_id, attempt)
    assert gates.begin(1, 10.0, {})
    states.advance(job_id, JobStatus.CANCELLED)
    assert gates.start(0, "w1", lambda _: True, most=2) == "ended"
    assert not ShardStates(redis_conn, job_id, attempt + 1).begin(1, 10.0, {})
    assert redis_conn.ttl(keys.shards(job_id, attempt)) > 0
