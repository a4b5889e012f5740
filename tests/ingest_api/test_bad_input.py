"""Inputs that used to get a 500 (issue 15, finding 9) or be taken without bound (finding 4), each
now a 4xx saying what to change; through the real app on a real Redis and a local store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from ingest_api.app import create_app
from ingest_api.settings import ApiSettings
from tests.helpers import SPEECH
from transcribe_common import layout

BOUNDARY = "b0undary"
AUDIO = (SPEECH / "upload.mp3").read_bytes()


@pytest.fixture
def client(redis_conn, tmp_path: Path, redis_server: str) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    app = create_app(ApiSettings(redis_url=redis_server, store_dir=tmp_path / "buckets"))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def part(headers: bytes, body: bytes) -> bytes:
    return b"--" + BOUNDARY.encode() + b"\r\n" + headers + b"\r\n\r\n" + body + b"\r\n"


def field(name: bytes, value: bytes) -> bytes:
    return part(b'Content-Disposition: form-data; name="' + name + b'"', value)


def the_file(filename: bytes = b"a.mp3", content_type: bytes = b"audio/mpeg") -> bytes:
    disposition = b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"'
    return part(disposition + b"\r\nContent-Type: " + content_type, AUDIO)


def send(client: TestClient, *parts: bytes, path: str = "/v1/transcribe") -> httpx.Response:
    body = b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n"
    return client.post(path, content=body, headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})


def post(client: TestClient, *parts: bytes, path: str = "/v1/transcribe") -> tuple[int, str]:
    response = send(client, *parts, path=path)
    detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else None
    if detail is None:  # the OpenAI route's shape
        detail = (response.json().get("error") or {}).get("message", response.text)
    return response.status_code, str(detail)


@pytest.mark.parametrize(("path", "code"), [("/v1/transcribe", 422), ("/v1/audio/transcriptions", 400)])
def test_a_field_name_that_is_not_utf8_is_refused(client: TestClient, path: str, code: int) -> None:
    status, detail = post(client, field(b"source_type", b"upload"), field(b"\xff\xfe", b"x"), the_file(), path=path)
    assert (status, detail) == (code, "a form field's name is not valid UTF-8")


@pytest.mark.parametrize("declared", [b"audio/\xff", "audio/中".encode(), b"audio/mpeg\x00text/html", b""])
def test_a_part_s_declared_content_type_is_not_kept_whatever_it_holds(client: TestClient, declared: bytes) -> None:
    """Issue 31: one declared 'audio/中' made that job's /input a 500; one with a NUL dropped the
    connection; one not UTF-8 was a 422. What the file is, is read from its bytes (ingest_api.media)."""
    response = send(client, field(b"source_type", b"upload"), the_file(content_type=declared))
    assert response.status_code == 202, response.text
    served = client.get(f"/v1/jobs/{response.json()['job_id']}/input")
    assert (served.status_code, served.headers["content-type"]) == (200, "audio/mpeg")
    assert served.content == AUDIO


def test_json_nested_thirty_thousand_deep_is_a_422(client: TestClient) -> None:
    response = client.post(
        "/v1/transcribe", content=b"[" * 30000 + b"]" * 30000, headers={"content-type": "application/json"}
    )
    assert response.status_code in (413, 422), response.text  # 60 KB fits MAX_JSON_BYTES: refused as too deep
    assert response.json()["detail"] == "the body is not valid JSON here: it is nested too deeply"


def test_a_long_unicode_filename_is_cut_by_bytes_and_stored(client: TestClient, tmp_path: Path) -> None:
    name = ("会" * 230 + ".mp3").encode()  # 694 bytes: more than a file system's 255
    status, _ = post(client, field(b"source_type", b"upload"), the_file(filename=name))
    assert status == 202
    [stored] = [p for p in (tmp_path / "buckets" / "transcribe").rglob("*.mp3")]
    assert len(stored.name.encode()) <= layout.SAFE_NAME_BYTES
    assert stored.name.endswith("会.mp3")
    assert stored.read_bytes() == AUDIO


def test_a_field_given_twice_is_refused(client: TestClient) -> None:
    status, detail = post(
        client, field(b"source_type", b"upload"), field(b"db_id", b"1"), field(b"db_id", b"2"), the_file()
    )
    assert (status, detail) == (422, "form field 'db_id' is given more than once; give it once")


def test_a_list_field_may_repeat_but_not_without_end(client: TestClient) -> None:
    repeated = [field(b"timestamp_granularities[]", b"word")] * 9
    status, detail = post(client, field(b"model", b"whisper-1"), *repeated, the_file(), path="/v1/audio/transcriptions")
    assert status == 400
    assert detail == "form field 'timestamp_granularities[]' is given too often (at most 8 times)"


def test_text_fields_have_a_maximum_length(client: TestClient) -> None:
    status, _ = post(client, field(b"source_type", b"upload"), field(b"db_id", b"x" * 257), the_file())
    assert status == 422
    long_url = {"source_type": "url", "url": "https://93.184.215.14/" + "a" * 2100}
    assert client.post("/v1/transcribe", json=long_url).status_code == 422
    assert (
        client.post(
            "/v1/transcribe", json={**long_url, "url": "https://93.184.215.14/a.mp3", "db_id": "x" * 256}
        ).status_code
        == 202
    )


def test_a_long_inbox_name_still_has_room_for_its_notes() -> None:
    key = "talks/" + "x" * 242 + ".mp3"  # 246 bytes: its .error.txt, 252, and that one's sidecar would not fit
    assert len(layout.beside_key(key, "error.txt").rsplit("/", 1)[1].encode() + b".json") <= 255
    longer = "talks/" + "ü" * 125 + ".mp3"
    note = layout.beside_key(longer, "warnings.txt").rsplit("/", 1)[1]
    assert len(note.encode()) <= 255
    assert note.endswith("ü.warnings.txt")


@pytest.mark.parametrize(
    "body",
    [
        b'{"source_type": "\\ud800"}',
        b'{"source_type": "url", "url": "https://a.example/\\udfff.mp3"}',
        b'{"source_type": "url", "url": "https://a.example/a.mp3", "db_id": "\\ud800"}',
        b'{"\\ud800": 1, "source_type": "url"}',
    ],
)
def test_json_with_half_a_surrogate_pair_is_refused(client: TestClient, body: bytes) -> None:
    """Issue 31: ``\\ud800`` is valid JSON but no character; the 422 that echoed it could not be
    encoded, and was a 500."""
    answer = client.post("/v1/transcribe", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert "surrogate" in answer.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/transcribe", "/v1/audio/transcriptions"])
def test_a_multipart_boundary_longer_than_the_parser_takes_is_refused(client: TestClient, path: str) -> None:
    boundary = "b" * 300
    body = f'--{boundary}\r\ncontent-disposition: form-data; name="source_type"\r\n\r\nupload\r\n--{boundary}--\r\n'
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    answer = client.post(path, content=body.encode(), headers=headers)
    assert 400 <= answer.status_code < 500, answer.text
    assert "boundary" in answer.text
