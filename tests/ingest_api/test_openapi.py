"""The OpenAPI document is complete: a valid OpenAPI 3.1 document in which every response of every
operation, errors included, has an example, and every JSON example fits its schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from ingest_api.app import create_app
from ingest_api.settings import ApiSettings

SPEC = create_app(ApiSettings()).openapi()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in SPEC["paths"].items()
    for method, operation in operations.items()
]
IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]


def examples_of(media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    return [example["value"] for example in media.get("examples", {}).values()]


def fits(example: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator({**schema, "components": SPEC["components"]})
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(example)]
    assert errors == [], example


def test_the_document_is_valid_openapi() -> None:
    validate(SPEC)
    assert {method for method, _, _ in OPERATIONS} >= {"GET", "POST", "DELETE"}
    assert len(OPERATIONS) >= 10


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_every_response_has_examples_that_fit_its_schema(method: str, path: str, operation: dict) -> None:
    assert operation.get("summary"), f"{method} {path} has no summary"
    for status, response in operation["responses"].items():
        assert response.get("description"), f"{status} of {method} {path} has no description"
        content = response.get("content")
        assert content, f"{status} of {method} {path} has no content"
        for media_type, media in content.items():
            found = examples_of(media)
            assert found, f"{status} {media_type} of {method} {path} has no example"
            if media_type == "application/json" and "schema" in media:
                for example in found:
                    fits(example, media["schema"])


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_every_error_a_route_can_answer_is_documented(method: str, path: str, operation: dict) -> None:
    documented = set(operation["responses"])
    expected = set()
    if path.startswith("/v1/"):
        expected |= {"401", "403"}  # API keys
        expected |= {"503"} if not path.startswith("/v1/audio") else {"400", "413", "504"}
    if "{job_id}" in path:
        expected |= {"404"}
    status_by_post = (method, path) == ("POST", "/v1/jobs/{job_id}")  # GET's twin: no body, no query
    if (method in {"POST", "DELETE"} and not status_by_post) or path.endswith("/result"):
        expected |= {"422"} if not path.startswith("/v1/audio") else set()
    if method == "DELETE" or path.endswith("/result"):
        expected |= {"409", "410"}
    if path == "/v1/transcribe":
        expected |= {"413"}
    if path == "/readyz":
        expected |= {"503"}
    assert expected <= documented, f"{method} {path}: undocumented {sorted(expected - documented)}"


def test_request_bodies_have_examples_that_fit() -> None:
    for method, path, operation in OPERATIONS:
        body = operation.get("requestBody")
        if body is None:
            continue
        for media_type, media in body["content"].items():
            if media_type == "multipart/form-data" and path.startswith("/v1/audio"):
                continue  # OpenAI's own form: the fields are documented one by one in its schema
            found = examples_of(media)
            assert found, f"{method} {path} {media_type} has no request example"
            for example in found:
                fits(example, media["schema"])
