"""The workers alive now, and what they serve: the one answer ``GET /v1/models``, the check at
submission, ``/v1/stats`` and the model wait all read.

Each worker process keeps one field of ``keys.WORKERS`` (its ``WORKER_NAME``) holding a
``WorkerRecord``: its job slots, the models it serves (the first is its default) and the time until
which it vouches for them, pushed forward by every heartbeat. A worker that stops taking jobs
removes its field at once, before it drains; a killed one stops counting when ``until`` passes
(``WORKER_HEARTBEAT_TTL``). A worker restarted under the same name overwrites its old field, so a
restart never counts twice.

A fleet that starts workers when jobs wait (KEDA, from zero replicas: ``WORKERS_SCALE_FROM_ZERO``)
also serves ``FLEET_MODELS`` while no worker is alive: ``available`` counts them, so that the
first job for one is taken and waits for its worker instead of being refused or failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import redis
from pydantic import BaseModel, ValidationError

from transcribe_common import keys
from transcribe_common.models import JobOptions

log = logging.getLogger(__name__)


class ServedModel(BaseModel):
    multilingual: bool = True


class WorkerRecord(BaseModel):
    name: str
    host: str
    pid: int
    slots: int
    models: dict[str, ServedModel]  # in the worker's order: the first is its default
    until: float

    @property
    def default_model(self) -> str:
        return next(iter(self.models))


def advertise(conn: redis.Redis, record: WorkerRecord) -> None:
    """Say (again) that this worker is alive and serves its models until ``record.until``; fields
    of workers that died long ago are dropped on the way, so the hash holds about the live ones."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.hset(keys.WORKERS, record.name, record.model_dump_json())
        pipe.hset(keys.MODELS_SERVED, mapping=dict.fromkeys(record.models, record.until))
        pipe.hgetall(keys.WORKERS)
        *_, raw = pipe.execute()
    expired = [name for name, found in _records(raw).items() if found is None or found.until < time.time() - 3600]
    if expired:
        conn.hdel(keys.WORKERS, *expired)


def withdraw(conn: redis.Redis, name: str) -> None:
    """This worker takes no more jobs: it stops counting now, whatever it still finishes."""
    conn.hdel(keys.WORKERS, name)


def registered(conn: redis.Redis, name: str) -> WorkerRecord | None:
    raw = conn.hget(keys.WORKERS, name)
    return _parse(raw) if raw is not None else None


def live(conn: redis.Redis, now: float | None = None) -> list[WorkerRecord]:
    """The workers whose heartbeat vouches for them now."""
    now = time.time() if now is None else now
    return [record for record in _records(conn.hgetall(keys.WORKERS)).values() if record and record.until > now]


def served_models(conn: redis.Redis) -> dict[str, ServedModel]:
    return models_of(live(conn))


def models_of(workers: list[WorkerRecord]) -> dict[str, ServedModel]:
    """Every model these workers serve (English-only if every worker serving it says so)."""
    served: dict[str, ServedModel] = {}
    for record in workers:
        for name, model in record.models.items():
            served[name] = ServedModel(multilingual=model.multilingual or served.get(name, model).multilingual)
    return served


def available(workers: list[WorkerRecord], scalable: list[str]) -> dict[str, ServedModel]:
    """The models a job may name: those of ``workers``, and those a worker will be started for
    (``CommonSettings.scalable_models``). Whether one of the latter is English-only is not known
    before its worker says so; until then it is taken for multilingual, and the worker that
    takes the job refuses it if not (``unfit``), as it refuses any job its model cannot do."""
    served = models_of(workers)
    for name in scalable:
        served.setdefault(name, ServedModel())
    return served


def last_served(conn: redis.Redis) -> dict[str, float]:
    """When each model was last vouched for by a live worker (epoch seconds)."""
    return {keys.text(name): float(until) for name, until in conn.hgetall(keys.MODELS_SERVED).items()}


def live_slots(conn: redis.Redis) -> int:
    return sum(record.slots for record in live(conn))


def unfit(model: str, multilingual: bool, options: JobOptions) -> str | None:
    """Why ``model`` cannot do what ``options`` ask, or None: an English-only model neither
    transcribes another language nor translates (it would make English-sounding gibberish)."""
    if multilingual:
        return None
    if options.task == "translate":
        asked = "translate (task=translate)"
    elif options.language not in (None, "en"):
        asked = f"transcribe language {options.language!r}"
    else:
        return None
    return f"model {model!r} is English-only and cannot {asked}; name a multilingual model in 'model'"


def _records(raw: Mapping[bytes | str, bytes | str]) -> dict[str, WorkerRecord | None]:
    return {keys.text(name): _parse(value) for name, value in raw.items()}


def _parse(raw: bytes | str) -> WorkerRecord | None:
    try:
        return WorkerRecord.model_validate_json(raw)
    except ValidationError:
        log.warning("an unreadable worker record in %s; ignored", keys.WORKERS)
        return None
