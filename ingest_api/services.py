"""What the routes need, opened once per process and handed to them as a dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis
from fastapi import Depends, Request

from ingest_api.settings import ApiSettings
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

    @classmethod
    def open(cls, settings: ApiSettings) -> Services:
        conn = connect_redis(settings, "api")
        store = open_store(settings, conn)
        states = JobStates(conn, store, settings.minio_bucket)
        return cls(settings, conn, store, states, settings.load_api_keys())


async def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(_services)]
