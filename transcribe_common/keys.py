"""Every Redis key name the services share, in one place."""

from collections.abc import Iterable

PREFIX = "transcribe"

# MinIO's Redis notification target RPUSHes one access-format record per event onto this list.
EVENTS = f"{PREFIX}:events"
# The router moves each event here with BLMOVE and removes it only after its job is enqueued.
EVENTS_PROCESSING = f"{PREFIX}:events:processing"
# Dead letters: events the router could not handle (not JSON, a bug, or failing EVENT_ATTEMPTS
# times), each with its error; kept, and replayed (``deadletters``), never dropped.
EVENTS_DEAD = f"{PREFIX}:events:dead"
# Events put off after a transient failure, scored by when their next try is due.
EVENTS_RETRY = f"{PREFIX}:events:retry"
# An event's digest -> how many times its handling has failed transiently.
EVENT_TRIES = f"{PREFIX}:events:tries"
# Live worker processes: WORKER_NAME -> its record (slots, models, alive until); see ``fleet``.
WORKERS = f"{PREFIX}:workers"
# Model -> the last time (epoch seconds) a live worker vouched for it: MODEL_WAIT counts from there.
MODELS_SERVED = f"{PREFIX}:models:served"
# Counts of jobs by their current status, moved atomically with each status change.
STATS = f"{PREFIX}:stats"
# Owner (an API key's digest) -> how many of its jobs are queued or started, moved with each status.
OPEN_BY_OWNER = f"{PREFIX}:open-by-owner"
# The janitor's indexes, kept by each move: jobs queued or started (scored by their last move), and
# jobs that ended (scored by their end; the janitor trims what is older than it looks back).
JOBS_OPEN = f"{PREFIX}:jobs:open"
JOBS_ENDED = f"{PREFIX}:jobs:ended"
# Every job, scored by when it was made (its first move), for ``GET /v1/jobs``; and the same per
# owner, ``jobs_of(owner)`` (the key's digest; "-" for jobs with none: inbox drops, and every job
# while keys are off). Kept by the status script; entries of jobs gone for good are dropped by readers.
JOBS_CREATED = f"{PREFIX}:jobs:created"
# Pub/sub: each change of a job's live state publishes its id here (``GET /v1/jobs/{id}/events``).
JOB_CHANGES = f"{PREFIX}:job-changes"
# Unix seconds: every job made before it that still needs the janitor is in those indexes, so a
# run lists the jobs bucket only from there. Gone with Redis's data: the next run lists it all.
JANITOR_WATERMARK = f"{PREFIX}:janitor:watermark"

# The RQ queue of jobs that name no model (any worker takes them, with its default model), and
# the function workers run. Jobs that name a model go to that model's queue.
QUEUE = "transcribe"
WORKER_FUNCTION = "gpu_worker.job.run"
# A shard of a long or multichannel job is an RQ job of its own on the job's queue, with this
# function and an id naming the job, the attempt that cut it and the shard (``shard_job_id``).
SHARD_FUNCTION = "gpu_worker.shard_job.run"
# An ended inbox job's outputs written beside its drop again, from its stored results, when the
# drop is put back after they were deleted: a small RQ job (``<job_id>-beside``) on the default
# queue, at its front, which any worker takes between two transcriptions.
BESIDE_FUNCTION = "gpu_worker.beside.run"

# Webhooks have their own queue and workers (``transcribe-webhooks``), so that a slow or dead
# receiver never holds a transcription slot. A retry waits in WEBHOOKS_DUE (scored by when it is
# due, each member its attempt's arguments) until a sender queues it.
WEBHOOK_QUEUE = f"{QUEUE}:webhooks"
WEBHOOKS_DUE = f"{WEBHOOK_QUEUE}:due"
# Retries in WEBHOOKS_DUE that could not be read, put aside; and the lease of the sender that
# keeps the queue (jobqueue.keep_webhooks).
WEBHOOKS_UNREADABLE = f"{WEBHOOK_QUEUE}:unreadable"
WEBHOOK_KEEPER = f"{WEBHOOK_QUEUE}:keeper"
WEBHOOK_FUNCTION = "webhook_sender.delivery.deliver"
# Delivery attempts by outcome (delivered, retry, failed), counted here because the sender's
# workers are forked processes: its /metrics reads them from Redis.
WEBHOOK_ATTEMPTS = f"{WEBHOOK_QUEUE}:attempts"


def webhook_receiver(netloc: str) -> str:
    """The delivery attempts going to one receiver (host:port) right now: a sorted set of leases,
    each scored by when it runs out."""
    return f"{WEBHOOK_QUEUE}:receiver-leases:{netloc}"


def queue_for(model: str | None) -> str:
    return f"{QUEUE}:{model}" if model else QUEUE


def shard_queue_for(model: str | None) -> str:
    """Where the shards of jobs split for ``model`` wait: work already started, taken first."""
    return f"{SHARD_QUEUE}:{model}" if model else SHARD_QUEUE


SHARD_QUEUE = f"{QUEUE}:shards"


def worker_queues(models: Iterable[str]) -> list[str]:
    """The queues a worker serving ``models`` takes from, in the order RQ asks them: the shards of
    jobs already split first (else, under a steady load of new jobs, a long job's shards would
    wait behind every one of them), then new jobs for any model, then new jobs for its own."""
    served = list(models)
    return [*(shard_queue_for(model) for model in served), queue_for(None), *(queue_for(model) for model in served)]


def model_of_queue(name: str) -> str | None:
    """The model a transcription queue (of new jobs, or of shards) is for; None for the default
    queues (and the webhooks')."""
    if name == WEBHOOK_QUEUE or name in (QUEUE, SHARD_QUEUE):
        return None
    for prefix in (f"{SHARD_QUEUE}:", f"{QUEUE}:"):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return None


def idempotency(digest: str) -> str:
    """An Idempotency-Key (digested with its caller) -> the job it created."""
    return f"{PREFIX}:idempotency:{digest}"


def shards(job_id: str, attempt: int) -> str:
    """The shards of one attempt of a job: who runs each, what is done, who joins (``shardstate``)."""
    return f"{PREFIX}:shards:{job_id}:{attempt}"


def shard_job_id(job_id: str, attempt: int, index: int) -> str:
    """The RQ job of one shard: ``<job_id>-a<attempt>-s<index>``."""
    return f"{job_id}-a{attempt}-s{index}"


def beside_job_id(job_id: str) -> str:
    return f"{job_id}-beside"


def beside_of(rq_job_id: str) -> str | None:
    """The job whose outputs a rewrite job (``beside_job_id``) writes again; None for other jobs."""
    job_id, marked, rest = rq_job_id.partition("-beside")
    return job_id if marked and not rest and len(job_id) == 32 else None


def shard_of(rq_job_id: str) -> tuple[str, int, int] | None:
    """(job id, attempt, index) of a shard's RQ job id; None for a whole job's."""
    job_id, _, rest = rq_job_id.partition("-a")
    attempt, _, index = rest.partition("-s")
    if len(job_id) != 32 or not attempt.isdigit() or not index.isdigit():
        return None
    return job_id, int(attempt), int(index)


def lua_publish_change(job_key: str) -> str:
    """A Lua statement that tells ``JOB_CHANGES`` the job whose hash is the key ``job_key``
    (``KEYS[n]``) has changed: the scripts that change a job's hash end with it."""
    return f"redis.call('PUBLISH', '{JOB_CHANGES}', string.sub({job_key}, -32))\n"


def stats_of(owner: str | None) -> str:
    """The counters of one owner's jobs by status, beside ``STATS`` (the jobstate scripts keep both)."""
    return f"{STATS}:{owner or '-'}"


def jobs_of(owner: str | None) -> str:
    """The jobs of one owner, scored by when each was made (see ``JOBS_CREATED``)."""
    return f"{JOBS_CREATED}:{owner or '-'}"


def job(job_id: str) -> str:
    """The live state of one job: status, progress, language, duration, error."""
    return f"{PREFIX}:job:{job_id}"


def text(value: bytes | str) -> str:
    """Redis answers in bytes; names and values here are UTF-8 text."""
    return value.decode() if isinstance(value, bytes) else value
