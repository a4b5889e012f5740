"""``transcribe-worker``: load the models once, then run jobs from RQ on ``MAX_CONCURRENCY`` threads
until SIGTERM or Ctrl-C (see ``pool`` for why threads and not RQ's forking worker)."""

import signal
import sys

from gpu_worker import job, memory, metrics
from gpu_worker.pool import WorkerPool
from gpu_worker.settings import WorkerSettings
from gpu_worker.whisper import load_models, parse_models, place
from transcribe_common.jobstate import JobStates
from transcribe_common.logs import setup_logging
from transcribe_common.ops import redis_and_store, serve_ops
from transcribe_common.runtime import command_line, connect_redis, open_store


def main() -> None:
    command_line("transcribe-worker", __doc__)
    settings = WorkerSettings()
    setup_logging("worker", settings.log_level, settings.log_format)
    memory.cap_arenas()  # before any thread allocates
    conn = connect_redis(settings, "worker")
    store = open_store(settings, conn)
    settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    pool: WorkerPool | None = None
    probes = redis_and_store(conn, store, settings.minio_bucket) | {"models": lambda: models_loaded(pool)}
    # Alive while the models load (a first download may take minutes); then while the pool's loop turns.
    serve_ops(
        "worker", settings.metrics_host, settings.worker_metrics_port, lambda: pool.liveness() if pool else None, probes
    )
    try:
        placement = place(settings.whisper_device, settings.whisper_compute_type, settings.device_indexes)
    except ValueError as exc:
        raise SystemExit(f"transcribe-worker: {exc}") from exc
    models = load_models(
        parse_models(settings.models, settings.model_size),
        settings.model_cache_dir,
        placement=placement,
        cpu_threads=settings.whisper_cpu_threads,
        concurrency=settings.max_concurrency,
    )
    states = JobStates.for_settings(conn, store, settings)
    context = job.WorkerContext(settings, conn, store, states, models, placement)
    job.install(context)
    pool = WorkerPool(context)
    metrics.MODELS_LOADED.set(len(models))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: pool.stop())
    pool.run()
    if pool.failed:
        sys.exit(1)


def models_loaded(pool: WorkerPool | None) -> None:
    if pool is None:
        raise RuntimeError("loading the models")
    if pool.stopping.is_set():
        raise RuntimeError("stopping: taking no more jobs")


if __name__ == "__main__":
    main()
