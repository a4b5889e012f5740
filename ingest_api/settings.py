from pydantic import Field

from transcribe_common.settings import CommonSettings


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_upload_mb: int = Field(2048, ge=1, description="Largest upload accepted, in MiB; larger gets 413.")
