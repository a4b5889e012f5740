"""One error tree for the whole pipeline.

    PipelineError
    ├── InvalidInput        the request or the media is wrong; retrying will not help (4xx / failed job)
    │   └── NotFound        the job or object does not exist (404)
    ├── PermanentError      the job cannot succeed (bad media, refused URL); fail it at once
    └── RetryableError      a dependency is down or slow (network, store, Redis); try again later

Errors from redis, minio, httpx, ffmpeg and CTranslate2 are translated into these where they enter,
so that the API maps them to responses in one handler and the worker decides retry-or-fail by class.
"""


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class InvalidInput(PipelineError):
    """The caller's input is wrong; the message says what to change."""


class NotFound(InvalidInput):
    """The named job or object does not exist."""


class PermanentError(PipelineError):
    """The job cannot succeed, whatever is retried."""


class RetryableError(PipelineError):
    """A dependency failed in a way that may pass."""


class StateUnavailable(RetryableError):
    """Redis, which holds the live state of jobs, did not answer: no status could move. Never a
    job's own failure; a job that meets it is left as it is, for recovery to start it again."""
