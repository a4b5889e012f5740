"""MinIO bucket notifications in the ``access`` format, as its Redis target writes them.

Each list element is ``[{"Event": [<S3 record>], "EventTime": "..."}]``. In a record the object key
is URL-query-escaped (``/`` → ``%2F``, space → ``+``), user metadata is keyed ``X-Amz-Meta-Name``,
and empty fields are left out. ``s3:ObjectCreated:*`` also covers Copy and tagging events, so only
the kinds in ``CREATED_EVENTS`` are taken as new objects.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transcribe_common.errors import InvalidInput

CREATED_EVENTS = frozenset(
    {"s3:ObjectCreated:Put", "s3:ObjectCreated:Post", "s3:ObjectCreated:CompleteMultipartUpload"}
)
META_PREFIX = "x-amz-meta-"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class S3Bucket(_Loose):
    name: str


class S3Object(_Loose):
    key: str
    size: int | None = None
    etag: str | None = Field(None, alias="eTag")
    content_type: str | None = Field(None, alias="contentType")
    user_metadata: dict[str, str] = Field(default_factory=dict, alias="userMetadata")
    version_id: str | None = Field(None, alias="versionId")
    sequencer: str | None = None


class S3Entity(_Loose):
    bucket: S3Bucket
    object: S3Object


class S3Record(_Loose):
    event_name: str = Field(alias="eventName")
    event_time: str | None = Field(None, alias="eventTime")
    s3: S3Entity


class ObjectCreated(BaseModel):
    """A parsed creation event: the decoded key and the user metadata with plain lowercase names."""

    bucket: str
    key: str
    size: int | None
    etag: str | None
    version_id: str | None
    metadata: dict[str, str]
    event_time: datetime | None = None  # when the store created the object (the router's lag starts here)

    @property
    def version(self) -> str | None:
        """What tells two uploads under one key apart: the version id, else the content's eTag."""
        return self.version_id or self.etag


def parse(raw: bytes | str) -> list[ObjectCreated]:
    """Turn one list element into the object-created events it holds; others are left out."""
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"event is not JSON: {exc}") from exc
    entries = payload if isinstance(payload, list) else [payload]
    try:
        records = [S3Record.model_validate(r) for e in entries for r in _records_of(e)]
    except ValidationError as exc:
        raise InvalidInput(f"event is not an S3 record: {exc.errors()[0]['msg']}") from exc
    return [_created(r) for r in records if r.event_name in CREATED_EVENTS]


def _records_of(entry: object) -> list[object]:
    if isinstance(entry, dict) and "Event" in entry:  # access format
        return list(entry["Event"] or [])
    if isinstance(entry, dict) and "Records" in entry:  # namespace format / webhook target
        return list(entry["Records"] or [])
    raise InvalidInput("event has neither 'Event' nor 'Records'")


def user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """User metadata by plain lowercase name, from headers named ``X-Amz-Meta-<Name>`` in any case
    (an event's ``userMetadata``, an S3 HEAD response); other headers are left out."""
    return {
        name.lower().removeprefix(META_PREFIX): value
        for name, value in headers.items()
        if name.lower().startswith(META_PREFIX)
    }


def _created(record: S3Record) -> ObjectCreated:
    obj = record.s3.object
    metadata = user_metadata(obj.user_metadata)
    return ObjectCreated(
        bucket=record.s3.bucket.name,
        key=urllib.parse.unquote_plus(obj.key),
        size=obj.size,
        etag=obj.etag,
        version_id=obj.version_id,
        metadata=metadata,
        event_time=_time(record.event_time),
    )


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def access_record(
    bucket: str,
    key: str,
    *,
    size: int,
    etag: str,
    content_type: str,
    metadata: dict[str, str],
    event_name: str = "s3:ObjectCreated:Put",
) -> str:
    """One list element in MinIO's access format, as the local store and folder watcher emit it."""
    now = datetime.now(UTC)
    user_metadata = {"content-type": content_type} | {
        _canonical(f"{META_PREFIX}{name}"): value for name, value in metadata.items()
    }
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "local"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "local"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": urllib.parse.quote_plus(key),
                "size": size,
                "eTag": etag,
                "contentType": content_type,
                "userMetadata": user_metadata,
                "sequencer": f"{time.time_ns():X}",
            },
        },
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "transcribe-local"},
    }
    return json.dumps([{"Event": [record], "EventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}])


def _canonical(header: str) -> str:
    """Go's canonical MIME header case, as MinIO writes metadata names: X-Amz-Meta-Db-Id."""
    return "-".join(part.capitalize() for part in header.split("-"))
