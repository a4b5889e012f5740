"""RQ's ``WorkerPool``, which stops every worker it starts, however a stop signal falls.

A signal sent to the whole process group (Ctrl-C in a terminal, a supervisor's ``killpg``) reaches
the pool's workers too. One may die of it before the pool's own handler runs; the pool then starts
it again, and its handler stops only the workers it knew, so it waits for ever for the new one
(rq 2.12, ``WorkerPool.start``). Here each worker is told to stop once, whenever it appears after
the pool was told; and a worker told before it set its own handlers (it runs the pool's, which it
inherited when forked) leaves at once, since it has taken no job yet.

The overrides are of ``WorkerPool``'s public methods; ``tests/webhook_sender/test_pool.py`` pins
them against the RQ this project installs.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

from rq.worker_pool import WorkerData
from rq.worker_pool import WorkerPool as RQWorkerPool


class WorkerPool(RQWorkerPool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pid = os.getpid()
        self.told: set[str] = set()  # the workers sent their stop signal

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if os.getpid() != self.pid:  # a worker just forked, which has not set its own handlers yet
            os._exit(0)
        super().request_stop(signum, frame)

    def stop_worker(self, worker_data: WorkerData, sig: int = signal.SIGINT) -> None:
        self.told.add(worker_data.name)
        super().stop_worker(worker_data, sig)

    def all_workers_have_stopped(self) -> bool:
        """Asked each second once the pool is stopping: a worker started since it was told to
        stop (a respawn that raced the signal) is told now."""
        stopped = super().all_workers_have_stopped()
        for data in list(self.worker_dict.values()):
            if data.name not in self.told:
                self.stop_worker(data)
        return stopped
