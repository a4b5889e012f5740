"""Which errors may pass if tried again: one table for every engine, and the one way to retry.

Errors are translated into the pipeline's tree (``errors``) where they enter, and each translation
asks this table which side an error goes to: ``RetryableError`` or ``PermanentError``. Every retry
loop (a worker's I/O steps, the durable write of a status, the router's events) retries by
``transient`` through tenacity, with a bound. So "is another try worth it?" has one answer,
whichever engine raised and whichever service asks.

    engine        transient (try again)                          permanent (say so, at once)
    ours          RetryableError: StoreUnavailable,              InvalidInput, PermanentError
                  StateUnavailable
    Redis         connection lost or timed out, still loading,   any other answer (a script error,
                  read-only (a replica mid-failover), TRYAGAIN,  a wrong type, no permission)
                  MASTERDOWN, out of memory
    S3 / MinIO    5xx; SlowDown, RequestTimeout, quorum lost;    any other 4xx: AccessDenied, a bad
                  a connection refused, reset or timed out       key or signature, NoSuchBucket
    HTTP (httpx)  connect, read and write errors, timeouts;      a bad URL, a redirect loop, any
                  5xx, 408 and 429 answers                       other 4xx answer
    ffmpeg        killed by a signal (out of memory, say)        an exit status: the media is bad;
                                                                 FFMPEG_TIMEOUT
    CTranslate2   out of memory on a shared device               anything else (a bad option)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import redis
import tenacity
import urllib3

from transcribe_common.errors import PipelineError, RetryableError

log = logging.getLogger(__name__)
T = TypeVar("T")

S3_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "OperationAborted",
        "XMinioServerNotInitialized",
        "XMinioReadQuorum",
        "XMinioWriteQuorum",
        "XMinioBackendDown",
    }
)
REDIS_TRANSIENT = (
    redis.ConnectionError,  # BusyLoadingError (a restart reading its data) is one too
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    redis.exceptions.OutOfMemoryError,
)
HTTP_PERMANENT = (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.LocalProtocolError)
# The engine's own words when a device or host runs out of memory: another try, later, may fit.
OUT_OF_MEMORY = ("out of memory", "CUDA_ERROR_OUT_OF_MEMORY", "std::bad_alloc")


def http_status(status_code: int) -> bool:
    """An HTTP answer that may be different later: a server error, a timeout, too many requests."""
    return status_code >= 500 or status_code in (408, 429)


def s3_answer(code: str | None, status_code: int) -> bool:
    """An S3 error answer that may be different later."""
    return code in S3_TRANSIENT_CODES or http_status(status_code)


def signal_death(returncode: int) -> bool:
    """A child process (ffmpeg) killed by a signal rather than refusing its input."""
    return returncode < 0


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` may pass if the same thing is tried again."""
    if isinstance(exc, PipelineError):
        return isinstance(exc, RetryableError)
    if isinstance(exc, redis.RedisError):
        return isinstance(exc, REDIS_TRANSIENT)
    if isinstance(exc, httpx.HTTPStatusError):
        return http_status(exc.response.status_code)
    if isinstance(exc, HTTP_PERMANENT):
        return False
    if isinstance(exc, httpx.TransportError | urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, RuntimeError | MemoryError):  # CTranslate2 says RuntimeError for most things
        return isinstance(exc, MemoryError) or any(words in str(exc) for words in OUT_OF_MEMORY)
    return False


@dataclass(frozen=True)
class Retry:
    """How often, and how patiently, one kind of step is tried again on a ``transient`` error."""

    attempts: int = 4
    backoff: float = 1.0  # the first wait, in seconds; it doubles, with jitter
    most: float = 60.0  # the longest wait
    what: str = "step"

    def call(self, step: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``step(*args, **kwargs)``, tried up to ``attempts`` times; the last error is raised."""
        return self.retrying()(step, *args, **kwargs)

    def retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(transient),
            wait=tenacity.wait_exponential_jitter(multiplier=self.backoff, max=self.most),
            stop=tenacity.stop_after_attempt(self.attempts),
            before_sleep=self._said,
            reraise=True,
        )

    def _said(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s: %s (try %d of %d); trying again", self.what, error, state.attempt_number, self.attempts)
