"""Settings every service shares. Each service subclasses this with its own; all are read from the
environment or a ``.env`` file, with the names of the product brief.

A running embedded stack writes where it put things (its Redis, folders and ports) to
``stack.env`` in its data folder (``DATA_DIR``, ``./data`` by default). A service started by hand
from the same folder (``.venv/bin/transcribe-janitor --once --dry-run``) reads it, between the
environment and ``.env``, so that it acts on that stack. The file names the stack's process; once
that process is gone (a stack killed before it could remove the file) the file is not read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import AnyHttpUrl, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from transcribe_common.netsafe import UrlPolicy

STACK_ENV = "stack.env"
STACK_PID = "STACK_PID"  # in stack.env: the embedded stack that wrote it


def stack_env_file() -> Path:
    """Where the embedded stack of this ``DATA_DIR`` writes its settings."""
    return Path(os.environ.get("DATA_DIR") or "data") / STACK_ENV


def running_stack_env() -> Path | None:
    """``stack.env``, if the stack that wrote it still runs."""
    path = stack_env_file()
    if not path.is_file():
        return None
    pid = dotenv_values(path).get(STACK_PID) or ""
    if not pid.isdigit() or int(pid) <= 0:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, and someone else's
        pass
    return path


REDIS_SOCKET_TIMEOUT = 10.0  # seconds a Redis reply may take; our blocking reads wait 2 s at most


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment, then a running embedded stack's ``stack.env``, then ``.env``."""
        stack = DotEnvSettingsSource(settings_cls, env_file=running_stack_env())
        return init_settings, env_settings, stack, dotenv_settings, file_secret_settings

    redis_url: str = Field("redis://localhost:6379/0", description="Redis for events, queues and live status.")
    redis_password: str = Field(
        "", description="Redis's password (requirepass), for a REDIS_URL that does not hold one (redis://:pw@host)."
    )
    redis_sentinels: str = Field(
        "",
        description="host:port,host:port,... of Redis Sentinels: Redis is then the primary they name "
        "REDIS_SENTINEL_MASTER, found again after each failover; REDIS_URL gives only its database and password.",
    )
    redis_sentinel_master: str = Field("mymaster", min_length=1, description="The Sentinels' name of the primary.")
    redis_sentinel_password: str = Field("", description="The Sentinels' own password (their requirepass), if any.")

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: str) -> str:
        sentinel_addresses(value)  # host:port each, or a clear error at start
        return value

    store_backend: Literal["local", "s3"] = Field("local", description="local: a folder; s3: MinIO or S3.")
    store_dir: Path = Field(Path("data/buckets"), description="Root folder of the local store.")
    minio_endpoint: str = Field("minio:9000", description="host:port of MinIO or another S3 server.")
    minio_access_key: str = ""
    minio_secret_key: str = ""
    minio_secure: bool = Field(False, description="Use HTTPS to reach MINIO_ENDPOINT.")
    minio_region: str = Field("us-east-1", description="Region to sign for; empty asks the server.")
    minio_public_url: str = Field("", description="Base URL clients use for presigned links, if not the endpoint.")
    presign_expiry: int = Field(86400, ge=60, le=604800, description="Seconds a presigned result link works.")
    minio_bucket: str = Field("transcribe", description="The jobs bucket: manifests, inputs, results.")
    minio_inbox_bucket: str = Field("transcribe-inbox", description="Drop media here to transcribe it.")
    job_timeout: int = Field(
        1800, description="Seconds a job may run before it is failed: from its start, its shards and join included."
    )
    max_channels: int = Field(
        8, ge=2, description="Most audio channels a multichannel job is split into; more is refused, or fails."
    )
    rq_result_ttl: int = Field(86400, description="Seconds RQ keeps a finished job's record.")
    state_ttl: int = Field(
        7 * 86400,
        ge=0,
        description="Seconds an ended job's live state stays in Redis; then its status.json is the record. "
        "0 keeps it for ever.",
    )
    url_allowlist: str = Field(
        "",
        description="Networks, addresses or host names that source and callback URLs may reach although "
        "they are private (e.g. 10.0.0.0/8,minio); comma-separated. Empty: public addresses only.",
    )
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object per line, with job_id on a job's lines; text: for a terminal."
    )
    metrics_host: str = Field(
        "0.0.0.0", description="Address each background service's /metrics, /healthz and /readyz port listens on."
    )

    workers_scale_from_zero: bool = Field(
        False,
        description="Workers are started when jobs wait (KEDA, from zero replicas): a job naming one of "
        "FLEET_MODELS is taken and waits for a worker, although none is alive now, and MODEL_WAIT does not fail it.",
    )
    fleet_models: str = Field(
        "", description="With WORKERS_SCALE_FROM_ZERO: the model names the scaled workers serve, comma-separated."
    )

    @property
    def url_policy(self) -> UrlPolicy:
        return UrlPolicy.from_setting(self.url_allowlist)

    @property
    def scalable_models(self) -> list[str]:
        """The models a worker will be started for; none unless ``WORKERS_SCALE_FROM_ZERO``."""
        if not self.workers_scale_from_zero:
            return []
        return [name.strip() for name in self.fleet_models.split(",") if name.strip()]

    @model_validator(mode="after")
    def _fleet_names_its_models(self) -> CommonSettings:
        if self.workers_scale_from_zero and not self.scalable_models:
            raise ValueError(
                "WORKERS_SCALE_FROM_ZERO=true needs FLEET_MODELS: the names of the models the scaled workers serve"
            )
        return self


class JobEndSettings(CommonSettings):
    """What a service that ends jobs needs: the worker ends the jobs it runs, and the janitor ends
    those whose worker died or whose input vanished, in the same way (``transcribe_common.ending``)."""

    max_attempts: int = Field(2, ge=1, description="Times a job is started before a worker death fails it.")
    lost_after: int = Field(
        300,
        ge=0,
        description="Seconds a job, shard or inbox drop may go with nothing doing it (in no RQ queue, with no "
        "worker) before it is queued or announced again.",
    )
    webhook_on_error: bool = True
    default_callback_url: AnyHttpUrl | None = Field(
        None, description="Webhook for jobs that name none, inbox drops among them."
    )
    public_api_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL of the API, for result links when the store cannot presign."
    )
    io_attempts: int = Field(4, ge=1, description="Tries of a download or store read or write that fails transiently.")
    io_backoff: float = Field(1.0, gt=0, description="First wait between those tries, in seconds; it doubles.")
    model_wait: float = Field(
        600.0, gt=0, description="Seconds a job may wait for a model that no live worker serves before it fails."
    )


def sentinel_addresses(listed: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as (host, port) pairs."""
    addresses = []
    for item in filter(None, (part.strip() for part in listed.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return addresses
