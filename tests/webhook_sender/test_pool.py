"""``webhook_sender.pool`` against the RQ this project installs, with real forked RQ workers on a
real Redis. Found by CI: a sender SIGTERMed with its process group now and then never exited."""

import os
import signal
import socket
from collections.abc import Iterator

import pytest
import redis
from rq import Worker as RQWorker

from tests.helpers import wait_until
from webhook_sender.pool import Worker, WorkerPool

QUEUE = "transcribe:test-pool"


@pytest.fixture
def pool(redis_conn: redis.Redis) -> Iterator[WorkerPool]:
    """A pool as ``start`` leaves it: started, its handlers set (and this process's given back)."""
    pool = WorkerPool([QUEUE], connection=redis_conn, num_workers=1)
    pool.status = pool.Status.STARTED
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    pool._install_signal_handlers()
    try:
        yield pool
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        _kill_left(pool)


def _kill_left(pool: WorkerPool) -> None:
    """A worker that a failing test leaves would keep pytest from exiting (multiprocessing joins it)."""
    for data in pool.worker_dict.values():
        data.process.kill()
        data.process.join()


def _exit_code(pid: int) -> int:
    ended: list[int] = []

    def reaped() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        ended.extend([status] if done else [])
        return bool(done)

    wait_until(reaped, timeout=120)
    return os.waitstatus_to_exitcode(ended[0])


def test_a_worker_started_again_while_the_pool_was_told_to_stop_is_stopped_too(
    pool: WorkerPool, redis_conn: redis.Redis
) -> None:
    """The race, in the order it happens: the group's SIGTERM kills a worker, the pool's loop
    starts it again, and the pool's handler runs in between (RQ's stops only the workers it knew,
    then waits for the new one for ever)."""
    pool.request_stop(signal.SIGTERM)
    pool.start_worker(burst=False)
    wait_until(lambda: RQWorker.count(connection=redis_conn) == 1, timeout=120)  # it works, till told
    assert wait_until(pool.all_workers_have_stopped, timeout=120)
    assert RQWorker.count(connection=redis_conn) == 0  # it went as a worker goes: unregistered


class _LosesItsFirstStop(Worker):
    """A worker whose first stop is lost, as RQ's can be (its handler's ``StopRequested`` raised
    inside something that swallows it)."""

    lost = False

    def request_stop(self, signum, frame) -> None:  # type: ignore[no-untyped-def]
        if not self.lost:
            self.lost = True
            return
        super().request_stop(signum, frame)


@pytest.fixture
def forgetful(redis_conn: redis.Redis) -> Iterator[WorkerPool]:
    """A started pool with one idle worker that will lose its first stop."""
    pool = WorkerPool([QUEUE], connection=redis_conn, num_workers=1, worker_class=_LosesItsFirstStop)
    pool.status = pool.Status.STARTED
    pool.start_worker(burst=False)
    try:
        wait_until(lambda: RQWorker.count(connection=redis_conn) == 1, timeout=120)
        wait_until(lambda: RQWorker.all(connection=redis_conn)[0].get_state() == "idle", timeout=120)
        yield pool
    finally:
        _kill_left(pool)


def test_an_idle_worker_that_lost_its_stop_is_told_again(forgetful: WorkerPool, redis_conn: redis.Redis) -> None:
    forgetful.request_stop(signal.SIGTERM)
    assert wait_until(forgetful.all_workers_have_stopped, timeout=120)
    assert RQWorker.count(connection=redis_conn) == 0


def test_a_pool_stops_while_redis_cannot_answer_it(forgetful: WorkerPool) -> None:
    """Whether a worker is idle is asked of Redis. While Redis is away (a restart, say), the pool
    does not die of the question: it takes the worker for idle, and tells it again."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    forgetful.connection = redis.Redis(port=port, socket_connect_timeout=1)  # nothing listens there
    forgetful.request_stop(signal.SIGTERM)
    assert wait_until(forgetful.all_workers_have_stopped, timeout=120)


class _ToldWhileStarting(Worker):
    """A worker that gets the pool's stop signal once registered, before its own handlers are set."""

    def bootstrap(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().bootstrap(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)


def test_a_worker_told_to_stop_while_it_starts_stops_as_a_worker_does(
    pool: WorkerPool, redis_conn: redis.Redis, redis_server: str
) -> None:
    """A worker forked a moment before the signal runs the pool's handler, which it inherited. It
    stops on its loop's first turn: unregistered, its scheduler stopped and its lock given back, and
    nothing asked of its siblings or of the pool."""
    child = os.fork()
    if child == 0:  # pragma: no cover - the forked worker
        try:
            worker = _ToldWhileStarting([QUEUE], connection=redis.Redis.from_url(redis_server))
            worker.work(with_scheduler=True, logging_level="WARNING")
            os._exit(0)
        finally:
            os._exit(3)
    assert _exit_code(child) == 0
    assert RQWorker.count(connection=redis_conn) == 0
    assert not redis_conn.exists(f"rq:scheduler-lock:{QUEUE}")
    assert pool.status == pool.Status.STARTED  # the pool itself was not told anything
