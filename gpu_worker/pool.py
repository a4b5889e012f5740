"""One worker process: ``MAX_CONCURRENCY`` RQ workers on threads for each device it runs on
(``WHISPER_DEVICE_INDEX``), sharing one copy of each model per device.

RQ's default worker forks a work horse per job, and a fork of a process that has loaded a
CTranslate2 model hangs inside CTranslate2. So jobs run in this process, with RQ's SimpleWorker,
one per thread; the job timeout is RQ's TimerDeathPenalty (an exception raised in the job's
thread), and signals belong to the main thread:

- SIGTERM or SIGINT: stop taking jobs; running jobs get ``DRAIN_TIMEOUT`` seconds to finish, then
  are interrupted and put back in the queue. A second signal stops at once.
- Every ``WORKER_HEARTBEAT_TTL / 3`` seconds the RQ workers' keys are refreshed with that TTL, so a
  killed process is seen as dead within it; its record in ``transcribe_common.fleet`` (slots and
  models) with the same TTL. A stopping worker withdraws that record before it drains.
- At start, a worker takes over what its ``WORKER_NAME`` left behind: the old RQ registrations,
  and the jobs they were running (recovered before any new job is taken).
- Every ``REAP_INTERVAL`` seconds the jobs of dead workers are recovered, jobs and shards RQ lost
  (in no queue for ``LOST_AFTER``) are queued again, jobs that waited ``MODEL_WAIT`` for a model
  no live worker serves are failed (``transcribe_common.recovery``), and scratch folders untouched
  for ``LOST_AFTER`` of jobs no live worker runs are removed (the janitor may not reach them).
- Every ``CANCEL_POLL`` seconds running jobs whose status became ``cancelled`` are stopped, by the
  same means as a drain's requeue: an exception raised in the job's thread; so are jobs started
  again elsewhere (a later attempt) while this process stalled and was taken for dead.
- If a job thread ends on its own (RQ quits its loop on some Redis errors), the process drains and
  exits with status 1, to be restarted whole.
"""

from __future__ import annotations

import ctypes
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import redis

from gpu_worker import metrics
from gpu_worker.job import Cancelled, JobRun, Requeue, Superseded, WorkerContext
from gpu_worker.whisper import is_multilingual
from transcribe_common import fleet, jobqueue, keys
from transcribe_common.jobqueue import ThreadWorker, start, worker_alive
from transcribe_common.models import JobStatus
from transcribe_common.ops import Heartbeat
from transcribe_common.recovery import fail_unserved, reap, requeue_lost
from transcribe_common.runtime import connect_redis
from transcribe_common.scratch import sweep_scratch

log = logging.getLogger(__name__)
STOPPING = frozenset(status.value for status in JobStatus if status.stops_a_run)  # as Redis holds them


class WorkerPool:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.queues = keys.worker_queues(ctx.models)
        self.name = self.settings.worker_name
        self.workers = [
            ThreadWorker(
                self.queues,
                name=f"{self.name}-{n}",
                connection=self._connection(),
                worker_ttl=20,
                heartbeat_ttl=self.settings.worker_heartbeat_ttl,
            )
            for n in range(ctx.placement.slots(self.settings.max_concurrency))
        ]
        self.stopping = threading.Event()
        self.hurry = threading.Event()
        self.failed = False
        self.threads: list[threading.Thread] = []
        self.liveness = Heartbeat(stuck_after=max(60.0, 5 * self.beat))
        metrics.SLOTS.set(len(self.workers))

    def _connection(self) -> redis.Redis:
        return connect_redis(self.settings, "worker")

    def run(self) -> None:
        self.take_over()
        self.sweep(max_age=0)
        self.advertise()
        self.threads = start(self.workers)
        log.info(
            "worker %s: %d job slots on %s, models %s; %d on each device of %s",
            self.name,
            len(self.workers),
            ", ".join(self.queues),
            ", ".join(self.ctx.models),
            self.settings.max_concurrency,
            self.ctx.placement,
        )
        self._serve()
        self._drain()

    def take_over(self) -> None:
        """What this ``WORKER_NAME`` left behind when it last died: its old slots stop counting, and
        the jobs they ran are recovered now, before any new slot registers under the same names."""
        previous = fleet.registered(self.ctx.conn, self.name)
        if previous is not None and previous.until > time.time() and not _is_our_past(previous):
            raise SystemExit(
                f"another worker named {self.name!r} is alive on {previous.host} (pid {previous.pid}); "
                "give each worker process its own WORKER_NAME"
            )
        for worker in self.workers:
            worker.forget()
        recovered = reap(self.ctx.ending, self.queues)
        if recovered:
            log.warning("recovered %d jobs this worker was running when it last stopped", len(recovered))

    def sweep(self, max_age: float) -> None:
        """Scratch folders untouched for ``max_age`` seconds of jobs no live worker runs go."""
        alive = lambda worker: worker_alive(self.ctx.conn, worker)  # noqa: E731
        report = sweep_scratch(self.settings.scratch_dir, self.ctx.states, max_age=max_age, alive=alive)
        if report.removed:
            log.info("removed %d scratch folders of jobs no live worker runs", report.removed)

    def stop(self) -> None:
        if self.stopping.is_set():
            log.warning("second stop request: requeueing running jobs now")
            self.hurry.set()
        self.stopping.set()

    @property
    def beat(self) -> float:
        """Seconds between heartbeats: three chances before the TTL runs out."""
        return max(1.0, self.settings.worker_heartbeat_ttl / 3)

    def _serve(self) -> None:
        last_beat = last_reap = 0.0
        while not self.stopping.wait(min(self.beat, self.settings.cancel_poll)):
            self.liveness.beat()
            if not all(thread.is_alive() for thread in self.threads):
                # RQ ends a worker's loop on some Redis errors; rather than run on with fewer slots,
                # stop whole and let the supervisor (compose, the embedded stack) start us afresh.
                log.error("a job thread has stopped; stopping the worker so that it is restarted")
                self.liveness.stop("a job thread has stopped")
                self.failed = True
                return
            self.stop_cancelled()
            if time.monotonic() - last_beat >= self.beat:
                last_beat = time.monotonic()
                self.heartbeat()
            if time.monotonic() - last_reap >= self.settings.reap_interval:
                last_reap = time.monotonic()
                self.look_after_others()

    def look_after_others(self) -> None:
        """Jobs of dead workers, and jobs waiting for a model no worker serves; each on its own,
        so that one failing does not stop the other."""
        looks = {
            "abandoned jobs": lambda: reap(self.ctx.ending, self.queues),
            "jobs and shards RQ lost": lambda: requeue_lost(self.ctx.ending),
            "jobs no worker serves": lambda: fail_unserved(self.ctx.ending),
            # Its own scratch space, which no janitor may reach (a pod's emptyDir on Kubernetes).
            "scratch left behind": lambda: self.sweep(max_age=self.settings.lost_after),
        }
        for what, look in looks.items():
            try:
                look()
            except Exception:
                log.exception("looking for %s failed; trying again later", what)

    def heartbeat(self) -> None:
        """Keep the live workers' keys, and so their jobs, short-lived: a killed process's expire."""
        try:
            for worker, thread in zip(self.workers, self.threads, strict=True):
                if thread.is_alive():
                    worker.beat()
            if not self.stopping.is_set():
                self.advertise()
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)

    def advertise(self) -> None:
        """This worker's slots and models count until the next heartbeat is due, and a little more."""
        models = {name: fleet.ServedModel(multilingual=is_multilingual(m)) for name, m in self.ctx.models.items()}
        record = fleet.WorkerRecord(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            slots=len(self.workers),
            models=models,
            until=time.time() + self.settings.worker_heartbeat_ttl,
        )
        fleet.advertise(self.ctx.conn, record)

    def withdraw(self) -> None:
        try:
            fleet.withdraw(self.ctx.conn, self.name)
        except redis.RedisError as exc:
            log.warning("could not withdraw this worker's record (%s); it expires on its own", exc)

    def _drain(self) -> None:
        self.stopping.set()  # also when a job thread died: no more heartbeats advertise this worker
        self.withdraw()
        log.info("stopping: running jobs get %g s to finish", self.settings.drain_timeout)
        for worker in self.workers:
            worker.stop_after_job()
        deadline = time.monotonic() + self.settings.drain_timeout
        last_beat = time.monotonic()
        while any(t.is_alive() for t in self.threads) and time.monotonic() < deadline:
            self.liveness.beat()
            if time.monotonic() - last_beat >= self.beat:  # finishing jobs must not look dead
                self.heartbeat()
                last_beat = time.monotonic()
            if self.hurry.wait(0.2):
                break
        self._interrupt_running()
        for thread in self.threads:
            thread.join()
        for rq_id, model in self.ctx.requeued:
            jobqueue.enqueue_again(self.ctx.conn, rq_id, model, self.settings)
        log.info("stopped; %d jobs requeued", len(self.ctx.requeued))

    def stop_cancelled(self) -> None:
        """Stop the running jobs whose status became ``cancelled`` or ``deleted``, and those
        started again elsewhere while this process stalled (a later attempt owns them)."""
        running = self._running()
        try:
            statuses = self.ctx.states.statuses([job.job_id for _, job in running])
        except redis.RedisError as exc:
            log.warning("checking for cancelled jobs failed: %s", exc)
            return
        cancelled, superseded = set(), set()
        for (_, job), (status, attempts) in zip(running, statuses, strict=True):
            # Started again since, or put back in the queue by a reaper that took this process for dead.
            if job.attempt and (attempts != job.attempt or status == JobStatus.QUEUED.value):
                superseded.add(id(job))
            elif status in STOPPING:
                cancelled.add(id(job))
        if superseded:
            self._interrupt(Superseded, lambda job: id(job) in superseded)
        if cancelled:
            self._interrupt(Cancelled, lambda job: id(job) in cancelled)

    def _running(self) -> list[tuple[int, JobRun]]:
        with self.ctx.lock:
            return list(self.ctx.running.items())

    def _interrupt_running(self) -> None:
        self._interrupt(Requeue, lambda job: True)

    def _interrupt(self, exception: type[BaseException], which: Callable[[JobRun], bool]) -> None:
        """Raise ``exception`` in the threads of the chosen jobs that may still be interrupted."""
        with self.ctx.lock:  # a job thread leaves its interruptible part under this lock
            for ident, job in self.ctx.running.items():
                if job.interruptible and which(job):
                    _raise_in(ident, exception)


def _is_our_past(record: fleet.WorkerRecord) -> bool:
    """Whether a live-looking record under our name is our own past: written on this host by this
    process (pid 1 of a restarted container, say) or by one that is gone. Not so for a process that
    still runs, or a record from another host, which may still be working."""
    if record.host != socket.gethostname():
        return False
    if record.pid == os.getpid():
        return True
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _raise_in(thread_ident: int, exception: type[BaseException]) -> None:
    """Raise ``exception`` in another thread, at its next Python instruction (a running ffmpeg or
    model call finishes its current step first)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident), ctypes.py_object(exception))
