"""Connections every service opens the same way: Redis and the object store."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

import redis
from redis.connection import SSLConnection, parse_url
from redis.sentinel import Sentinel

from transcribe_common import keys
from transcribe_common.settings import REDIS_SOCKET_TIMEOUT, CommonSettings, sentinel_addresses
from transcribe_common.store.base import ObjectStore
from transcribe_common.store.local import LocalStore

if TYPE_CHECKING:
    from transcribe_common.store.s3 import S3Store

log = logging.getLogger(__name__)


def command_line(prog: str, doc: str | None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """A service's command line: ``--help`` says what it does in plain words (its docstring without
    the markup), and where its settings come from; anything it does not know is an error (exit 2)."""
    # SIGUSR1 writes every thread's stack to stderr, and the service runs on: what a process that
    # does not stop, or does not answer, is waiting for (``kill -USR1 <pid>``).
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    parser = parser or argparse.ArgumentParser()
    parser.prog = prog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = plain(doc or "")
    parser.epilog = (
        "Settings come from the environment (or a .env file); .env.example and docs/operating.md "
        "('Configuration') list them."
    )
    return parser.parse_args()


def stop_on_signals(second: str | None = None) -> threading.Event:
    """An event the first SIGTERM or SIGINT sets: the service's loops end at their next turn. With
    ``second``, another signal logs it and exits at once, leaving what runs to the next start."""
    stopping = threading.Event()

    def stop(*_: object) -> None:
        if second is not None and stopping.is_set():
            log.warning("second stop request: %s", second)
            os._exit(1)
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    return stopping


def plain(text: str) -> str:
    """A docstring as a person reads it in a terminal: no reStructuredText literals."""
    return text.replace("``", "")


def connect_redis(settings: CommonSettings, service: str, **options: object) -> redis.Redis:
    """Named, so that ``CLIENT LIST`` says which service holds which connection; with
    ``REDIS_PASSWORD`` when the URL holds none (one in the URL wins). A reply that does not come in
    ``REDIS_SOCKET_TIMEOUT`` is an error, retried like any outage: a Redis that hangs (stopped, or cut
    off without a reset) never holds a service for ever. With ``REDIS_SENTINELS``, each new
    connection goes to the primary the Sentinels name, and one to a primary that has since been
    demoted (READONLY) is dropped and made again (redis-py's ``SentinelManagedConnection``)."""
    common = {
        "password": settings.redis_password or None,
        "socket_connect_timeout": 5,
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "health_check_interval": 30,
        "client_name": f"transcribe-{service}",
        **options,
    }
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **common)  # type: ignore[arg-type]
    # The URL's database, credentials and TLS (rediss://, its ssl_* options); its host and port are
    # the Sentinels' to say.
    url = parse_url(settings.redis_url)
    tls = url.pop("connection_class", None) is SSLConnection
    common |= {name: value for name, value in url.items() if name not in ("host", "port") and value is not None}
    common |= {"ssl": True} if tls else {}
    sentinels = Sentinel(
        sentinel_addresses(settings.redis_sentinels),
        sentinel_kwargs={
            "password": settings.redis_sentinel_password or None,
            "socket_connect_timeout": 5,
            "socket_timeout": REDIS_SOCKET_TIMEOUT,
        },
    )
    return sentinels.master_for(settings.redis_sentinel_master, **common)  # type: ignore[arg-type]


def open_store(settings: CommonSettings, conn: redis.Redis) -> ObjectStore:
    """The configured store. On S3 the server announces new objects (MinIO's Redis target) and
    ``transcribe-setup`` makes the buckets; the local store does both itself."""
    if settings.store_backend == "s3":
        return open_s3_store(settings)
    store = LocalStore(settings.store_dir, notify=lambda record: _announce(conn, record))
    for bucket in (settings.minio_bucket, settings.minio_inbox_bucket):
        store.ensure_bucket(bucket)
    return store


def _announce(conn: redis.Redis, record: str) -> None:
    """The local store's bucket notification. Like MinIO's (without a queue_dir), an event that
    cannot be sent is not held against the write: the object is there, and the janitor announces
    again what nothing picked up (``LOST_AFTER``)."""
    try:
        conn.rpush(keys.EVENTS, record)
    except redis.RedisError as exc:
        log.warning("bucket event not sent (%s); the janitor will announce the object again", exc)


def open_s3_store(settings: CommonSettings) -> S3Store:
    from transcribe_common.store.s3 import S3Store  # the minio SDK only where S3 is used

    return S3Store(
        settings.minio_endpoint,
        settings.minio_access_key,
        settings.minio_secret_key,
        secure=settings.minio_secure,
        region=settings.minio_region or None,
        public_url=settings.minio_public_url,
        presign_expiry=settings.presign_expiry,
    )
