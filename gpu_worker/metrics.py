"""The worker's Prometheus metrics (``transcribe_worker_*`` on ``WORKER_METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter(
    "transcribe_worker_jobs_total",
    "Jobs this worker ended, by outcome: finished, failed, cancelled, requeued (drain), left (Redis away), "
    "skipped (taken or done already).",
    ["outcome"],
)
JOB_SECONDS = Histogram(
    "transcribe_worker_job_seconds",
    "Wall time of a job on this worker, from its start to its end, by outcome.",
    ["outcome"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
STAGE_SECONDS = Histogram(
    "transcribe_worker_stage_seconds",
    "Time spent in each stage of a job: fetch (the input to scratch), decode (ffmpeg to 16 kHz), "
    "split (finding speech and cuts in a long recording), transcribe (the model), write (results to the store).",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
AUDIO_SECONDS = Counter("transcribe_worker_audio_seconds_total", "Seconds of audio transcribed, by model.", ["model"])
REALTIME_FACTOR = Histogram(
    "transcribe_worker_realtime_factor",
    "The model's time divided by the audio's duration, by model: 0.1 means ten times faster than real time.",
    ["model"],
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5),
)
SHARDS = Counter(
    "transcribe_worker_shards_total",
    "Shards of long or multichannel jobs this worker ran, by outcome: shard done, finished (it joined the job), "
    "failed, cancelled, requeued, skipped (running elsewhere, done already, or its job ended).",
    ["outcome"],
)
REWRITES = Counter(
    "transcribe_worker_rewrites_total",
    "Ended inbox jobs whose outputs were asked for again (the drop was put back), by outcome: rewritten "
    "(what was missing beside the drop was copied from the stored results), complete (nothing was missing), "
    "skipped (no ended inbox job).",
    ["outcome"],
)
RUNNING = Gauge("transcribe_worker_jobs_running", "Jobs running on this worker now.")
SLOTS = Gauge("transcribe_worker_slots", "Jobs this worker runs at once (MAX_CONCURRENCY).")
MODELS_LOADED = Gauge("transcribe_worker_models_loaded", "Models loaded and served by this worker.")


def transcribed(model: str, took: float, duration: float) -> None:
    """One transcription (a job's, or a shard's) of ``duration`` seconds of audio in ``took`` seconds."""
    STAGE_SECONDS.labels("transcribe").observe(took)
    if duration > 0:
        AUDIO_SECONDS.labels(model).inc(duration)
        REALTIME_FACTOR.labels(model).observe(took / duration)
