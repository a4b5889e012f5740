import hashlib
from pathlib import Path

from pydantic import Field

from transcribe_common.settings import CommonSettings


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_upload_mb: int = Field(2048, ge=1, description="Largest upload accepted, in MiB; larger gets 413.")
    api_keys: str = Field("", description="Comma-separated API keys; when any is set, /v1 needs a Bearer key.")
    api_keys_file: Path | None = Field(None, description="A file with one API key per line (# comments).")
    admin_api_keys: str = Field("", description="Comma-separated keys that see every tenant's jobs (operators).")
    inbox_owner_key: str = Field(
        "", description="The API key whose caller owns inbox drops' jobs; empty: only ADMIN_API_KEYS see them."
    )
    max_queued_per_key: int = Field(
        1000, ge=0, description="Jobs one API key may have queued or running at once; more get 429. 0: no cap."
    )
    header_timeout: float = Field(10.0, gt=0, description="Seconds a connection may take to send a request's headers.")
    body_timeout: float = Field(60.0, gt=0, description="Seconds a request's body may go without a byte; then 408.")
    auth_failures_max: int = Field(
        20,
        ge=1,
        description="Wrong API keys from one address in a minute before its further wrong keys get 429 for the "
        "rest of that minute (a right key is never refused).",
    )
    forwarded_allow_ips: str = Field(
        "",
        description="Comma-separated addresses (or networks) of the proxies in front of the API whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed; empty: none, a client's address is its connection's.",
    )
    events_recheck: float = Field(
        5.0,
        gt=0,
        description="Seconds an event stream (GET /v1/jobs/{id}/events) waits for news of its job before it reads "
        "the job anyway, in case a change's message was lost while Redis was away.",
    )
    events_max_streams: int = Field(
        1000, ge=1, description="Event streams (GET /v1/jobs/{id}/events) one API process holds open; more get 429."
    )
    events_max_per_caller: int = Field(
        50, ge=1, description="Event streams one API key (or address, with keys off) may hold open; more get 429."
    )
    events_idle_seconds: float = Field(
        300.0,
        gt=0,
        description="Seconds an event stream stays open with nothing new to send; then it ends, and the client "
        "reconnects (or polls) if its job has not ended.",
    )
    idempotency_ttl: int = Field(86400, ge=1, description="Seconds an Idempotency-Key maps to its job.")
    openai_wait_timeout: float = Field(
        1800.0,
        gt=0,
        description="Seconds POST /v1/audio/transcriptions waits for its job; then 504 naming the job to poll.",
    )

    def load_api_keys(self) -> list[str]:
        """The keys from ``API_KEYS`` and ``API_KEYS_FILE``; read once, at start."""
        found = [key.strip() for key in self.api_keys.split(",")]
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text().splitlines()
            found += [line.strip() for line in lines if not line.lstrip().startswith("#")]
        return _long_enough([key for key in found if key], "API_KEYS")

    def load_admin_keys(self) -> list[str]:
        return _long_enough([key.strip() for key in self.admin_api_keys.split(",") if key.strip()], "ADMIN_API_KEYS")


MIN_KEY_LENGTH = 16


def _long_enough(keys: list[str], setting: str) -> list[str]:
    """A key short enough to guess is refused at start, as INGRESS_SECRET is."""
    if short := [key for key in keys if len(key) < MIN_KEY_LENGTH]:
        raise ValueError(f"{setting}: {len(short)} key(s) shorter than {MIN_KEY_LENGTH} characters; use longer keys")
    return keys


def key_id(key: str) -> str:
    """A caller's id: a digest of its API key, recorded as the owner of the jobs it submits."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
