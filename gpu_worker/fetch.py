"""Getting a job's input into its scratch folder: from the bucket, or from a URL."""

from __future__ import annotations

from pathlib import Path

import httpx

from transcribe_common import layout
from transcribe_common.errors import PermanentError, RetryableError
from transcribe_common.models import Manifest, ObjectSource, UrlSource
from transcribe_common.store.base import ObjectStore, download


def fetch_source(manifest: Manifest, store: ObjectStore, scratch: Path, timeout: float) -> Path:
    source = manifest.source
    dest = scratch / f"source-{layout.safe_filename(manifest.filename)}"
    if isinstance(source, ObjectSource):
        if store.stat(source.bucket, source.key) is None:
            raise PermanentError(f"the input object {source.bucket}/{source.key} is missing")
        download(store, source.bucket, source.key, dest)
        return dest
    assert isinstance(source, UrlSource)
    return download_url(str(source.url), dest, timeout=timeout)


def download_url(url: str, dest: Path, *, timeout: float) -> Path:
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code >= 500 or response.status_code in (408, 429):
                raise RetryableError(f"fetching {url}: HTTP {response.status_code}")
            if response.status_code >= 400:
                raise PermanentError(f"fetching the source URL failed: HTTP {response.status_code}")
            with dest.open("wb") as out:
                for chunk in response.iter_bytes(1024 * 1024):
                    out.write(chunk)
    except httpx.InvalidURL as exc:
        raise PermanentError(f"invalid source URL: {exc}") from exc
    except httpx.HTTPError as exc:
        raise RetryableError(f"fetching the source URL failed: {exc}") from exc
    return dest
