"""The S3 store against moto's S3 server: the same interface as the local store, for real."""

import os
import time
import tracemalloc

import httpx
import pytest

from tests.conftest import JOBS_BUCKET, S3Server
from tests.helpers import wait_until
from transcribe_common.errors import NotFound, RetryableError
from transcribe_common.store.base import get_bytes, put_bytes
from transcribe_common.store.s3 import PART_SIZE, S3Store

MB = 1024 * 1024


def upload_peak(store: S3Store, key: str, megabytes: int) -> tuple[int, str]:
    """Stream ``megabytes`` of unknown length into the store; the peak Python memory it took."""
    chunk = os.urandom(MB)
    tracemalloc.start()
    writer = store.open_writer(JOBS_BUCKET, key, content_type="application/octet-stream")
    for _ in range(megabytes):
        writer.write(chunk)
    info = writer.commit()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info.size == megabytes * MB
    return peak, info.etag


def test_a_50_mb_stream_of_unknown_length_uploads_in_flat_memory(s3_store: S3Store) -> None:
    small_peak, _ = upload_peak(s3_store, "big/20.bin", 20)
    peak, etag = upload_peak(s3_store, "big/50.bin", 50)
    assert etag.endswith("-7")  # a multipart upload: 50 MiB in 8 MiB parts
    # The SDK holds about three copies of the part in flight (read-ahead byte, slice, request body).
    assert peak < 4 * PART_SIZE, f"peak {peak / MB:.1f} MiB for a 50 MiB upload"
    assert peak < small_peak + 2 * MB, f"{small_peak / MB:.1f} MiB for 20 MiB, {peak / MB:.1f} MiB for 50 MiB"
    stat = s3_store.stat(JOBS_BUCKET, "big/50.bin")
    assert stat is not None
    assert stat.size == 50 * MB


def test_user_metadata_round_trips(s3_store: S3Store) -> None:
    meta = {"language": "id", "db-id": "991", "transcribe-output": "abc"}
    put_bytes(s3_store, JOBS_BUCKET, "talks/a b é.mp3", b"ID3data", content_type="audio/mpeg", metadata=meta)
    info = s3_store.stat(JOBS_BUCKET, "talks/a b é.mp3")
    assert info is not None
    assert (info.metadata, info.content_type, info.size) == (meta, "audio/mpeg", 7)
    assert [o.key for o in s3_store.list(JOBS_BUCKET, "talks/")] == ["talks/a b é.mp3"]
    # When it was written, for the janitor's age limits, from HEAD and from listings alike.
    assert abs(info.modified - time.time()) < 120
    assert [o.modified for o in s3_store.list(JOBS_BUCKET, "talks/")] == [info.modified]


def test_a_presigned_link_downloads_without_credentials(s3_server: S3Server, s3_store: S3Store) -> None:
    put_bytes(
        s3_store, JOBS_BUCKET, "j/result.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n", content_type="text/plain"
    )
    url = s3_server.store(presign_expiry=600).download_url(JOBS_BUCKET, "j/result.srt")
    assert url is not None
    assert "X-Amz-Expires=600" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content.endswith(b"hi\n")
    public = s3_server.store(public_url="https://media.example.org").download_url(JOBS_BUCKET, "j/result.srt")
    assert public is not None
    assert public.startswith("https://media.example.org/transcribe/j/result.srt?")


def test_an_aborted_upload_leaves_no_object(s3_store: S3Store) -> None:
    writer = s3_store.open_writer(JOBS_BUCKET, "broken.bin", content_type="application/octet-stream")
    writer.write(os.urandom(PART_SIZE + MB))  # one part already sent
    writer.abort()
    assert s3_store.stat(JOBS_BUCKET, "broken.bin") is None


def test_missing_objects_and_deletes(s3_store: S3Store) -> None:
    assert s3_store.stat(JOBS_BUCKET, "nope") is None
    with pytest.raises(NotFound):
        get_bytes(s3_store, JOBS_BUCKET, "nope")
    put_bytes(s3_store, JOBS_BUCKET, "gone", b"x")
    s3_store.delete(JOBS_BUCKET, "gone")
    assert s3_store.stat(JOBS_BUCKET, "gone") is None


def test_an_unreachable_server_is_a_retryable_error() -> None:
    store = S3Store("127.0.0.1:9", "k", "s")
    with pytest.raises(RetryableError):
        store.stat(JOBS_BUCKET, "x")
    with pytest.raises(RetryableError, match="did not answer"):
        store.wait_ready(timeout=0.1)


def test_a_multipart_upload_left_behind_is_listed_and_aborted(s3_store: S3Store) -> None:
    writer = s3_store.open_writer(JOBS_BUCKET, "left/behind.mp3", content_type="audio/mpeg")
    for _ in range(PART_SIZE // MB + 1):
        writer.write(b"x" * MB)  # one part sent; then its process "dies": no commit, no abort

    def incomplete() -> list:  # type: ignore[type-arg]
        return [u for u in s3_store.incomplete_uploads(JOBS_BUCKET) if u.size]

    wait_until(incomplete, timeout=30)
    [upload] = incomplete()
    assert (upload.key, upload.size) == ("left/behind.mp3", PART_SIZE)
    assert 0 < upload.started <= time.time()  # moto dates every upload 2010-11-10; MinIO tells the truth
    s3_store.abort_upload(upload)
    assert list(s3_store.incomplete_uploads(JOBS_BUCKET)) == []
    s3_store.abort_upload(upload)  # twice: gone already, no error
    writer.abort()
    assert s3_store.stat(JOBS_BUCKET, "left/behind.mp3") is None
