"""The data that crosses service boundaries: what a job asks for (the manifest), what happened
to it (the status record) and what a webhook consumer receives."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints, field_validator

from transcribe_common.languages import WHISPER_LANGUAGES

OutputFormat = Literal["srt", "vtt", "txt", "tsv", "json"]
OUTPUT_FORMATS: tuple[str, ...] = ("srt", "vtt", "txt", "tsv", "json")
CONTENT_TYPES = {
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "json": "application/json",
}


# Every text a caller sends has a bound: a URL, and the caller's own reference echoed in webhooks.
MAX_URL_LENGTH = 2048
MAX_DB_ID_LENGTH = 256
Url = Annotated[AnyHttpUrl, UrlConstraints(max_length=MAX_URL_LENGTH)]
# An integer is a database's key: it fits 64 bits (4,000 digits passed the text's bound as a number).
DbId = Annotated[str, Field(max_length=MAX_DB_ID_LENGTH)] | Annotated[int, Field(ge=-(2**63), lt=2**63)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStatus(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Its objects were deleted (DELETE with delete_objects): only the live state is left to say so.
    DELETED = "deleted"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.DELETED)

    @property
    def stops_a_run(self) -> bool:
        """A running job in this state is stopped by its worker, which writes nothing more."""
        return self in (JobStatus.CANCELLED, JobStatus.DELETED)


class JobOptions(BaseModel):
    """How to transcribe; recorded in the result so that it can be reproduced."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a threshold of NaN compares as nothing

    language: str | None = Field(None, description="ISO 639-1 code such as 'en' or 'id'; detected if empty.")
    task: Literal["transcribe", "translate"] = "transcribe"
    output: list[OutputFormat] = Field(
        default_factory=lambda: list[OutputFormat](["srt"]),
        description="One format or several: 'srt', ['srt', 'vtt'] or 'srt,vtt'. The first is the main one.",
    )
    vad_filter: bool = Field(True, description="Skip silence with Silero VAD before decoding.")
    initial_prompt: str | None = Field(None, max_length=2000)
    word_timestamps: bool = False
    model: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="A model the workers serve (GET /v1/models); default: the worker's own MODEL_SIZE.",
    )
    language_confidence_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="With no language given: fail the job if the language is detected with a lower probability "
        "than this, instead of finishing with a warning.",
    )
    multichannel: bool = Field(
        False,
        description="Transcribe each audio channel on its own (a call with each party on its channel) and label "
        "every segment and word with its channel's speaker.",
    )
    speaker_labels: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None,
        max_length=32,
        description="With multichannel: the speakers' names by channel, 'agent,customer' or a list; "
        "default 'channel 1', 'channel 2', ...",
    )

    @field_validator("output", mode="before")
    @classmethod
    def _one_or_several(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, list):
            if not value:
                raise ValueError("name at least one output format")
            if all(isinstance(item, str) for item in value):  # others are refused by the type check
                value = list(dict.fromkeys(value))  # each format once, in the order asked
        return value

    @field_validator("speaker_labels", mode="before")
    @classmethod
    def _labels_listed(cls, value: object) -> object:
        if isinstance(value, str):  # a form field or object metadata
            value = [part.strip() for part in value.split(",")] if value.strip() else None
        return value

    def speaker(self, channel: int) -> str:
        """The speaker of channel ``channel`` (0 is the first)."""
        labels = self.speaker_labels or []
        return labels[channel] if channel < len(labels) else f"channel {channel + 1}"

    @property
    def main_output(self) -> OutputFormat:
        return self.output[0]

    @field_validator("language", mode="before")
    @classmethod
    def _known_language(cls, value: object) -> object:
        if value is None or value == "" or value == "auto":
            return None
        if not isinstance(value, str) or value.lower() not in WHISPER_LANGUAGES:
            raise ValueError(f"unknown language code {value!r}; use an ISO 639-1 code such as 'en', or omit it")
        return value.lower()


class UrlSource(BaseModel):
    type: Literal["url"] = "url"
    url: Url


class ObjectSource(BaseModel):
    type: Literal["object"] = "object"
    bucket: str
    key: str
    version_id: str | None = None


Source = Annotated[UrlSource | ObjectSource, Field(discriminator="type")]


class Manifest(BaseModel):
    """`<job_id>/manifest.json` in the jobs bucket: everything a worker needs to run the job."""

    job_id: str
    created_at: datetime = Field(default_factory=utcnow)
    origin: Literal["api", "inbox"]
    source: Source
    options: JobOptions = Field(default_factory=JobOptions)
    filename: str | None = None
    callback_url: Url | None = None
    db_id: DbId | None = None
    # Where an inbox drop's transcript goes: beside the dropped object, in the inbox bucket.
    beside: ObjectSource | None = None
    # The API key that submitted it (a digest; see ingest_api.auth); None for an inbox drop, and
    # when the API has no keys.
    owner: str | None = Field(None, pattern=r"^[0-9a-f]{16}$")
    # Set when the job was refused before it could run (bad object metadata, say): the worker
    # fails it with this message through the same road as any other failure.
    error: str | None = None
    # The fingerprint of the request that made it, when it came with an Idempotency-Key: a repeat
    # of that request is compared with it (see ingest_api.idempotency).
    request_fingerprint: str | None = None


class DeliveryAttempt(BaseModel):
    at: datetime
    status_code: int | None = Field(None, description="The receiver's HTTP status; none if it was not reached.")
    error: str | None = None


class WebhookDelivery(BaseModel):
    """The webhook of a job, and every attempt to deliver it."""

    url: str
    message_id: str = Field(description="The webhook-id header; the same on every attempt.")
    state: Literal["pending", "delivered", "failed"] = "pending"
    attempts: list[DeliveryAttempt] = Field(default_factory=list)
    next_attempt_at: datetime | None = None


class ShardCount(BaseModel):
    """How far a job split into shards has come (``gpu_worker.shards``)."""

    total: int
    done: int


class StatusRecord(BaseModel):
    """`<job_id>/status.json` in the jobs bucket, and the live copy in Redis."""

    job_id: str
    status: JobStatus
    progress: float = 0.0
    language: str | None = None
    duration: float | None = None
    error: str | None = None
    attempts: int = Field(0, description="How many times a worker has started the job.")
    drained: int = Field(0, description="How many of those starts a stopping worker put back; not crashes.")
    owner: str | None = Field(None, description="The API key that submitted it (a digest); None: the inbox.")
    worker: str | None = Field(None, description="The RQ worker running it, while started.")
    outputs: dict[str, str] = Field(default_factory=dict, description="Format -> key in the jobs bucket.")
    webhook: WebhookDelivery | None = None
    warnings: list[str] = Field(
        default_factory=list, description="What the worker found worth telling; see docs/api.md, 'Warnings'."
    )
    shards: ShardCount | None = Field(None, description="A long or multichannel job's shards: how many, how many done.")
    model: str | None = Field(None, description="The model the worker runs it with, once it has chosen.")
    started_at: datetime | None = Field(None, description="When its latest attempt started.")
    finished_at: datetime | None = Field(None, description="When it ended (finished, failed or cancelled).")
    updated_at: datetime = Field(default_factory=utcnow)

    @field_validator("outputs", "webhook", "warnings", mode="before")
    @classmethod
    def _json_from_redis(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value


class FinishedWebhook(BaseModel):
    job_id: str
    status: Literal["finished"] = "finished"
    language: str | None
    duration: float | None
    output: str
    minio_url: str
    db_id: DbId | None = None
    outputs: dict[str, str] = Field(default_factory=dict, description="Every format asked for -> its link.")
    warnings: list[str] = Field(default_factory=list, description="Findings about the transcript; empty if none.")


class FailedWebhook(BaseModel):
    job_id: str
    status: Literal["failed"] = "failed"
    error: str
    db_id: DbId | None = None
