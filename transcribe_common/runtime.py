"""Connections every service opens the same way: Redis, the object store, logging."""

from __future__ import annotations

import logging
import sys

import redis

from transcribe_common import keys
from transcribe_common.settings import CommonSettings
from transcribe_common.store.base import ObjectStore
from transcribe_common.store.local import LocalStore


def connect_redis(settings: CommonSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, health_check_interval=30)


def open_store(settings: CommonSettings, conn: redis.Redis) -> ObjectStore:
    """The configured store. The local store announces new objects on the events list itself,
    as MinIO's Redis notification target does in production."""
    store = LocalStore(settings.store_dir, notify=lambda record: conn.rpush(keys.EVENTS, record))
    for bucket in (settings.minio_bucket, settings.minio_inbox_bucket):
        store.ensure_bucket(bucket)
    return store


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-7s {service:<8} %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise
