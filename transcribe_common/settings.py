"""Settings every service shares. Each service subclasses this with its own; all are read from the
environment or a ``.env`` file, with the names of the product brief."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    redis_url: str = Field("redis://localhost:6379/0", description="Redis for events, queues and live status.")
    store_backend: Literal["local"] = Field("local", description="Object store: a local folder.")
    store_dir: Path = Field(Path("data/buckets"), description="Root folder of the local store.")
    minio_endpoint: str = "minio:9000"
    minio_access_key: str = ""
    minio_secret_key: str = ""
    minio_bucket: str = Field("transcribe", description="The jobs bucket: manifests, inputs, results.")
    minio_inbox_bucket: str = Field("transcribe-inbox", description="Drop media here to transcribe it.")
    log_level: str = "INFO"
