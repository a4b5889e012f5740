"""Examples for the OpenAPI document: every endpoint's answers, errors included, so that /docs
shows what each call really returns. ``tests/ingest_api/test_openapi.py`` checks that every
response of every operation has an example and that each JSON example fits its schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

JOB_ID = "3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f"
LINKS = {"self": f"/v1/jobs/{JOB_ID}", "result": f"/v1/jobs/{JOB_ID}/result"}
NO_RESULT_LINKS = {**LINKS, "result": None}


class ErrorBody(BaseModel):
    """Every 4xx and 5xx of the service's own routes: a sentence saying what is wrong, and the
    field it is about when it is about one (``ingest_api.invalid``)."""

    detail: str
    field: str | None = Field(None, description="The field the error is about: 'language', 'limit', 'options.output'.")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """Errors of the OpenAI-compatible route, in OpenAI's shape."""

    error: OpenAIErrorDetail


ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    401: (
        "API keys are set (API_KEYS) and the request has none",
        {"detail": "an API key is required: send 'Authorization: Bearer <key>'"},
    ),
    403: ("The API key is not one of API_KEYS", {"detail": "the API key is not valid"}),
    404: ("No such job", {"detail": f"no job '{JOB_ID}'"}),
    409: (
        "The job's state does not allow this",
        {
            "detail": f"job {JOB_ID} has already ended (finished); there is nothing to cancel "
            "(delete_objects=true deletes its objects)"
        },
    ),
    410: ("The job was deleted (DELETE with delete_objects)", {"detail": f"job {JOB_ID} was deleted"}),
    413: ("The upload or JSON body is too large", {"detail": "the upload is larger than MAX_UPLOAD_MB (2048 MiB)"}),
    429: (
        "This API key has MAX_QUEUED_PER_KEY jobs queued or running; Retry-After says when to try again",
        {"detail": "this API key has 1000 jobs queued or running (MAX_QUEUED_PER_KEY); submit more as they end"},
    ),
    503: (
        "Redis or the object store does not answer; try again",
        {"detail": "a backing service (Redis) is unavailable; try again shortly"},
    ),
}


def error(code: int, description: str | None = None, example: dict[str, Any] | None = None) -> dict[str, Any]:
    default_description, default_example = ERRORS.get(code, ("", {}))
    return {
        "model": ErrorBody,
        "description": description or default_description,
        "content": {"application/json": {"example": example or default_example}},
    }


def invalid(*examples: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """The 422 of a route, with named examples of what it refuses."""
    return {
        "model": ErrorBody,
        "description": "The request does not validate; detail says what, field says where",
        "content": {
            "application/json": {"examples": {name: {"summary": name, "value": value} for name, value in examples}}
        },
    }


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: error(code) for code in codes}


AUTH = (401, 403)

NOT_A_BOOLEAN = (
    "delete_objects is not a boolean",
    {"detail": "delete_objects: should be true or false", "field": "delete_objects"},
)
BAD_FORMAT = ("unknown format", {"detail": "unknown format 'docx'; choose one of srt, vtt, txt, tsv, json"})


def ok(example: Any, media_type: str = "application/json", description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"example": example}}}


def ok_examples(examples: dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    return {
        "description": "OK",
        "content": {media_type: {"examples": {name: {"summary": name, "value": v} for name, v in examples.items()}}},
    }


JOB_VIEWS = {
    "started": {
        "job_id": JOB_ID,
        "status": "started",
        "progress": 42.5,
        "language": "en",
        "duration": 612.3,
        "error": None,
        "warnings": [],
        "updated_at": "2026-11-24T10:15:02.120000Z",
        "webhook": None,
        "links": LINKS,
    },
    "finished": {
        "job_id": JOB_ID,
        "status": "finished",
        "progress": 100,
        "language": "en",
        "duration": 612.3,
        "error": None,
        "warnings": [
            "the language was detected as 'en' with a probability of only 0.41, below LANGUAGE_CONFIDENCE_MIN "
            "(0.8); the transcript may be in the wrong language: if so, name the language in 'language'"
        ],
        "updated_at": "2026-11-24T10:16:40.500000Z",
        "webhook": {
            "url": "https://hooks.example.com/transcripts",
            "message_id": f"msg_{JOB_ID}_finished",
            "state": "delivered",
            "attempts": [{"at": "2026-11-24T10:16:40.900000Z", "status_code": 204, "error": None}],
            "next_attempt_at": None,
        },
        "links": LINKS,
    },
    "failed": {
        "job_id": JOB_ID,
        "status": "failed",
        "progress": 0,
        "language": None,
        "duration": None,
        "error": "not an audio or video file: ffprobe found no media streams",
        "warnings": [],
        "updated_at": "2026-11-24T10:15:01.000000Z",
        "webhook": None,
        "links": NO_RESULT_LINKS,
    },
    "deleted": {
        "job_id": JOB_ID,
        "status": "deleted",
        "progress": 100,
        "language": "en",
        "duration": 612.3,
        "error": None,
        "warnings": [],
        "updated_at": "2026-11-24T10:20:00.000000Z",
        "webhook": None,
        "links": NO_RESULT_LINKS,
    },
}

SRT = "1\n00:00:00,000 --> 00:00:03,200\nThe weather today is cold and windy\n\n"
VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:03.200\nThe weather today is cold and windy\n\n"
TXT = "The weather today is cold and windy with a chance of rain in the afternoon.\n"
TSV = "start\tend\ttext\n0\t3200\tThe weather today is cold and windy\n"
SEGMENT: dict[str, Any] = {
    "id": 0,
    "start": 0.0,
    "end": 3.2,
    "text": "The weather today is cold and windy",
    "words": None,
    "seek": 0,
    "tokens": [50364, 440, 5503],
    "temperature": 0.0,
    "avg_logprob": -0.21,
    "compression_ratio": 1.2,
    "no_speech_prob": 0.01,
}
TRANSCRIPT_JSON = {
    "job_id": JOB_ID,
    "language": "en",
    "language_probability": 0.98,
    "duration": 12.75,
    "segments": [SEGMENT],
    "options": {"language": None, "task": "transcribe", "output": ["srt"], "vad_filter": True},
    "model": "small",
}

METRICS = (
    "# HELP transcribe_api_requests_total HTTP requests answered.\n"
    "# TYPE transcribe_api_requests_total counter\n"
    'transcribe_api_requests_total{method="POST",route="/v1/transcribe",status="202"} 1532.0\n'
)


def without_impossible_422(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents a 422 for every route with a parameter, in pydantic's shape: one whose
    query, headers or body may not validate answers ``ErrorBody`` (``ingest_api.invalid``); a plain
    string path parameter cannot fail validation, so a route with no other is left without."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "422" in responses and responses["422"].get("description") == "Validation Error":
                checked = [p for p in operation.get("parameters", []) if p.get("in") != "path"]
                if checked or operation.get("requestBody"):  # a query, a header or a body may not validate
                    first = checked[0] if checked else {"name": "url", "in": "body"}
                    name = first["name"].lower() if first["in"] == "header" else first["name"]  # as an error names it
                    example = {"detail": f"{name}: what is wrong with it, in a sentence", "field": name}
                    responses["422"] = {
                        "description": "A parameter does not validate; detail says what, field says which",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorBody"},
                                "example": example,
                            }
                        },
                    }
                else:
                    del responses["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        if name not in str(schema.get("paths")):
            components.pop(name, None)
    return schema


EVENT_STREAM_EXAMPLE = f'event: job\ndata: {{"job_id": "{JOB_ID}", "status": "started", "progress": 42.0, ...}}\n\n'


def event_streams_as_openapi_31(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI describes an event stream's messages with OpenAPI 3.2's ``itemSchema``; this
    document is 3.1, where the stream is a string (each message's ``data`` is described in words)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                stream = content.get("text/event-stream")
                if stream is None:
                    continue
                if not code.startswith("2"):  # an error is JSON, before any stream begins
                    content.get("application/json", {}).setdefault("schema", content.pop("text/event-stream")["schema"])
                elif "itemSchema" in stream:
                    del stream["itemSchema"]
                    stream.update(schema={"type": "string"}, example=EVENT_STREAM_EXAMPLE)
    return schema
