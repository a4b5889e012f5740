"""Request and response bodies of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from transcribe_common.models import DbId, JobOptions, JobStatus, ShardCount, Url, WebhookDelivery


class TranscribeRequest(JobOptions):
    """A job: the source, how to transcribe it, and whom to tell."""

    source_type: Literal["url", "upload"]
    url: Url | None = Field(None, description="Source to fetch, for source_type=url.")
    callback_url: Url | None = Field(None, description="Receives a POST when the job ends.")
    db_id: DbId | None = Field(None, description="Your own reference, echoed in webhooks (at most 256 characters).")

    @model_validator(mode="after")
    def _url_matches_source_type(self) -> TranscribeRequest:
        if self.source_type == "url" and self.url is None:
            raise ValueError("'url' is required when source_type is 'url'")
        if self.source_type == "upload" and self.url is not None:
            raise ValueError("'url' is not allowed when source_type is 'upload'")
        if self.speaker_labels and not self.multichannel:
            raise ValueError("speaker_labels name the speakers of the channels: give multichannel=true with them")
        return self

    def options(self) -> JobOptions:
        return JobOptions.model_validate(self.model_dump(include=set(JobOptions.model_fields)))


Source = Literal["upload", "url", "inbox"]


class JobLinks(BaseModel):
    self: str
    result: str | None = Field(None, description="Where the result is, or will be; none once it cannot be.")


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus = JobStatus.QUEUED
    links: JobLinks


class JobView(BaseModel):
    job_id: str
    status: JobStatus
    progress: float = Field(description="Percent of the audio transcribed, 0-100.")
    language: str | None = None
    duration: float | None = Field(None, description="Seconds of audio.")
    error: str | None = None
    warnings: list[str] = Field(
        default_factory=list, description="Findings about the transcript (a weak language detection, no speech, ...)."
    )
    filename: str | None = Field(
        None, description="The name a person knows the input by: the upload's file name, the URL, or the inbox key."
    )
    source: Source | None = Field(None, description="Where the input came from.")
    created_at: datetime | None = Field(None, description="When the job was submitted (or the file dropped).")
    started_at: datetime | None = Field(None, description="When a worker started it (its latest attempt).")
    finished_at: datetime | None = Field(None, description="When it ended: finished, failed or cancelled.")
    model: str | None = Field(None, description="The model asked for, or the one the worker runs it with.")
    options: JobOptions | None = Field(None, description="How it is transcribed, as submitted.")
    db_id: DbId | None = Field(None, description="Your own reference, as submitted.")
    updated_at: datetime | None = None
    webhook: WebhookDelivery | None = Field(None, description="The job's webhook and each attempt to deliver it.")
    shards: ShardCount | None = Field(
        None, description="A long or multichannel job, split into shards that run in parallel: how many, and done."
    )
    links: JobLinks


class JobPage(BaseModel):
    jobs: list[JobView] = Field(description="Newest first.")
    next_cursor: str | None = Field(None, description="Pass as 'cursor' for the next page; none after the last.")


class Stats(BaseModel):
    queued: int
    started: int
    failed: int
    finished: int
    cancelled: int = 0
    deleted: int = 0
    workers: int


def links(job_id: str, status: JobStatus = JobStatus.QUEUED) -> JobLinks:
    """A result link while the job has a result or may still get one."""
    result = None if status.is_final and status != JobStatus.FINISHED else f"/v1/jobs/{job_id}/result"
    return JobLinks(self=f"/v1/jobs/{job_id}", result=result)
