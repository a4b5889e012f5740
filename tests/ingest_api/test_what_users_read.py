"""What a caller of the REST API reads when something is wrong, and what it is served (issue 34,
findings 7): one error shape, a bad field refused before the file goes up, an MP3 served as one,
every route in the document. Through the embedded stack over real HTTP."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest

from tests.conftest import SPEECH, Stack
from tests.helpers import wait_until


def refused(response: httpx.Response, status: int, field: str | None) -> str:
    """The one shape: {"detail": a sentence} and, for a field, {"field": its name}; nothing else."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str), body
    assert set(body) == ({"detail", "field"} if field else {"detail"}), body
    assert body.get("field") == field
    assert "Value error" not in body["detail"]
    assert "[{" not in body["detail"]
    return str(body["detail"])


def test_every_refusal_is_a_sentence_and_a_field_error_names_its_field(stack: Stack) -> None:
    jobs = f"{stack.url}/v1/jobs"
    said = refused(httpx.get(jobs, params={"status": "done"}), 422, "status")
    assert said.startswith("status: input should be 'queued'")
    refused(httpx.get(jobs, params={"limit": 500}), 422, "limit")
    said = refused(
        httpx.post(f"{stack.url}/v1/transcribe", data={"output": "srt"}, files={"file": b"x"}), 422, "source_type"
    )
    assert said == "source_type: field required"
    said = refused(
        httpx.post(
            f"{stack.url}/v1/transcribe", json={"source_type": "url", "url": "https://x/a.mp3", "language": "xx"}
        ),
        422,
        "language",
    )
    assert said.startswith("language: unknown language code 'xx'")
    bad_json = httpx.post(f"{stack.url}/v1/transcribe", content=b"{oops", headers={"content-type": "application/json"})
    assert refused(bad_json, 422, None).startswith("the body is not valid JSON")
    long_id = {"source_type": "url", "url": "https://x/", "db_id": "x" * 300}  # a union: str or int
    said = refused(httpx.post(f"{stack.url}/v1/transcribe", json=long_id), 422, "db_id")
    assert said == "db_id: string should have at most 256 characters"
    refused(httpx.get(f"{jobs}/nosuchjob"), 404, None)
    said = refused(httpx.delete(f"{jobs}/nosuchjob", params={"delete_objects": "maybe"}), 422, "delete_objects")
    assert said == "delete_objects: should be true or false"
    labels = {"source_type": "url", "url": "https://x/", "speaker_labels": "agent,customer"}  # no multichannel
    said = refused(httpx.post(f"{stack.url}/v1/transcribe", json=labels), 422, None)
    assert "give multichannel=true with them" in said
    unserved = {"source_type": "url", "url": "https://x/", "model": "large-v9"}
    said = refused(httpx.post(f"{stack.url}/v1/transcribe", json=unserved), 422, "model")
    assert said.startswith("model: no live worker serves model 'large-v9'")


def test_the_openai_routes_keep_openai_s_shape_with_the_same_sentence(stack: Stack) -> None:
    files = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    answer = httpx.post(
        f"{stack.url}/v1/audio/transcriptions", data={"model": "whisper-1", "language": "xx"}, files=files
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "language"
    assert error["message"].startswith("language: unknown language code 'xx'")


@pytest.mark.parametrize(
    ("path", "first", "status", "said"),
    [
        ("/v1/transcribe", ("source_type", "upload"), b" 422 ", b'"field":"language"'),
        ("/v1/audio/transcriptions", ("model", "whisper-1"), b" 400 ", b'"param":"language"'),
    ],
)
def test_a_bad_field_before_the_file_is_refused_before_the_file_goes_up(
    stack: Stack, path: str, first: tuple[str, str], status: bytes, said: bytes
) -> None:
    """The form says language=xx, then begins a file of 200 MB, and stops sending: the answer comes
    while the file has hardly begun (it used to come once the whole file was in)."""
    host, port = stack.url.removeprefix("http://").split(":")
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{first[0]}"\r\n\r\n{first[1]}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="language"\r\n\r\nxx\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp3"\r\n'
        "Content-Type: audio/mpeg\r\n\r\n"
    ).encode() + (SPEECH / "upload.mp3").read_bytes()[:65536]
    declared = len(head) + 200 * 2**20
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=120) as conn:
        conn.sendall(request + head)
        answer = b""
        while b"\r\n\r\n" not in answer or b"}" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status in status_line, answer[:500]
    assert said in rest


def test_an_mp3_without_a_tag_is_served_as_audio(stack: Stack, tmp_path: Path) -> None:
    """An 8 kHz MP3 (MPEG-2.5, as phone systems write them) with no ID3 tag: its /input was
    application/octet-stream, which some browsers will not play."""
    phone = tmp_path / "phone.mp3"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(SPEECH / "url.wav"), "-ar", "8000",
         "-b:a", "16k", "-id3v2_version", "0", str(phone)],
        check=True,
    )  # fmt: skip
    assert not phone.read_bytes().startswith(b"ID3")
    files = {"file": ("phone.mp3", phone.read_bytes(), "audio/mpeg")}
    job_id = httpx.post(f"{stack.url}/v1/transcribe", data={"source_type": "upload"}, files=files).json()["job_id"]
    served = httpx.get(f"{stack.url}/v1/jobs/{job_id}/input")
    assert served.status_code == 200
    assert served.headers["content-type"] == "audio/mpeg"
    wait_until(lambda: httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()["status"] == "finished", timeout=120)


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_status_route_is_in_the_document_both_ways(stack: Stack, method: str) -> None:
    document = httpx.get(f"{stack.url}/openapi.json").json()
    assert method in document["paths"]["/v1/jobs/{job_id}"]
