"""What the routes need, opened once per process and handed to them as a dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request

from ingest_api.settings import ApiSettings, key_id
from ingest_api.throttle import FailureWindow
from transcribe_common.jobstate import JobStates
from transcribe_common.runtime import connect_redis, open_store
from transcribe_common.store.base import ObjectStore


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

    @classmethod
    def open(cls, settings: ApiSettings) -> Services:
        conn = connect_redis(settings, "api")
        store = open_store(settings, conn)
        states = JobStates.for_settings(conn, store, settings)
        admin_keys = settings.load_admin_keys()
        inbox_owner = key_id(settings.inbox_owner_key) if settings.inbox_owner_key else None
        keys = settings.load_api_keys() + admin_keys
        failures = FailureWindow(settings.auth_failures_max)
        return cls(settings, conn, store, states, keys, admin_keys, inbox_owner, failures)


async def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(_services)]
