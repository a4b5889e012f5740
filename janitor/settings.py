from pathlib import Path

from pydantic import Field

from transcribe_common.settings import CommonSettings


class JanitorSettings(CommonSettings):
    scratch_dir: Path = Field(Path("/tmp/transcribe-scratch"), description="The workers' scratch folder.")
    scratch_max_age: int = Field(3600, ge=0, description="Seconds before a job's scratch folder is removed.")
    janitor_interval: int = Field(3600, ge=1, description="Seconds between two runs.")
    orphan_after: int = Field(3600, ge=0, description="Seconds before a job folder with no manifest is removed.")
    lost_after: int = Field(300, ge=0, description="Seconds before a manifest with no status is announced again.")
    result_retention_days: float = Field(0, ge=0, description="Days an ended job's objects are kept; 0: forever.")
    janitor_dry_run: bool = Field(False, description="Report what would be removed or announced; change nothing.")
