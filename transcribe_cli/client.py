"""The REST API as the command line uses it: one ``Client`` per server, errors as ``CliError``
with a sentence a person can act on."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
from httpx_sse import connect_sse

UNREACHABLE = 3  # exit status when the server cannot be reached or fails
REFUSED = 4  # exit status when the server refuses the request (4xx)


class CliError(Exception):
    def __init__(self, message: str, status: int, http_status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the exit status
        self.http_status = http_status


class Client:
    def __init__(self, server: str, api_key: str | None, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._talking():
            response = self.http.request(method, path, **kwargs)
        return self._checked(response)

    def events(self, job_id: str) -> Iterator[dict]:
        """The job's status at each change, from its event stream, until the server ends it.
        ``httpx_sse.SSEError`` if what comes is not a stream (a server from before streams)."""
        # The server sends a comment at least every 15 s: a minute of silence is a broken stream.
        timeout = httpx.Timeout(self.http.timeout.connect, read=60)
        with self._talking(), connect_sse(self.http, "GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as source:
            if not source.response.is_success:
                source.response.read()
                self._checked(source.response)
            for message in source.iter_sse():
                if message.event == "job":
                    yield json.loads(message.data)

    @contextmanager
    def _talking(self) -> Iterator[None]:
        """httpx's errors, as sentences a person can act on."""
        try:
            yield
        except httpx.ConnectError as exc:
            raise CliError(
                f"cannot reach the transcription service at {self.server} ({exc}). Is it running? "
                "Start it with `python3 dev.py stack`, or name another server with --server or TRANSCRIBE_URL.",
                UNREACHABLE,
            ) from exc
        except httpx.TimeoutException as exc:
            raise CliError(
                f"the transcription service at {self.server} did not answer in time ({exc})", UNREACHABLE
            ) from exc
        except httpx.HTTPError as exc:
            raise CliError(f"talking to {self.server} failed: {exc}", UNREACHABLE) from exc

    def _checked(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        detail = _detail(response)
        if response.status_code in (401, 403):
            raise CliError(f"{detail} (give the API key with --api-key or TRANSCRIBE_API_KEY)", REFUSED)
        if response.status_code >= 500:
            raise CliError(f"the server failed ({response.status_code}): {detail}", UNREACHABLE)
        raise CliError(detail, REFUSED, response.status_code)

    def submit_url(self, url: str, options: dict[str, object], key: str | None = None) -> dict:
        body = {"source_type": "url", "url": url, **options}
        return self.request("POST", "/v1/transcribe", json=body, headers=_idempotency(key)).json()

    def submit_file(
        self, path: Path, options: dict[str, object], on_sent: Callable[[int], None], key: str | None = None
    ) -> dict:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as raw:
            files = {"file": (path.name, _Counted(raw, on_sent), content_type)}
            data = {"source_type": "upload", **{name: _field(value) for name, value in options.items()}}
            # Uploads take as long as they take; the answer comes once the file is stored.
            return self.request(
                "POST", "/v1/transcribe", data=data, files=files, timeout=None, headers=_idempotency(key)
            ).json()

    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/v1/jobs/{job_id}").json()

    def result(self, job_id: str, fmt: str | None) -> bytes:
        params = {"format": fmt} if fmt else {}
        return self.request("GET", f"/v1/jobs/{job_id}/result", params=params).content

    def stats(self) -> dict:
        return self.request("GET", "/v1/stats").json()

    def jobs(self, query: dict[str, Any]) -> Iterator[dict]:
        """The caller's jobs, newest first, following the cursor page by page."""
        params = {name: value for name, value in query.items() if value is not None}
        while True:
            page = self.request("GET", "/v1/jobs", params=params).json()
            yield from page["jobs"]
            if page.get("next_cursor") is None:
                return
            params["cursor"] = page["next_cursor"]

    def cancel(self, job_id: str, delete: bool = False) -> dict:
        params = {"delete_objects": "true"} if delete else {}
        return self.request("DELETE", f"/v1/jobs/{job_id}", params=params).json()

    def models(self) -> list[str]:
        return list(self.request("GET", "/v1/models").json()["models"])


class _Counted:
    """A file that reports how many bytes have been read from it (the upload's progress)."""

    def __init__(self, raw: IO[bytes], on_sent: Callable[[int], None]) -> None:
        self.raw, self.on_sent = raw, on_sent

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.on_sent(len(chunk))
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def _detail(response: httpx.Response) -> str:
    """The server's sentence (every error of the REST API is one: ``ingest_api.invalid``)."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if detail else f"HTTP {response.status_code}: {response.text[:200]}"


def _field(value: object) -> str:
    """A form field's text: true/false for a flag."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}
