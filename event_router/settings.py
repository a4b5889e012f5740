from pydantic import Field, model_validator

from transcribe_common.ops import OPS_PORTS
from transcribe_common.settings import CommonSettings

PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "example"}


class RouterSettings(CommonSettings):
    ingress_port: int = Field(0, ge=0, le=65535, description="Port of the webhook ingress; 0 turns it off.")
    ingress_host: str = Field("0.0.0.0", description="Address the webhook ingress listens on.")
    ingress_secret: str = Field("", description="Token senders must give: Authorization: Bearer <token>.")
    event_attempts: int = Field(
        8, ge=1, description="Tries of an event that fails transiently before it becomes a dead letter."
    )
    router_metrics_port: int = Field(
        OPS_PORTS["ROUTER"], ge=0, le=65535, description="Port of the router's /metrics, /healthz and /readyz; 0: none."
    )

    @model_validator(mode="after")
    def _ingress_needs_a_real_secret(self) -> "RouterSettings":
        if self.ingress_port and (len(self.ingress_secret) < 16 or self.ingress_secret.lower() in PLACEHOLDERS):
            raise ValueError("INGRESS_PORT is set: INGRESS_SECRET must be a real secret of 16+ characters")
        return self
