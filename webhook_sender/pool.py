"""RQ's ``WorkerPool``, which stops every worker it starts, however a stop signal falls.

A signal sent to the whole process group (Ctrl-C in a terminal, a supervisor's ``killpg``) reaches
the pool's workers too. One may die of it before the pool's own handler runs; the pool then starts
it again, and its handler stops only the workers it knew, so it waits for ever for the new one
(rq 2.12, ``WorkerPool.start``). And a worker can lose the stop it was told: RQ's handler raises
``StopRequested`` in whatever the worker was running, and it ignores a second signal within a
second (the pool's, after the group's). Seen: a worker idle in its queue's ``BLMOVE`` 120 s after
both. Here:

- each worker is told to stop, whenever it appears after the pool was told, and told again each
  ``RETELL_AFTER`` seconds while it is alive and idle (a worker running a job is left to finish it,
  unless Redis, which says which it is, cannot answer);
- a worker told before it has set its own handlers runs the pool's, which it inherited when
  forked: that only notes it, and the worker stops on its loop's first turn, as a worker told to
  stop between jobs does (unregistered, its scheduler stopped).

The overrides are of RQ's pool and worker; ``tests/webhook_sender/test_pool.py`` pins them against
the RQ this project installs.
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType
from typing import Any

from rq import Worker as RQWorker
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerData
from rq.worker_pool import WorkerPool as RQWorkerPool

from transcribe_common import transient

RETELL_AFTER = 3.0  # seconds: more than RQ's one, in which a worker ignores a second signal

_told_while_starting = False  # in a worker process: a stop came before its own handlers were set


class Worker(RQWorker):
    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        if _told_while_starting:
            self._stop_requested = True  # its loop stops on its first turn, and tears down


class WorkerPool(RQWorkerPool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("worker_class", Worker)
        super().__init__(*args, **kwargs)
        self.pid = os.getpid()
        self.told: dict[str, float] = {}  # worker name: when it was last sent its stop signal

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if os.getpid() != self.pid:  # a worker just forked, which has not set its own handlers yet
            global _told_while_starting
            _told_while_starting = True
            return
        super().request_stop(signum, frame)

    def stop_worker(self, worker_data: WorkerData, sig: int = signal.SIGINT) -> None:
        self.told[worker_data.name] = time.monotonic()
        super().stop_worker(worker_data, sig)

    def all_workers_have_stopped(self) -> bool:
        """Asked each second once the pool is stopping: a worker started since it was told to
        stop (a respawn that raced the signal) is told now, and an idle one that is still here is
        told again."""
        stopped = super().all_workers_have_stopped()
        for data in list(self.worker_dict.values()):
            told = self.told.get(data.name)
            if told is None or (time.monotonic() - told > RETELL_AFTER and self._idle(data.name)):
                self.stop_worker(data)
        return stopped

    def _idle(self, name: str) -> bool:
        """Idle, as its record in Redis says; idle too when Redis cannot answer (restarting, say): a
        busy worker told again drops its attempt, which is retried, and the pool does not wait on Redis."""
        key = self.worker_class.redis_worker_namespace_prefix + name
        try:
            worker = self.worker_class.find_by_key(key, self.connection)
            return worker is not None and worker.get_state() != WorkerStatus.BUSY
        except transient.REDIS_TRANSIENT:
            return True
