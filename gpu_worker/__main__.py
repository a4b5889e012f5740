"""``transcribe-worker``: load the models once, then run jobs from RQ on ``MAX_CONCURRENCY`` threads
until SIGTERM or Ctrl-C (see ``pool`` for why threads and not RQ's forking worker)."""

import signal
import sys

from gpu_worker import job
from gpu_worker.pool import WorkerPool
from gpu_worker.settings import WorkerSettings
from gpu_worker.whisper import load_models, parse_models
from transcribe_common.jobstate import JobStates
from transcribe_common.runtime import connect_redis, open_store, setup_logging


def main() -> None:
    settings = WorkerSettings()
    setup_logging("worker", settings.log_level)
    conn = connect_redis(settings, "worker")
    store = open_store(settings, conn)
    settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    models = load_models(
        parse_models(settings.models, settings.model_size),
        settings.model_cache_dir,
        device=settings.whisper_device,
        compute_type=settings.whisper_compute_type,
        cpu_threads=settings.whisper_cpu_threads,
        concurrency=settings.max_concurrency,
    )
    context = job.WorkerContext(settings, conn, store, JobStates(conn, store, settings.minio_bucket), models)
    job.install(context)
    pool = WorkerPool(context)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: pool.stop())
    pool.run()
    if pool.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
