from pydantic import Field, field_validator
from standardwebhooks import Webhook

from transcribe_common.jobqueue import WEBHOOK_JOB_TIMEOUT
from transcribe_common.ops import OPS_PORTS
from transcribe_common.settings import CommonSettings


class WebhookSettings(CommonSettings):
    webhook_secret: str = Field("", description="whsec_... secret (Standard Webhooks); empty: webhooks go unsigned.")
    webhook_timeout: float = Field(10.0, gt=0, description="Seconds to connect, and between bytes, per attempt.")
    webhook_deadline: float = Field(
        30.0,
        gt=0,
        lt=WEBHOOK_JOB_TIMEOUT - 10,
        description="Seconds one attempt may take in all (connect, send, the answer's headers); then it is "
        "recorded as failed and tried again later like any failure.",
    )
    webhook_per_receiver: int = Field(
        0,
        ge=0,
        description="Attempts at once to one receiver (host); 0: half of WEBHOOK_CONCURRENCY, at least 1. "
        "So a slow receiver cannot take every sender process.",
    )
    webhook_attempts: int = Field(12, ge=1, description="Attempts before a webhook is given up.")
    webhook_backoff: float = Field(5.0, gt=0, description="Seconds before the first retry; each wait doubles.")
    webhook_backoff_max: float = Field(3600.0, gt=0, description="Longest wait between attempts, Retry-After too.")
    webhook_concurrency: int = Field(4, ge=1, description="Deliveries at once (RQ workers on threads of one process).")
    webhook_heartbeat_ttl: int = Field(
        30,
        ge=2,
        description="Seconds after which a silent sender counts as dead: the attempts it was running are made again.",
    )
    webhook_metrics_port: int = Field(
        OPS_PORTS["WEBHOOK"],
        ge=0,
        le=65535,
        description="Port of the sender's /metrics, /healthz, /readyz; 0: none.",
    )

    @property
    def per_receiver(self) -> int:
        return self.webhook_per_receiver or max(1, self.webhook_concurrency // 2)

    @field_validator("webhook_secret")
    @classmethod
    def _standard_secret(cls, value: str) -> str:
        if value:
            if not value.startswith("whsec_"):
                raise ValueError("WEBHOOK_SECRET must be a Standard Webhooks secret: whsec_ and base64 bytes")
            try:
                Webhook(value)
            except Exception as exc:
                raise ValueError(f"WEBHOOK_SECRET is not valid base64 after whsec_: {exc}") from exc
        return value
