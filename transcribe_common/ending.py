"""How the end of a job is told: its final status, a note beside an inbox drop, its webhook.

The worker ends the jobs it runs; a worker's reaper and the janitor end jobs whose worker died or
whose input vanished. All of them end a job here, so a failure reads the same whoever saw it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import redis

from transcribe_common import jobqueue, layout
from transcribe_common.errors import InvalidInput
from transcribe_common.jobstate import JobStates, made_by
from transcribe_common.models import CONTENT_TYPES, FailedWebhook, FinishedWebhook, JobStatus, Manifest, StatusRecord
from transcribe_common.settings import JobEndSettings
from transcribe_common.store.base import ObjectStore, free_place, get_bytes, get_json, put_bytes
from transcribe_common.transient import Retry, transient

log = logging.getLogger(__name__)
ERROR_NOTE = "error.txt"  # beside an inbox drop whose job failed: talks/a.mp4 -> talks/a.error.txt
WARNINGS_NOTE = "warnings.txt"  # beside one whose transcript has warnings: talks/a.warnings.txt
NOTE_TYPE = CONTENT_TYPES["txt"]
# The store's own message names the bucket and key: the log has it, the job's error does not.
UNREADABLE_MANIFEST = "the job's manifest is missing or unreadable; submit the job again"


def error_note(error: str) -> bytes:
    return f"Transcription failed: {error}\n".encode()


def warnings_note(warnings: list[str]) -> bytes:
    return "".join(f"Warning: {warning}\n" for warning in warnings).encode()


def unreadable(exc: BaseException) -> bool:
    """A manifest that could not be read for good (missing, not JSON, not a manifest), not for now."""
    return not transient(exc)


@dataclass
class Ending:
    conn: redis.Redis
    states: JobStates
    store: ObjectStore
    settings: JobEndSettings

    def manifest(self, job_id: str) -> Manifest:
        """The job's manifest, read again while the store fails transiently (``IO_ATTEMPTS``). A
        store that stays away raises ``StoreUnavailable``: not a reason to fail the job, which the
        caller leaves for later. Missing or invalid, it cannot get better (``unreadable``)."""
        retry = Retry(self.settings.io_attempts, self.settings.io_backoff, what=f"job {job_id}: reading its manifest")
        raw = retry.call(get_json, self.store, self.settings.minio_bucket, layout.manifest_key(job_id))
        return Manifest.model_validate(raw)

    def fail(
        self,
        job_id: str,
        manifest: Manifest,
        error: str,
        only_from: JobStatus | None = None,
        attempt: int | None = None,
    ) -> bool:
        """Fail the job, leave a note beside an inbox drop, send the failure webhook. False if the
        job had ended already (cancelled, or ended by someone else), or is not in ``only_from``
        when that is given: then nothing is written. ``attempt``: the worker's, which makes the
        call safe to repeat (see ``jobstate``)."""
        states, fields = self.states, {"error": error, **made_by(manifest)}
        moved = (
            states.advance(job_id, JobStatus.FAILED, attempt=attempt, **fields)
            if only_from is None
            else states.advance_from(job_id, only_from, JobStatus.FAILED, attempt=attempt, **fields)
        )
        if moved is None:
            return False
        if manifest.beside is not None:
            try:
                self.write_beside(job_id, manifest, ERROR_NOTE, error_note(error), NOTE_TYPE)
            except Exception:  # the failure is recorded; its webhook must not be lost with the note
                log.exception("job %s: the note beside the inbox drop could not be written", job_id)
        if self.settings.webhook_on_error:
            self.notify(job_id, manifest, FailedWebhook(job_id=job_id, error=error, db_id=manifest.db_id))
        return True

    def write_beside(self, job_id: str, manifest: Manifest, suffix: str, data: bytes, content_type: str) -> None:
        """``talks/a.srt`` beside ``talks/a.mp4``, over an earlier one of this job's only: a file
        there that is not the job's (a person's own, another drop's transcript) is left as it is,
        and this one goes to the next free place (``layout.beside_keys``)."""
        assert manifest.beside is not None
        bucket, places = manifest.beside.bucket, layout.beside_keys(manifest.beside.key, suffix, job_id)
        key = free_place(self.store, bucket, places, job_id)
        if key is None:
            raise InvalidInput(
                f"no name beside {manifest.beside.key} is free for its {suffix}: each holds another file"
            )
        put_bytes(self.store, bucket, key, data, content_type=content_type, metadata={layout.OUTPUT_MARKER: job_id})

    def rewrite_beside(self, job_id: str, manifest: Manifest, record: StatusRecord) -> list[str]:
        """What an ended inbox job leaves beside its drop, written again where it is missing (the
        drop was put back after its transcript or error note was deleted), from what the job
        stored: nothing is transcribed again, and a file that is there, edited or not, is left as
        it is. Returns the suffixes written."""
        assert manifest.beside is not None
        owed: dict[str, Callable[[], tuple[bytes, str]]] = {}  # suffix -> its content and type, read if missing
        if record.status == JobStatus.FINISHED:
            for fmt in manifest.options.output:
                owed[fmt] = partial(self._stored_result, record.outputs[fmt], fmt)
            if record.warnings:
                owed[WARNINGS_NOTE] = lambda: (warnings_note(record.warnings), NOTE_TYPE)
        elif record.status == JobStatus.FAILED:
            owed[ERROR_NOTE] = lambda: (error_note(record.error or "failed"), NOTE_TYPE)
        written = []
        for suffix, content in owed.items():
            places, bucket = layout.beside_keys(manifest.beside.key, suffix, job_id), manifest.beside.bucket
            # Anything in the first place (the job's output, edited or not, or a person's file), or
            # the job's output in another: there already.
            there = places and (
                self.store.stat(bucket, places[0]) is not None
                or any(self._written_by(job_id, bucket, key) for key in places[1:])
            )
            if places and not there:
                self.write_beside(job_id, manifest, suffix, *content())
                written.append(suffix)
        return written

    def _written_by(self, job_id: str, bucket: str, key: str) -> bool:
        """Whether ``key`` holds an output of this job, as the job wrote it."""
        there = self.store.stat(bucket, key)
        return there is not None and there.metadata.get(layout.OUTPUT_MARKER) == job_id

    def _stored_result(self, key: str, fmt: str) -> tuple[bytes, str]:
        return get_bytes(self.store, self.settings.minio_bucket, key), CONTENT_TYPES[fmt]

    def callback_url(self, manifest: Manifest) -> str | None:
        url = manifest.callback_url or self.settings.default_callback_url
        return str(url) if url is not None else None

    def notify(self, job_id: str, manifest: Manifest, payload: FinishedWebhook | FailedWebhook) -> None:
        url = self.callback_url(manifest)
        if url is None:
            return
        try:
            jobqueue.queue_webhook(self.conn, job_id, url, payload)
        except redis.RedisError:
            log.exception("job %s: could not queue its webhook", job_id)

    def finished_webhook(self, job_id: str, manifest: Manifest, record: StatusRecord) -> FinishedWebhook:
        links = {fmt: self.result_url(job_id, record.outputs[fmt], fmt) for fmt in manifest.options.output}
        main = manifest.options.main_output
        return FinishedWebhook(
            job_id=job_id,
            language=record.language,
            duration=record.duration,
            output=main,
            minio_url=links[main],
            db_id=manifest.db_id,
            outputs=links,
            warnings=record.warnings,
        )

    def result_url(self, job_id: str, key: str, fmt: str) -> str:
        presigned = self.store.download_url(self.settings.minio_bucket, key)
        base = self.settings.public_api_url.rstrip("/")
        return presigned or f"{base}/v1/jobs/{job_id}/result?format={fmt}"

    def webhook_owed(self, manifest: Manifest, record: StatusRecord) -> bool:
        """An ended job that should have a webhook and has none queued: its worker died between
        writing the final status and queueing the webhook."""
        if record.webhook is not None or self.callback_url(manifest) is None:
            return False
        if record.status == JobStatus.FINISHED:
            return all(fmt in record.outputs for fmt in manifest.options.output)
        return record.status == JobStatus.FAILED and self.settings.webhook_on_error

    def send_owed(self, job_id: str, manifest: Manifest, record: StatusRecord) -> None:
        if record.status == JobStatus.FINISHED:
            self.notify(job_id, manifest, self.finished_webhook(job_id, manifest, record))
        else:
            error = record.error or "failed"
            self.notify(job_id, manifest, FailedWebhook(job_id=job_id, error=error, db_id=manifest.db_id))
