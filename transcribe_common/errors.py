"""One error tree for the whole pipeline.

    PipelineError
    ├── InvalidInput        the request or the media is wrong; retrying will not help (4xx / failed job)
    │   └── NotFound        the job or object does not exist (404)
    │       └── ObjectMissing   the store has no such object; its message names bucket and key (logs only)
    ├── PermanentError      the job cannot succeed (bad media, refused URL); fail it at once
    │   └── StoreRefused    the object store refused (AccessDenied, a bad key): a setup to fix
    └── RetryableError      a dependency is down or slow (network, store, Redis); try again later
        ├── StateUnavailable    Redis did not answer
        └── StoreUnavailable    the object store did not answer, or said "try again"

Errors from redis, minio, httpx, ffmpeg and CTranslate2 are translated into these where they enter,
so that the API maps them to responses in one handler and the worker decides retry-or-fail by class;
which side an engine's error goes to is one table, ``transient``.
"""


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class InvalidInput(PipelineError):
    """The caller's input is wrong; the message says what to change."""


class NotFound(InvalidInput):
    """The named job or object does not exist."""


class ObjectMissing(NotFound):
    """The object store has no object at a bucket and key. The message names them, for the logs;
    what callers read says only that something is gone (``public_message``)."""


class PermanentError(PipelineError):
    """The job cannot succeed, whatever is retried."""


class RetryableError(PipelineError):
    """A dependency failed in a way that may pass."""


class StateUnavailable(RetryableError):
    """Redis, which holds the live state of jobs, did not answer: no status could move. Never a
    job's own failure; a job that meets it is left as it is, for recovery to start it again."""


def public_message(exc: BaseException) -> str:
    """What a caller may read of an error: ours are written for them, except the store's own
    (they name buckets, keys and hosts), which are said plainly."""
    if isinstance(exc, ObjectMissing):
        return "an object the job needs is missing from the store"
    if isinstance(exc, StoreUnavailable):
        return "the object store is unavailable; try again shortly"
    if isinstance(exc, StoreRefused):
        return "the object store refused the service's request; its operator must fix the set-up"
    return str(exc)


class StoreUnavailable(RetryableError):
    """The object store did not answer, or answered with an error; the message has the details."""


class StoreRefused(PermanentError):
    """The object store answered with an error that another try will not change (AccessDenied, a
    bad signature or key, an unknown bucket): the deployment's set-up is wrong."""
