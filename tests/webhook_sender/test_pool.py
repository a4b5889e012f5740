"""``webhook_sender.pool`` against the RQ this project installs, with real forked RQ workers on a
real Redis. Found by CI: a sender SIGTERMed with its process group now and then never exited."""

import os
import signal

import redis
from rq import Worker

from tests.helpers import wait_until
from webhook_sender.pool import WorkerPool

QUEUE = "transcribe:test-pool"


def test_a_worker_started_again_while_the_pool_was_told_to_stop_is_stopped_too(redis_conn: redis.Redis) -> None:
    """The race, in the order it happens: the group's SIGTERM kills a worker, the pool's loop
    starts it again, and the pool's handler runs in between (RQ's stops only the workers it knew,
    then waits for the new one for ever)."""
    pool = WorkerPool([QUEUE], connection=redis_conn, num_workers=1)
    pool.status = pool.Status.STARTED
    pool.request_stop(signal.SIGTERM)
    pool.start_worker(burst=False)
    wait_until(lambda: Worker.count(connection=redis_conn) == 1, timeout=120)  # it works, till told
    assert wait_until(pool.all_workers_have_stopped, timeout=120)
    assert Worker.count(connection=redis_conn) == 0  # it went as a worker goes: unregistered


def test_a_worker_told_to_stop_before_it_set_its_own_handlers_leaves(redis_conn: redis.Redis) -> None:
    """A worker forked a moment before the signal runs the pool's handler, which it inherited:
    it leaves at once (it has no job yet), and asks nothing of its siblings."""
    pool = WorkerPool([QUEUE], connection=redis_conn, num_workers=1)
    pool.status = pool.Status.STARTED
    child = os.fork()
    if child == 0:  # pragma: no cover - the forked worker
        pool.request_stop(signal.SIGINT)
        os._exit(3)  # not reached when it leaves as it should
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pool.status == pool.Status.STARTED  # the pool itself was not told anything
