"""RQ's workers on threads of one process: the only subclass of an RQ worker in the project.

RQ's default worker forks a work horse per job. A fork of a process that has loaded a CTranslate2
model hangs inside CTranslate2, and a forking pool holds a process per slot. So the GPU worker and
the webhook sender run RQ's ``SimpleWorker``, one per thread: the job timeout is RQ's
``TimerDeathPenalty`` (an exception raised in the job's thread), and signals belong to the process's
main thread, which stops the workers between jobs.

A worker's key in Redis (``rq:worker:<name>``) says it is alive. RQ keeps a busy worker's key for
the job's whole timeout, and refreshes it only between jobs; here the process's main thread keeps it
for ``heartbeat_ttl`` seconds (``beat``), so that a process killed in a job is seen dead in
seconds. ``abandoned`` finds the executions of dead workers; the caller decides what to do with each.

``tests/test_rqworker.py`` pins these overrides against the RQ this project installs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import redis
from rq import Queue, SimpleWorker, Worker
from rq.executions import Execution
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty
from rq.worker_registration import unregister

from transcribe_common.logs import set_job

DEQUEUE_POLL = 2  # seconds an idle worker waits on its queues before it looks for a stop


class ThreadWorker(SimpleWorker):
    death_penalty_class = TimerDeathPenalty

    def __init__(self, *args: Any, heartbeat_ttl: int = 30, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_ttl = heartbeat_ttl
        self.in_job = False  # known here, without asking Redis (which may not answer)

    def _install_signal_handlers(self) -> None:
        """The process's main thread owns the signals."""

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):  # type: ignore[no-untyped-def]
        # RQ keeps a busy worker's key for the job's whole timeout; keep ours short, so that a
        # process killed just after taking a job is seen as dead in seconds, not half an hour.
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        self.in_job = True
        self.heartbeat(timeout=self.heartbeat_ttl)
        set_job(job.id)  # RQ's own lines about this job carry its id too (cleared at the next dequeue)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):  # type: ignore[no-untyped-def]
        # RQ's loop waits for a job forever; come up for air to notice a stop request.
        self.in_job = False
        set_job(None)
        while True:
            result = super().dequeue_job_and_maintain_ttl(DEQUEUE_POLL, max_idle_time=DEQUEUE_POLL)
            if result is not None or self._stop_requested:
                return result

    def stop_after_job(self) -> None:
        """Take no more jobs: the running one finishes, then ``work`` returns."""
        self._stop_requested = True

    def beat(self) -> None:
        """Keep this worker's key, and so its running job, alive for ``heartbeat_ttl`` seconds more."""
        self.heartbeat(timeout=self.heartbeat_ttl)

    def forget(self) -> None:
        """Take back what an earlier process under this worker's name left: its registration."""
        with self.connection.pipeline() as pipe:
            unregister(self, pipe)
            pipe.delete(self.key)
            pipe.execute()


def start(workers: list[ThreadWorker], daemon: bool = False) -> list[threading.Thread]:
    """Each worker's loop on a thread of its own, logging only what goes wrong. ``daemon``: the
    process may end without them (a worker waiting for Redis that does not answer, say)."""
    threads = []
    for worker in workers:
        kwargs = {"logging_level": "WARNING"}
        thread = threading.Thread(target=worker.work, name=worker.name, kwargs=kwargs, daemon=daemon)
        thread.start()
        threads.append(thread)
    return threads


def worker_alive(conn: redis.Redis, name: str | None) -> bool:
    """RQ keeps a worker's key a minute after it registered its death; it is not alive then."""
    if not name:
        return False
    key = Worker.redis_worker_namespace_prefix + name
    with conn.pipeline(transaction=False) as pipe:
        pipe.exists(key)
        pipe.hexists(key, "death")
        exists, dead = pipe.execute()
    return bool(exists) and not dead


def abandoned(conn: redis.Redis, queue_names: list[str]) -> Iterator[tuple[str, Execution, StartedJobRegistry]]:
    """The executions on these queues whose worker is dead: (job id, execution, its registry)."""
    for name in queue_names:
        registry = StartedJobRegistry(queue=Queue(name, connection=conn))
        for job_id, execution_id in registry.get_job_and_execution_ids():
            execution = Execution.fetch(execution_id, job_id, connection=conn)
            if not worker_alive(conn, execution.worker_name):
                yield job_id, execution, registry
