"""The object store on MinIO or any S3-compatible server, through the minio SDK.

This is the only module that imports ``minio``. SDK and transport errors are translated here: a
missing object is ``ObjectMissing``; a server that cannot be reached, or answers an error that may
pass (``transient``), is ``StoreUnavailable``; any other error answer (AccessDenied, a bad key) is
``StoreRefused``. All of them name bucket, key or host: for logs, not callers.

Uploads of unknown length (a request body being streamed in) go through ``_S3Writer``: ``write``
hands chunks to a bounded queue that ``put_object``, running in a thread, reads as a file. The SDK
sends a multipart upload one part at a time, so memory holds about one part whatever the size of
the object, and ``abort`` makes the reader fail so the SDK aborts the multipart upload: a broken
upload never becomes an object.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import urllib3
from minio import Minio
from minio.error import S3Error
from minio.notificationconfig import NotificationConfig, PrefixFilterRule, QueueConfig, SuffixFilterRule

from transcribe_common import transient
from transcribe_common.errors import NotFound, ObjectMissing, PipelineError, StoreRefused, StoreUnavailable
from transcribe_common.events import user_metadata
from transcribe_common.store.base import CHUNK, IncompleteUpload, ObjectInfo

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # S3's minimum is 5 MiB; one part is what an upload holds in memory
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "NoSuchVersion", "NoSuchUpload"})


class S3Store:
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str | None = "us-east-1",
        public_url: str = "",
        presign_expiry: int = 86400,
    ) -> None:
        self.client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=_http_client(),
        )
        # Links for webhook consumers are signed for the address they can reach, which is often not
        # the one the services use inside the cluster. Presigning makes no request.
        self._presigner = self.client
        if public_url:
            public = urllib3.util.parse_url(public_url)
            self._presigner = Minio(
                public.netloc or "",
                access_key=access_key,
                secret_key=secret_key,
                secure=public.scheme == "https",
                region=region or "us-east-1",
            )
        self._expiry = timedelta(seconds=presign_expiry)

    def ensure_bucket(self, bucket: str) -> None:
        with _translated(bucket):
            if not self.client.bucket_exists(bucket):
                try:
                    self.client.make_bucket(bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

    def open_writer(
        self, bucket: str, key: str, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> _S3Writer:
        return _S3Writer(self.client, bucket, key, content_type, dict(metadata or {}))

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            with _translated(f"{bucket}/{key}"):
                obj = self.client.stat_object(bucket, key)
        except NotFound:
            return None
        metadata = user_metadata(obj.metadata or {})
        etag = (obj.etag or "").strip('"')
        return ObjectInfo(bucket, key, obj.size or 0, etag, obj.content_type or "", metadata, _epoch(obj.last_modified))

    def iter_bytes(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        with _translated(f"{bucket}/{key}"):
            response = self.client.get_object(bucket, key, offset=offset, length=length or 0)
        try:
            yield from response.stream(CHUNK)
        finally:
            response.close()
            response.release_conn()

    def list(self, bucket: str, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        with _translated(bucket):
            listing = self.client.list_objects(bucket, prefix=prefix, recursive=True, start_after=start_after or None)
            for obj in listing:
                if obj.object_name is not None and not obj.is_dir:
                    etag = (obj.etag or "").strip('"')
                    modified = _epoch(obj.last_modified)
                    yield ObjectInfo(bucket, obj.object_name, obj.size or 0, etag, obj.content_type or "", {}, modified)

    def delete(self, bucket: str, key: str) -> None:
        with _translated(f"{bucket}/{key}"):
            self.client.remove_object(bucket, key)

    def download_url(self, bucket: str, key: str) -> str | None:
        return self._presigner.presigned_get_object(bucket, key, expires=self._expiry)

    # The SDK has no public call for multipart uploads left behind (a writer's process died before
    # it could abort); its own put_object uses these underscored ones, stable since minio 7.0.
    def incomplete_uploads(self, bucket: str) -> Iterator[IncompleteUpload]:
        key_marker = None
        while True:
            with _translated(bucket):
                page = self.client._list_multipart_uploads(bucket, key_marker=key_marker, max_uploads=1000)
            for upload in page.uploads:
                if upload.upload_id is None:
                    continue
                started = _epoch(upload.initiated_time)
                size = self._parts_size(bucket, upload.object_name, upload.upload_id)
                yield IncompleteUpload(bucket, upload.object_name, upload.upload_id, size, started)
            # The SDK drops NextUploadIdMarker; paging by key alone may leave some for the next run.
            if not page.is_truncated or not page.next_key_marker:
                return
            key_marker = page.next_key_marker

    def _parts_size(self, bucket: str, key: str, upload_id: str) -> int:
        try:
            with _translated(f"{bucket}/{key}"):
                parts = self.client._list_parts(bucket, key, upload_id, max_parts=1000).parts
        except NotFound:
            return 0  # completed or aborted meanwhile
        return sum(part.size or 0 for part in parts)

    def abort_upload(self, upload: IncompleteUpload) -> None:
        try:
            with _translated(f"{upload.bucket}/{upload.key}"):
                self.client._abort_multipart_upload(upload.bucket, upload.key, upload.upload_id)
        except NotFound:
            pass  # gone already

    # --- set-up of a MinIO deployment ---------------------------------------------------------

    def wait_ready(self, timeout: float) -> None:
        """Block until the server answers (any answer, an auth error included, means it is up)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.list_buckets()
                return
            except S3Error:
                return
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"the object store did not answer within {timeout:g} s: {exc}") from exc
                log.info("waiting for the object store: %s", exc)
                time.sleep(1.0)

    def set_notifications(self, bucket: str, config: dict[str, object]) -> None:
        """Apply an S3 ``NotificationConfiguration`` (the JSON shape) to ``bucket``; replaces any."""
        with _translated(bucket):
            self.client.set_bucket_notification(bucket, notification_config(config))


def _http_client() -> urllib3.PoolManager:
    """A short retry policy: the callers (router loop, worker retries) own the long waits."""
    retries = urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504])
    return urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=120), retries=retries, maxsize=16)


def notification_config(config: dict[str, object]) -> NotificationConfig:
    """The SDK's form of an S3 ``NotificationConfiguration`` written as JSON (queue targets only)."""
    queues = []
    for rule in config.get("QueueConfigurations", []):  # type: ignore[attr-defined]
        filters = {f["Name"].lower(): f["Value"] for f in rule.get("Filter", {}).get("Key", {}).get("FilterRules", [])}
        queues.append(
            QueueConfig(
                queue=rule["QueueArn"],
                events=list(rule["Events"]),
                config_id=rule.get("Id"),
                prefix_filter_rule=PrefixFilterRule(filters["prefix"]) if "prefix" in filters else None,
                suffix_filter_rule=SuffixFilterRule(filters["suffix"]) if "suffix" in filters else None,
            )
        )
    return NotificationConfig(queue_config_list=queues)


def load_notify_file(path: Path) -> dict[str, dict[str, object]]:
    return dict(json.loads(path.read_text()))


class _translated:
    """Context manager that turns SDK and transport errors into the pipeline's error tree."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, PipelineError):
            return
        if isinstance(exc, S3Error):
            if exc.code in _MISSING:
                raise ObjectMissing(f"no object {self.what}") from exc
            said = f"object store: {exc.code}: {exc.message} ({self.what})"
            if transient.s3_answer(exc.code, exc.response.status):
                raise StoreUnavailable(said) from exc
            raise StoreRefused(said) from exc
        if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
            raise StoreUnavailable(f"object store unreachable: {exc}") from exc


_EOF = object()


class _S3Writer:
    def __init__(self, client: Minio, bucket: str, key: str, content_type: str, metadata: dict[str, str]) -> None:
        self._bucket, self._key, self._content_type, self._metadata = bucket, key, content_type, metadata
        self._chunks: queue.Queue[object] = queue.Queue(maxsize=4)
        self._buffer = b""
        self._error: BaseException | None = None
        self._result: ObjectInfo | None = None
        self.size = 0
        self._thread = threading.Thread(target=self._upload, args=(client,), daemon=True, name=f"put {key}")
        self._thread.start()

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise StoreUnavailable(f"upload to the object store failed: {self._error}") from self._error
        self.size += len(data)
        self._chunks.put(bytes(data))

    def commit(self) -> ObjectInfo:
        self._chunks.put(_EOF)
        self._thread.join()
        if self._error is not None or self._result is None:
            raise StoreUnavailable(f"upload to the object store failed: {self._error}") from self._error
        return self._result

    def abort(self) -> None:
        self._chunks.put(_Abort())
        self._thread.join()

    # The SDK calls read() from the upload thread, a part at a time.
    def read(self, size: int = -1) -> bytes:
        pieces, held = [self._buffer], len(self._buffer)
        while size < 0 or held < size:
            item = self._chunks.get()
            if item is _EOF:
                self._chunks.put(_EOF)  # later reads see the end too
                break
            if isinstance(item, _Abort):
                raise item
            pieces.append(item)  # type: ignore[arg-type]
            held += len(item)  # type: ignore[arg-type]
        data = b"".join(pieces)
        if 0 <= size < len(data):
            data, self._buffer = data[:size], data[size:]
        else:
            self._buffer = b""
        return data

    def _upload(self, client: Minio) -> None:
        try:
            with _translated(f"{self._bucket}/{self._key}"):
                result = client.put_object(
                    self._bucket,
                    self._key,
                    self,  # type: ignore[arg-type]
                    length=-1,
                    part_size=PART_SIZE,
                    num_parallel_uploads=1,
                    content_type=self._content_type,
                    metadata=self._metadata or None,  # type: ignore[arg-type]
                )
            etag = (result.etag or "").strip('"')
            self._result = ObjectInfo(self._bucket, self._key, self.size, etag, self._content_type, self._metadata)
        except BaseException as exc:  # reported by write() and commit(); the thread must not die silently
            self._error = exc
            self._drain()

    def _drain(self) -> None:
        """Unblock a writer waiting on a full queue after the upload has failed."""
        while True:
            try:
                self._chunks.get_nowait()
            except queue.Empty:
                return


class _Abort(Exception):
    """Raised inside the SDK's read so that it aborts the multipart upload."""


def _epoch(when: datetime | None) -> float:
    return when.timestamp() if when is not None else 0.0
