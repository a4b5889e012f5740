"""Getting a job's input into its scratch folder: from the bucket, or from a URL."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from transcribe_common import layout, netsafe, transient
from transcribe_common.errors import PermanentError, PipelineError, RetryableError
from transcribe_common.models import Manifest, ObjectSource, UrlSource
from transcribe_common.netsafe import UrlPolicy
from transcribe_common.store.base import ObjectStore, download


@dataclass(frozen=True)
class FetchLimits:
    """How far a URL download may go: the policy for each host it connects to (redirects among
    them), seconds without progress, seconds in all, and bytes."""

    policy: UrlPolicy
    idle_timeout: float
    max_seconds: float
    max_bytes: int


def fetch_source(manifest: Manifest, store: ObjectStore, scratch: Path, limits: FetchLimits) -> Path:
    source = manifest.source
    dest = scratch / f"source-{layout.safe_filename(manifest.filename)}"
    if isinstance(source, ObjectSource):
        if store.stat(source.bucket, source.key) is None:
            raise PermanentError("the job's input file is missing from the store; it was deleted before the job ran")
        download(store, source.bucket, source.key, dest)
        return dest
    assert isinstance(source, UrlSource)
    return download_url(str(source.url), dest, limits)


def download_url(url: str, dest: Path, limits: FetchLimits) -> Path:
    """``DOWNLOAD_MAX_SECONDS`` holds however the source sends: each read is checked against it, and
    a read still waiting when it passes is cut off (the connection is closed under it)."""
    deadline = time.monotonic() + limits.max_seconds
    too_slow = PermanentError(f"the source URL took longer than DOWNLOAD_MAX_SECONDS ({limits.max_seconds:g} s)")
    timeout = min(limits.idle_timeout, limits.max_seconds)
    try:
        with (
            netsafe.client(limits.policy, timeout=timeout, follow_redirects=True) as http,
            http.stream("GET", url) as response,
        ):
            _check_response(response, limits.max_bytes)
            watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), response.close)
            watchdog.start()
            try:
                _save(response, dest, limits.max_bytes, deadline, too_slow)
            finally:
                watchdog.cancel()
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
        if time.monotonic() >= deadline:
            raise too_slow from exc
        raise _translated(exc) from exc
    return dest


def _save(response: httpx.Response, dest: Path, max_bytes: int, deadline: float, too_slow: PermanentError) -> None:
    received = 0
    with dest.open("wb") as out:
        for chunk in response.iter_bytes():  # as it comes: a trickle is checked at every read
            received += len(chunk)
            if received > max_bytes:
                raise PermanentError(_too_big(max_bytes))
            if time.monotonic() > deadline:
                raise too_slow
            out.write(chunk)


def _translated(exc: Exception) -> PipelineError:
    """httpx's errors, as the job reads them, on the side the one table (``transient``) says."""
    if transient.transient(exc):  # "[Errno 111] Connection refused" reads as "connection refused"
        said = re.sub(r"^\[Errno -?\d+\] ", "", str(exc) or type(exc).__name__)
        return RetryableError(f"fetching the source URL failed: {said[:1].lower()}{said[1:]}")
    if isinstance(exc, httpx.TooManyRedirects):
        return PermanentError(f"the source URL redirects too many times: {exc}")
    return PermanentError(f"the source URL (or a redirect from it) is not usable: {exc}")


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if transient.http_status(status):
        raise RetryableError(f"fetching the source URL failed: HTTP {status}")
    if status >= 400:
        raise PermanentError(f"fetching the source URL failed: HTTP {status}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PermanentError(_too_big(max_bytes))


def _too_big(max_bytes: int) -> str:
    return f"the source is larger than MAX_DOWNLOAD_MB ({max_bytes // 2**20} MiB)"
