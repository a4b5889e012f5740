"""Announcing an object again: for an event that was lost, the janitor sends what the bucket would have."""

from __future__ import annotations

import redis

from transcribe_common import keys
from transcribe_common.events import access_record
from transcribe_common.store.base import ObjectInfo, ObjectStore


def announce(conn: redis.Redis, store: ObjectStore, info: ObjectInfo) -> None:
    """An object's creation event again, in MinIO's format, as the bucket would send it."""
    metadata = (store.stat(info.bucket, info.key) or info).metadata
    record = access_record(
        info.bucket, info.key, size=info.size, etag=info.etag, content_type=info.content_type, metadata=metadata
    )
    conn.rpush(keys.EVENTS, record)
