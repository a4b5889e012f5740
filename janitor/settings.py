from pathlib import Path

from pydantic import Field

from transcribe_common.settings import CommonSettings


class JanitorSettings(CommonSettings):
    scratch_dir: Path = Field(Path("/tmp/transcribe-scratch"), description="The workers' scratch folder.")
    scratch_max_age: int = Field(3600, ge=0, description="Seconds before a job's scratch folder is removed.")
    janitor_interval: int = Field(3600, ge=1, description="Seconds between two scans.")
