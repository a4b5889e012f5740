"""The RQ job that writes an ended inbox job's outputs beside its drop again.

A person who deleted a transcript (or an error note) and drops the same file again gets it back:
the drop's job id is the same (bucket, key and eTag), so the router finds the job ended and queues
this instead of a transcription. It copies the job's stored results; nothing is transcribed, and
what is beside the drop already is left as it is.
"""

from __future__ import annotations

import logging

from gpu_worker import metrics
from gpu_worker.job import WorkerContext
from transcribe_common.logs import job_context
from transcribe_common.models import JobStatus

log = logging.getLogger(__name__)


def run(job_id: str) -> str:
    """Entry point named in ``keys.BESIDE_FUNCTION``."""
    from gpu_worker import job  # the context the worker process installed

    if job._context is None:
        raise RuntimeError("gpu_worker.beside.run runs only inside transcribe-worker")
    with job_context(job_id):
        outcome = rewrite(job._context, job_id)
    metrics.REWRITES.labels(outcome).inc()
    return outcome


def rewrite(ctx: WorkerContext, job_id: str) -> str:
    """``rewritten``, ``complete`` (nothing was missing), or ``skipped`` (no ended inbox job)."""
    record = ctx.states.read_or_stored(job_id)
    if record is None or record.status not in (JobStatus.FINISHED, JobStatus.FAILED):
        return "skipped"
    manifest = ctx.ending.manifest(job_id)
    if manifest.beside is None:
        return "skipped"
    written = ctx.ending.rewrite_beside(job_id, manifest, record)
    if not written:
        return "complete"
    log.info("job %s: %s written beside its inbox drop again", job_id, ", ".join(written))
    return "rewritten"
