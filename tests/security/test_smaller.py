"""Issue 31, finding 8 (the smaller ones), each on the embedded stack or its real processes:
non-finite numbers were 500s; a declared type ``audio/中`` made an input unservable; a callback's
password and ``?token=`` were printed whole in the sender's lines; a db_id of 4,000 digits passed
the 256-character bound; a hard link in the inbox folder was read; ``/v1/stats`` showed every
tenant's counts to any key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY, INBOX_BUCKET, TENANT_ONE, TENANT_TWO, Stack
from tests.helpers import SPEECH, Receiver, wait_until
from tests.webhook_sender.test_delivery import _send, _settled, _start, fresh_db
from transcribe_common import layout

URL_JOB = '{"source_type": "url", "url": "https://93.184.215.14/a.mp3"'


@pytest.mark.parametrize(
    "extra",
    [
        '"language_confidence_threshold": NaN',
        '"language_confidence_threshold": Infinity',
        '"language_confidence_threshold": -Infinity',
        '"language_confidence_threshold": 1e999',
        '"db_id": NaN',
    ],
)
def test_a_non_finite_number_is_a_422(stack: Stack, extra: str) -> None:
    response = httpx.post(
        f"{stack.url}/v1/transcribe", content=f"{URL_JOB}, {extra}}}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("the body is not valid JSON: ")


def test_a_non_finite_temperature_on_the_openai_route_is_a_400(stack: Stack) -> None:
    files = {"file": ("a.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    response = httpx.post(f"{stack.url}/v1/audio/transcriptions", data={"temperature": "NaN"}, files=files)
    assert response.status_code == 400, response.text


def test_a_db_id_of_four_thousand_digits_is_refused(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.url}/v1/transcribe", content=f'{URL_JOB}, "db_id": {"9" * 4000}}}',
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("declared", ["audio/中".encode(), b"audio/mpeg\x00text/html"])
def test_an_input_declared_with_a_type_that_cannot_be_served_is_served_as_its_bytes(
    stack: Stack, declared: bytes
) -> None:
    boundary = b"xYzZy"
    body = b"".join(
        [
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="source_type"\r\n\r\nupload\r\n',
            b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n',
            b"Content-Type: " + declared + b"\r\n\r\n" + (SPEECH / "upload.mp3").read_bytes() + b"\r\n",
            b"--" + boundary + b"--\r\n",
        ]
    )
    headers = {"content-type": "multipart/form-data; boundary=xYzZy"}
    response = httpx.post(f"{stack.url}/v1/transcribe", content=body, headers=headers)
    assert response.status_code == 202, response.text
    served = httpx.get(f"{stack.url}/v1/jobs/{response.json()['job_id']}/input")
    assert (served.status_code, served.headers["content-type"]) == (200, "audio/mpeg")


def test_a_callback_s_password_and_token_never_reach_a_log_line(
    redis_server: str, receiver: Receiver, tmp_path: Path
) -> None:
    redis_url, conn = fresh_db(redis_server, 14)
    log = tmp_path / "sender.log"
    path = receiver.script("/secret-hook?token=tok-3141592653", 503)
    url = path.replace("http://", "http://hookuser:hook-pa55word@")
    sender = _start(redis_url, log, WEBHOOK_ATTEMPTS="1")
    try:
        _send(conn, "4" * 32, url)
        record = wait_until(lambda: _settled(conn, "4" * 32), timeout=60)
        assert record.state == "failed"  # given up, after one 503: logged with its URL
    finally:
        sender.terminate()
        sender.wait(30)
    text = log.read_text()
    assert "/secret-hook" in text, text  # the lines about it were written
    assert "hook-pa55word" not in text
    assert "tok-3141592653" not in text


def test_a_hard_link_in_the_inbox_folder_is_not_read(stack: Stack, receiver: Receiver, tmp_path: Path) -> None:
    outside = tmp_path / "private.mp3"  # a file of the server's, on the same disk as the inbox folder
    outside.write_bytes((SPEECH / "upload.mp3").read_bytes())
    folder = stack.inbox / "linked"
    folder.mkdir()
    os.link(outside, folder / "private.mp3")
    wait_until(lambda: "transcribe-inbox/linked/private.mp3 is not a regular file" in stack.log.read_text(), timeout=60)
    job_id = layout.inbox_job_id(INBOX_BUCKET, "linked/private.mp3", _md5(outside))
    assert httpx.get(f"{stack.url}/v1/jobs/{job_id}").status_code == 404
    assert not receiver.for_job(job_id)


def test_stats_count_a_tenant_s_own_jobs_and_every_job_for_an_admin(tenant_stack: Stack, receiver: Receiver) -> None:
    def stats(key: str) -> dict[str, int]:
        return dict(httpx.get(f"{tenant_stack.url}/v1/stats", headers={"Authorization": f"Bearer {key}"}).json())

    before = {key: stats(key) for key in (TENANT_ONE, TENANT_TWO, ADMIN_KEY)}
    files = {"file": ("mine.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    response = httpx.post(
        f"{tenant_stack.url}/v1/transcribe", data={"source_type": "upload"}, files=files,
        headers={"Authorization": f"Bearer {TENANT_ONE}"}, timeout=30,
    )  # fmt: skip
    job_id = response.json()["job_id"]
    assert receiver.wait_for(job_id)["json"]["status"] == "finished"
    wait_until(lambda: stats(TENANT_ONE)["finished"] == before[TENANT_ONE]["finished"] + 1, timeout=30)
    assert stats(TENANT_TWO)["finished"] == before[TENANT_TWO]["finished"]  # not another tenant's
    assert stats(ADMIN_KEY)["finished"] == before[ADMIN_KEY]["finished"] + 1


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
