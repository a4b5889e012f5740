"""The REST API as the command line uses it: one ``Client`` per server, errors as ``CliError``
with a sentence a person can act on."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx

UNREACHABLE = 3  # exit status when the server cannot be reached or fails
REFUSED = 4  # exit status when the server refuses the request (4xx)


class CliError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Client:
    def __init__(self, server: str, api_key: str | None, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
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
        if response.is_success:
            return response
        detail = _detail(response)
        if response.status_code in (401, 403):
            raise CliError(f"{detail} (give the API key with --api-key or TRANSCRIBE_API_KEY)", REFUSED)
        if response.status_code >= 500:
            raise CliError(f"the server failed ({response.status_code}): {detail}", UNREACHABLE)
        raise CliError(detail, REFUSED)

    def submit_url(self, url: str, options: dict[str, str]) -> dict:
        body = {"source_type": "url", "url": url, **options}
        return self.request("POST", "/v1/transcribe", json=body).json()

    def submit_file(self, path: Path, options: dict[str, str], on_sent: Callable[[int], None]) -> dict:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with path.open("rb") as raw:
            files = {"file": (path.name, _Counted(raw, on_sent), content_type)}
            data = {"source_type": "upload", **options}
            # Uploads take as long as they take; the answer comes once the file is stored.
            return self.request("POST", "/v1/transcribe", data=data, files=files, timeout=None).json()

    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/v1/jobs/{job_id}").json()

    def result(self, job_id: str, fmt: str | None) -> bytes:
        params = {"format": fmt} if fmt else {}
        return self.request("GET", f"/v1/jobs/{job_id}/result", params=params).content

    def stats(self) -> dict:
        return self.request("GET", "/v1/stats").json()


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
    try:
        detail = response.json().get("detail")
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(detail, list):  # FastAPI's validation errors: where, and what is wrong
        return "; ".join(f"{_where(e.get('loc', []))}: {e.get('msg')}" for e in detail)
    return str(detail)


def _where(loc: list[object]) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "request"
