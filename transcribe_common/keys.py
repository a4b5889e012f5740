"""Every Redis key name the services share, in one place."""

PREFIX = "transcribe"

# MinIO's Redis notification target RPUSHes one access-format record per event onto this list.
EVENTS = f"{PREFIX}:events"
# The router moves each event here with BLMOVE and removes it only after its job is enqueued.
EVENTS_PROCESSING = f"{PREFIX}:events:processing"
# Events the router could not handle at all (not JSON, a bug): kept for a human, never dropped.
EVENTS_DEAD = f"{PREFIX}:events:dead"
# Counts of jobs by their current status, moved atomically with each status change.
STATS = f"{PREFIX}:stats"

# The RQ queue the workers take transcription jobs from, and the function they run.
QUEUE = "transcribe"
WORKER_FUNCTION = "gpu_worker.job.run"


def job(job_id: str) -> str:
    """The live state of one job: status, progress, language, duration, error."""
    return f"{PREFIX}:job:{job_id}"
