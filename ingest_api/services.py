"""What the routes need, opened once per process and handed to them as a dependency."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request

from ingest_api.changes import JobChanges, StreamSlots
from ingest_api.settings import ApiSettings, key_id
from ingest_api.throttle import FailureWindow
from transcribe_common import layout
from transcribe_common.errors import NotFound
from transcribe_common.jobstate import JobStates
from transcribe_common.models import Manifest
from transcribe_common.runtime import connect_redis, open_store
from transcribe_common.store.base import ObjectStore, get_json

MANIFESTS_KEPT = 4096  # manifests read back, per process


class Manifests:
    """Jobs' manifests. One never changes once written, so each is read from the store once per
    process (the most recently used are kept); one not there yet is asked for again next time."""

    def __init__(self, store: ObjectStore, bucket: str) -> None:
        self._store, self._bucket = store, bucket
        self._read = functools.lru_cache(maxsize=MANIFESTS_KEPT)(self._from_store)

    def get(self, job_id: str) -> Manifest | None:
        try:
            return self._read(job_id)
        except NotFound:  # not cached: an exception never is
            return None

    def stored(self, job_id: str) -> Manifest | None:
        """The manifest as the store has it now, for answers that depend on its being there (a
        person may have removed it by hand)."""
        try:
            return self._from_store(job_id)
        except NotFound:
            return None

    def _from_store(self, job_id: str) -> Manifest:
        return Manifest.model_validate(get_json(self._store, self._bucket, layout.manifest_key(job_id)))


@dataclass
class Services:
    settings: ApiSettings
    redis: redis.Redis
    store: ObjectStore
    states: JobStates
    api_keys: list[str]
    admin_keys: list[str]
    inbox_owner: str | None  # the owner id of inbox drops' jobs, if a key owns them
    auth_failures: FailureWindow
    manifests: Manifests
    changes: JobChanges
    streams: StreamSlots

    @classmethod
    def open(cls, settings: ApiSettings) -> Services:
        conn = connect_redis(settings, "api")
        store = open_store(settings, conn)
        states = JobStates.for_settings(conn, store, settings)
        admin_keys = settings.load_admin_keys()
        inbox_owner = key_id(settings.inbox_owner_key) if settings.inbox_owner_key else None
        keys = settings.load_api_keys() + admin_keys
        failures = FailureWindow(settings.auth_failures_max)
        manifests = Manifests(store, settings.minio_bucket)
        streams = StreamSlots(settings.events_max_streams, settings.events_max_per_caller)
        changes = JobChanges(conn)
        return cls(settings, conn, store, states, keys, admin_keys, inbox_owner, failures, manifests, changes, streams)


async def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(_services)]
