from pathlib import Path
from typing import Literal

from pydantic import Field

from transcribe_common.ops import OPS_PORTS
from transcribe_common.settings import JobEndSettings


class JanitorSettings(JobEndSettings):
    scratch_dir: Path = Field(Path("/tmp/transcribe-scratch"), description="The workers' scratch folder.")
    scratch_max_age: int = Field(3600, ge=0, description="Seconds before a job's scratch folder is removed.")
    janitor_interval: int = Field(3600, ge=1, description="Seconds between two runs.")
    orphan_after: int = Field(3600, ge=0, description="Seconds before a job folder with no manifest is removed.")
    result_retention_days: float = Field(0, ge=0, description="Days an ended job's objects are kept; 0: forever.")
    inbox_after: Literal["keep", "delete", "move"] = Field(
        "keep", description="What becomes of an inbox drop once its transcript is written beside it."
    )
    inbox_move_prefix: str = Field(
        "processed/", min_length=1, description="Where INBOX_AFTER=move puts transcribed drops, in the inbox bucket."
    )
    incomplete_upload_after: int = Field(
        86400, ge=0, description="Seconds before an upload that was begun and never finished is aborted."
    )
    janitor_dry_run: bool = Field(False, description="Report what would be removed or announced; change nothing.")
    janitor_metrics_port: int = Field(
        OPS_PORTS["JANITOR"],
        ge=0,
        le=65535,
        description="Port of the janitor's /metrics, /healthz, /readyz; 0: none.",
    )
