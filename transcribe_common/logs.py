"""Logging every service sets up the same way: one JSON object per line (``LOG_FORMAT=json``, the
default), or lines for a person's terminal (``text``, the embedded stack's default).

Every line written while a job is being handled carries its id in ``job_id``: the code that takes a
job up sets it once (``job_context``), and a filter adds it to every record on that thread or task,
RQ's own lines and those of the libraries we call included.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["json", "text"]
_job_id: ContextVar[str | None] = ContextVar("job_id", default=None)
# The service a line comes from, where one process runs several (``embedded.light``), each on
# threads of its own; else the process's own, given to ``setup_logging``.
_service: ContextVar[str | None] = ContextVar("service", default=None)


def set_service(service: str) -> None:
    """Lines logged on this thread from now on (and on the threads it starts through ``thread``)
    are ``service``'s."""
    _service.set(service)


def thread(target: Callable[..., object], name: str, *args: object, **kwargs: object) -> threading.Thread:
    """A daemon thread (not started) that runs ``target`` in a copy of the caller's context: its
    lines carry the caller's service and job, as the caller's own do."""
    run = contextvars.copy_context().run
    return threading.Thread(target=run, args=(target, *args), kwargs=kwargs, name=name, daemon=True)


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Lines logged inside the block carry ``job_id``."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def set_job(job_id: str | None) -> None:
    """For code that takes one job after another on a thread of its own (an RQ worker's loop)."""
    _job_id.set(job_id)


class ContextFilter(logging.Filter):
    """Adds ``job_id`` and ``service`` to every record, from the context it is logged in."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = _job_id.get()
        record.service = _service.get() or self.service
        return True


# A URL's secrets: its userinfo (``user:password@``, ``:password@``) and its query's values.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@\"'<>]*@")
_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#\"'<>]*\?)([^\s#\"'<>]*)")


def redact(text: str) -> str:
    """``text`` with the secrets of every URL in it replaced: a callback's password or its
    ``?token=`` does not belong in a log line (``https://***@hooks.example/x?token=***``)."""
    text = _USERINFO.sub(r"\1***@", text)
    return _QUERY.sub(lambda m: m[1] + re.sub(r"=[^&;]*", "=***", m[2]), text)


class _Redacting(logging.Formatter):
    """Any formatter, its every line (message, arguments and traceback) passed through ``redact``."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class _TextFormatter(logging.Formatter):
    def __init__(self, service: str, fmt: str) -> None:
        super().__init__(fmt)
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        record.__dict__.setdefault("service", self.service)  # a record that met no ContextFilter
        line = super().format(record)
        job_id = getattr(record, "job_id", None)
        return line if job_id is None or job_id in record.getMessage() else f"{line} [job {job_id}]"


def formatter(service: str, fmt: LogFormat) -> logging.Formatter:
    return _Redacting(_formatter(service, fmt))


def _formatter(service: str, fmt: LogFormat) -> logging.Formatter:
    if fmt == "text":
        return _TextFormatter(service, "%(asctime)s %(levelname)-7s %(service)-8s %(name)s: %(message)s")
    return _JsonFormatter(
        service,
        "{service}{levelname}{name}{message}{job_id}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601 in UTC, to the microsecond
    )


class _JsonFormatter(JsonFormatter):
    def __init__(self, service: str, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        record.__dict__.setdefault("service", self.service)  # a record that met no ContextFilter
        return super().format(record)


def setup_logging(service: str, level: str = "INFO", fmt: LogFormat = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(service, fmt))
    handler.addFilter(ContextFilter(service))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise
    # Servers and libraries that bring handlers of their own write through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "rq.worker", "rq.scheduler", "rq.worker_pool"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
