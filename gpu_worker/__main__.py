"""``transcribe-worker``: load the model once, then take jobs from RQ.

RQ's default worker forks a work horse per job, and a fork of a process that has loaded a
CTranslate2 model hangs inside CTranslate2. So jobs run in this process, with RQ's SimpleWorker;
the job timeout is still enforced, by SIGALRM in the same process.
"""

import logging

from rq import SimpleWorker

from gpu_worker import job
from gpu_worker.settings import WorkerSettings
from gpu_worker.whisper import load_model
from transcribe_common import keys
from transcribe_common.jobstate import JobStates
from transcribe_common.runtime import connect_redis, open_store, setup_logging


def main() -> None:
    settings = WorkerSettings()
    setup_logging("worker", settings.log_level)
    conn = connect_redis(settings)
    store = open_store(settings, conn)
    settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(
        settings.model_size,
        settings.model_cache_dir,
        device=settings.whisper_device,
        compute_type=settings.whisper_compute_type,
        cpu_threads=settings.whisper_cpu_threads,
    )
    job.install(job.WorkerContext(settings, store, JobStates(conn, store, settings.minio_bucket), model))
    worker = SimpleWorker([keys.QUEUE], connection=conn)
    logging.getLogger(__name__).info("worker %s ready on queue %r", worker.name, keys.QUEUE)
    worker.work(logging_level=settings.log_level.upper())


if __name__ == "__main__":
    main()
