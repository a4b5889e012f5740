from pydantic import Field

from transcribe_common.settings import CommonSettings


class RouterSettings(CommonSettings):
    job_timeout: int = Field(1800, description="Seconds a transcription may run before it is failed.")
    rq_result_ttl: int = Field(86400, description="Seconds RQ keeps a finished job's record.")
