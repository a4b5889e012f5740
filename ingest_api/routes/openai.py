"""OpenAI's ``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations``, so that clients
written for OpenAI work unchanged. The two differ only in their form (``AudioForm``'s subclasses:
a translation is the ``translate`` task, with no ``language`` field, as at OpenAI).

The upload becomes an ordinary job (input and manifest in the bucket; the router, a worker and
the webhook sender do the rest, as for any job), and the request waits for it to end, up to
``OPENAI_WAIT_TIMEOUT``. The answer is in the ``response_format`` asked for: ``json`` (the text),
``text``, ``srt``, ``vtt``, ``verbose_json`` (language, duration, segments, and words when
``timestamp_granularities[]`` holds ``word``) or ``diarized_json`` (segments with their speaker).
Speakers are told apart by channel: ``diarized_json`` needs ``multichannel=true`` (a field of
ours), and ``known_speaker_names[]`` names the channels' speakers in order. Errors have OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``. Every answer names its job in ``X-Job-Id``.

Differences from OpenAI's service: ``model`` is ``whisper-1`` (the workers' default model) or a
model the workers serve (``GET /v1/models``); ``language`` in ``verbose_json`` is the ISO 639-1
code Whisper detected (``en``), not the English name (for a translation too: the spoken language,
where OpenAI says ``english``); ``temperature`` is accepted and not used
(the workers decode with their own fallback temperatures); streaming is not offered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from ingest_api import docs, jobs, submit
from ingest_api.auth import Identity, authorize, bearer
from ingest_api.invalid import field_named, sentence
from ingest_api.schemas import TranscribeRequest
from ingest_api.services import Services, ServicesDep
from ingest_api.upload import TooLarge
from transcribe_common import layout
from transcribe_common.errors import InvalidInput, NotFound, PipelineError
from transcribe_common.models import JobStatus, StatusRecord

log = logging.getLogger(__name__)

PREFIX = "/v1/audio"
router = APIRouter(prefix=PREFIX, tags=["openai"])

DEFAULT_MODEL = "whisper-1"
POLL_SECONDS = 0.1
ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
TranslationFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
Granularity = Literal["word", "segment"]
STORED_FORMAT: dict[str, str] = {
    "json": "json",
    "verbose_json": "json",
    "diarized_json": "json",
    "text": "json",  # running text, as OpenAI answers it: the segments' texts joined by spaces
    "srt": "srt",
    "vtt": "vtt",
}
MEDIA_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt"}
# The job's warnings (gpu_worker.findings), a JSON list of sentences, on every answer that has any:
# OpenAI's shapes have no place for them, and its clients ignore a header they do not know.
WARNINGS_HEADER = "X-Job-Warnings"


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code
        self.job_id: str | None = None

    @property
    def type(self) -> str:
        if self.status in (401, 403):
            return "authentication_error" if self.status == 401 else "permission_error"
        return "invalid_request_error" if self.status < 500 else "server_error"

    def response(self) -> JSONResponse:
        body = {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}
        headers = {"X-Job-Id": self.job_id} if self.job_id else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def invalid(exc: RequestValidationError) -> OpenAIError:
    """A bad field, in OpenAI's shape: the sentence ``ingest_api.invalid`` makes, the field as ``param``."""
    message, field = sentence(exc.errors())
    return OpenAIError(400, message, param=field)


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenAIError)
    return exc.response()


async def openai_caller(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Identity:
    """The API key check of every /v1 route, its refusals in OpenAI's shape."""
    try:
        return await authorize(request, services, credentials)
    except HTTPException as exc:
        code = "rate_limit_exceeded" if exc.status_code == 429 else "invalid_api_key"
        raise OpenAIError(exc.status_code, str(exc.detail), code=code) from exc


class AudioForm(BaseModel):
    """The form fields both of OpenAI's audio routes take (others are ignored, as OpenAI adds new ones)."""

    model_config = ConfigDict(allow_inf_nan=False)

    task: ClassVar[str] = "transcribe"
    file: bytes = Field(description="The audio or video file.")
    model: str = Field(DEFAULT_MODEL, description="whisper-1 (the default model) or a model from GET /v1/models.")
    prompt: str | None = Field(None, description="Text to guide the style, or earlier text of the same audio.")
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0, le=1, description="Accepted for compatibility; not used.")

    @property
    def wants_words(self) -> bool:
        return False

    def check(self) -> None:
        """Refuse what the fields allow one by one but not together (``InvalidInput``)."""

    def job_fields(self) -> dict[str, object]:
        """The job's options, in ``TranscribeRequest``'s names (the model aside)."""
        return {"task": self.task, "initial_prompt": self.prompt, "output": [STORED_FORMAT[self.response_format]]}


class TranscriptionForm(AudioForm):
    """``POST /v1/audio/transcriptions``: the speech as it was spoken."""

    language: str | None = Field(None, description="ISO 639-1 code of the speech; detected if left out.")
    timestamp_granularities: list[Granularity] = Field(
        default_factory=lambda: list[Granularity](["segment"]),
        alias="timestamp_granularities[]",
        description="With response_format=verbose_json: 'word' adds word timestamps.",
    )
    multichannel: bool = Field(
        False, description="Not OpenAI's: transcribe each channel on its own, its speaker named by channel."
    )
    known_speaker_names: list[str] | None = Field(
        None, alias="known_speaker_names[]", description="With multichannel: the channels' speakers, in order."
    )

    @property
    def wants_words(self) -> bool:
        return "word" in self.timestamp_granularities and self.response_format == "verbose_json"

    def check(self) -> None:
        if self.response_format == "diarized_json" and not self.multichannel:
            raise InvalidInput(
                "response_format: diarized_json needs multichannel=true; speakers are told apart by channel here"
            )

    def job_fields(self) -> dict[str, object]:
        return {
            **super().job_fields(),
            "language": self.language,
            "word_timestamps": self.wants_words,
            "multichannel": self.multichannel,
            "speaker_labels": self.known_speaker_names,
        }


class TranslationForm(AudioForm):
    """``POST /v1/audio/translations``: the speech in English, whatever it was spoken in (Whisper's
    ``translate`` task). OpenAI's has no ``language`` field: the spoken one is detected. Ours takes
    one (``extra_body={"language": "id"}`` from OpenAI's client): a detection that goes wrong (a
    short clip, a small model) otherwise leaves the caller no way to say what was spoken."""

    task: ClassVar[str] = "translate"
    response_format: TranslationFormat = "json"
    language: str | None = Field(
        None, description="Not OpenAI's: ISO 639-1 code of the speech, when its detection goes wrong."
    )

    def job_fields(self) -> dict[str, object]:
        return {**super().job_fields(), "language": self.language}


class Transcription(BaseModel):
    text: str


class DiarizedSegment(BaseModel):
    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    speaker: str


class DiarizedTranscription(BaseModel):
    task: Literal["transcribe"] = "transcribe"
    duration: float
    text: str
    segments: list[DiarizedSegment]


class VerboseTranscription(BaseModel):
    task: str = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[dict[str, Any]]
    words: list[dict[str, Any]] | None = None


def _error_doc(status: int, description: str, *examples: tuple[str, str, str | None]) -> dict[str, Any]:
    def body(message: str, code: str | None) -> dict[str, Any]:
        kind = OpenAIError(status, message).type
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    return {
        "model": docs.OpenAIErrorBody,
        "description": description,
        "content": {
            "application/json": {
                "examples": {name: {"summary": name, "value": body(msg, code)} for name, msg, code in examples}
            }
        },
    }


VERBOSE_EXAMPLE = {
    "task": "transcribe",
    "language": "en",
    "duration": 12.75,
    "text": "The weather today is cold and windy",
    "segments": [{k: v for k, v in docs.SEGMENT.items() if k != "words"}],
    "words": [{"word": "The", "start": 0.0, "end": 0.18}, {"word": "weather", "start": 0.18, "end": 0.52}],
}


def _documented(form: type[AudioForm], formats: str, speech: str) -> dict[str, Any]:
    """The OpenAPI description both routes share: their answers, their errors, their form."""
    return {
        "responses": {
            200: {
                "description": f"The {speech} in response_format; X-Job-Id names the job",
                "content": {
                    "application/json": {
                        "examples": {
                            "json": {"summary": "response_format=json", "value": {"text": docs.TXT.strip()}},
                            "verbose_json": {
                                "summary": "response_format=verbose_json",
                                "value": {**VERBOSE_EXAMPLE, "task": form.task},
                            },
                        }
                    },
                    "text/plain": {"example": docs.TXT},
                    "application/x-subrip": {"example": docs.SRT},
                    "text/vtt": {"example": docs.VTT},
                },
            },
            400: _error_doc(
                400,
                "The request or its file is refused, or the job failed",
                (
                    "model not served",
                    "model: 'gpt-4o-transcribe' is not served here; choose one of whisper-1, small",
                    None,
                ),
                ("not audio", "not an audio or video file: ffprobe found no media streams", "job_failed"),
                ("bad field", f"response_format: Input should be {formats}", None),
            ),
            401: _error_doc(
                401,
                "API keys are set and the request has none",
                ("no key", "an API key is required: send 'Authorization: Bearer <key>'", "invalid_api_key"),
            ),
            403: _error_doc(
                403, "The API key is not valid", ("wrong key", "the API key is not valid", "invalid_api_key")
            ),
            409: _error_doc(
                409, "The job was cancelled meanwhile", ("cancelled", "the job was cancelled", "job_cancelled")
            ),
            413: _error_doc(
                413, "The file is too large", ("too large", "the upload is larger than MAX_UPLOAD_MB (2048 MiB)", None)
            ),
            500: _error_doc(
                500,
                "The job finished but its result cannot be read",
                ("result unreadable", "the job finished but its result cannot be read: no such object", None),
            ),
            504: _error_doc(
                504,
                "Still running after OPENAI_WAIT_TIMEOUT; the job goes on (X-Job-Id)",
                (
                    "timeout",
                    f"the transcription is still started after OPENAI_WAIT_TIMEOUT (1800 s); it goes on: "
                    f"GET /v1/jobs/{docs.JOB_ID}",
                    "timeout",
                ),
            ),
        },
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": form.model_json_schema(by_alias=True)}},
            }
        },
    }


@router.post(
    "/transcriptions",
    summary="OpenAI-compatible: transcribe an upload and wait for the text",
    response_model=Transcription | VerboseTranscription | DiarizedTranscription,
    **_documented(TranscriptionForm, "'json', 'text', 'srt', 'vtt', 'verbose_json' or 'diarized_json'", "transcript"),
)
async def create_transcription(
    request: Request, services: ServicesDep, caller: Annotated[Identity, Depends(openai_caller)]
) -> Response:
    return await _transcribe(request, services, caller, TranscriptionForm)


@router.post(
    "/translations",
    summary="OpenAI-compatible: translate the speech of an upload into English and wait for the text",
    response_model=Transcription | VerboseTranscription,
    **_documented(TranslationForm, "'json', 'text', 'srt', 'vtt' or 'verbose_json'", "English translation"),
)
async def create_translation(
    request: Request, services: ServicesDep, caller: Annotated[Identity, Depends(openai_caller)]
) -> Response:
    return await _transcribe(request, services, caller, TranslationForm)


async def _transcribe(request: Request, services: Services, caller: Identity, kind: type[AudioForm]) -> Response:
    """Either route: the upload becomes a job with the form's options, and the answer waits for it."""
    job_id = layout.new_job_id()
    chosen: dict[str, AudioForm] = {}

    def form_of(fields: dict[str, str]) -> TranscribeRequest:
        chosen["form"] = form = _form(fields, kind)
        return _job_request(services, form)

    try:
        await run_in_threadpool(submit.check_quota, services, caller.owner)
        early = lambda fields: _job_request(None, _form(fields, kind))  # noqa: E731  no I/O: it runs on the loop
        manifest, _ = await submit.accept_upload(services, request, job_id, form_of, early)
        manifest.owner = caller.owner
        await run_in_threadpool(submit.write_manifest, services, manifest)
    except RequestValidationError as exc:
        raise invalid(exc) from exc
    except TooLarge as exc:
        raise OpenAIError(413, str(exc), param="file") from exc
    except submit.TooManyQueued as exc:
        raise OpenAIError(429, str(exc), code="rate_limit_exceeded") from exc
    except InvalidInput as exc:
        raise OpenAIError(400, str(exc), param=field_named(str(exc))) from exc
    form = chosen["form"]
    record = await _wait(services, request, job_id, caller)
    try:
        return await run_in_threadpool(_answer, services, job_id, form, record, caller)
    except OpenAIError as exc:
        exc.job_id = job_id
        raise


def _form(fields: dict[str, str], kind: type[AudioForm]) -> AudioForm:
    values: dict[str, object] = {**fields, "file": b""}
    for listed in ("timestamp_granularities[]", "known_speaker_names[]"):
        if listed in fields:
            values[listed] = fields[listed].split(",")
    if fields.get("stream", "false").lower() == "true":
        raise InvalidInput("stream: streaming transcriptions are not offered; leave stream out")
    try:
        form = kind.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc
    form.check()
    return form


def _job_request(services: Services | None, form: AudioForm) -> TranscribeRequest:
    """The job the form asks for; with ``services``, for a model the workers serve (Redis says)."""
    model = None if form.model == DEFAULT_MODEL else form.model
    if services is not None and model is not None and model not in (served := submit.served_models(services)):
        choices = ", ".join([DEFAULT_MODEL, *served])
        raise InvalidInput(f"model: {form.model!r} is not served here; choose one of {choices}")
    return TranscribeRequest.model_validate({"source_type": "upload", "model": model, **form.job_fields()})


async def _wait(services: Services, request: Request, job_id: str, caller: Identity) -> StatusRecord:
    """Until the job ends, the caller goes away (the job goes on), or OPENAI_WAIT_TIMEOUT passes."""
    deadline = time.monotonic() + services.settings.openai_wait_timeout
    while True:
        record = await run_in_threadpool(jobs.read_status, services, job_id, caller)
        if record.status.is_final:
            return record
        if time.monotonic() > deadline:
            error = OpenAIError(
                504,
                f"the transcription is still {record.status.value} after OPENAI_WAIT_TIMEOUT "
                f"({services.settings.openai_wait_timeout:g} s); it goes on: GET /v1/jobs/{job_id}",
                code="timeout",
            )
            error.job_id = job_id
            raise error
        if await request.is_disconnected():
            raise OpenAIError(499, "the client went away; the job goes on", code="client_closed")
        await asyncio.sleep(POLL_SECONDS)


def _answer(services: Services, job_id: str, form: AudioForm, record: StatusRecord, caller: Identity) -> Response:
    headers = {"X-Job-Id": job_id}
    if record.warnings:
        headers[WARNINGS_HEADER] = json.dumps(record.warnings)  # ASCII: a header carries it whole
    status = record.status
    if status != JobStatus.FINISHED:
        message = record.error or f"the job was {status.value}"
        raise OpenAIError(400 if status == JobStatus.FAILED else 409, message, code=f"job_{status.value}")
    stored = STORED_FORMAT[form.response_format]
    try:
        _, _, stream = jobs.result_stream(services, job_id, stored, caller)
        content = b"".join(stream)
    except (NotFound, PipelineError) as exc:  # deleted meanwhile, or the store away: the log says which
        log.warning("job %s: its result cannot be read: %s", job_id, exc)
        raise OpenAIError(500, "the job finished but its result cannot be read; try again") from exc
    if form.response_format in MEDIA_TYPES:
        return PlainTextResponse(content.decode(), media_type=MEDIA_TYPES[form.response_format], headers=headers)
    transcript = json.loads(content)
    text = " ".join(segment["text"] for segment in transcript["segments"]).strip()
    if form.response_format == "text":
        return PlainTextResponse(f"{text}\n", headers=headers)
    if form.response_format == "json":
        return JSONResponse(Transcription(text=text).model_dump(), headers=headers)
    if form.response_format == "diarized_json":
        return JSONResponse(_diarized(transcript, text).model_dump(), headers=headers)
    return JSONResponse(_verbose(transcript, text, form).model_dump(exclude_none=True), headers=headers)


def _diarized(transcript: dict[str, Any], text: str) -> DiarizedTranscription:
    segments = [
        DiarizedSegment(
            id=f"seg_{segment['id']}",
            start=segment["start"],
            end=segment["end"],
            text=segment["text"],
            speaker=segment.get("speaker") or "",
        )
        for segment in transcript["segments"]
    ]
    return DiarizedTranscription(duration=transcript["duration"], text=text, segments=segments)


def _verbose(transcript: dict[str, Any], text: str, form: AudioForm) -> VerboseTranscription:
    segments = [
        {name: value for name, value in segment.items() if name != "words"} for segment in transcript["segments"]
    ]
    words = None
    if form.wants_words:
        words = [
            {"word": word["word"].strip(), "start": word["start"], "end": word["end"]}
            for segment in transcript["segments"]
            for word in segment.get("words") or []
        ]
    return VerboseTranscription(
        task=transcript["options"].get("task", "transcribe"),
        language=transcript["language"],
        duration=transcript["duration"],
        text=text,
        segments=segments,
        words=words,
    )
