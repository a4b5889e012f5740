from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from dotenv import dotenv_values

from embedded.redis_server import free_port, free_ports, start_redis, stop_redis
from tests.browser import launched
from tests.helpers import SPEECH, WEBHOOK_SECRET, FileServer, Receiver, TrickyServer, leaks, wait_until
from transcribe_common.jobstate import JobStates
from transcribe_common.ops import OPS_PORTS
from transcribe_common.store.local import LocalStore
from transcribe_common.store.s3 import S3Store

JOBS_BUCKET = "transcribe"
INBOX_BUCKET = "transcribe-inbox"


@pytest.fixture(scope="session", autouse=True)
def errors_tell_no_secrets() -> Iterator[None]:
    """Every answer the suite gets over HTTP (in process or from a stack) is looked at: the body of
    each 4xx and 5xx, and the error and warnings of each job, may name no bucket, key or server path."""
    send = httpx.Client.send

    def looked_at(client: httpx.Client, request: httpx.Request, **kwargs: object) -> httpx.Response:
        response = send(client, request, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("stream") or not response.is_closed:
            return response
        shown = response.text if response.status_code >= 400 else _job_messages(response)
        assert not leaks(shown), f"{request.method} {request.url.path} answered {response.status_code}: {shown}"
        return response

    httpx.Client.send = looked_at  # type: ignore[method-assign]
    yield
    httpx.Client.send = send  # type: ignore[method-assign]


@pytest.fixture(scope="session", autouse=True)
def no_stack_of_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A service a test starts reads no ``data/stack.env`` of an embedded stack running in the
    checkout (``transcribe_common.settings``): DATA_DIR names an empty folder unless a test sets it."""
    before = os.environ.get("DATA_DIR")
    os.environ["DATA_DIR"] = str(tmp_path_factory.mktemp("no-stack"))
    yield
    if before is None:
        os.environ.pop("DATA_DIR", None)
    else:
        os.environ["DATA_DIR"] = before


def _job_messages(response: httpx.Response) -> str:
    if "/v1/jobs/" not in response.request.url.path or "json" not in response.headers.get("content-type", ""):
        return ""
    body = response.json()
    return json.dumps([body.get("error"), body.get("warnings")]) if isinstance(body, dict) else ""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium (tests/browser.py), one per test module that asks for it."""
    yield from launched()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port; the tests use db 0, the stack db 1, and the
    other stacks and processes each a database of their own (32 of them)."""
    process, url = start_redis(tmp_path_factory.mktemp("redis"), appendonly=False, databases=32)
    yield url
    stop_redis(process)


@pytest.fixture
def redis_conn(redis_server: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server)
    conn.flushdb()
    yield conn
    conn.close()


@dataclass
class Published:
    """A local store whose announcements are kept, to be replayed by a test."""

    store: LocalStore
    records: list[str]


@pytest.fixture
def local_store(tmp_path: Path) -> Published:
    records: list[str] = []
    store = LocalStore(tmp_path / "buckets", notify=records.append)
    for bucket in (JOBS_BUCKET, INBOX_BUCKET):
        store.ensure_bucket(bucket)
    return Published(store, records)


@pytest.fixture
def states(redis_conn: redis.Redis, local_store: Published) -> JobStates:
    return JobStates(redis_conn, local_store.store, JOBS_BUCKET)


@dataclass
class S3Server:
    endpoint: str
    access_key: str = "testing"
    secret_key: str = "testing"

    def store(self, **kwargs: object) -> S3Store:
        return S3Store(self.endpoint, self.access_key, self.secret_key, **kwargs)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        return {
            "STORE_BACKEND": "s3",
            "MINIO_ENDPOINT": self.endpoint,
            "MINIO_ACCESS_KEY": self.access_key,
            "MINIO_SECRET_KEY": self.secret_key,
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server in its own process, on a free loopback port."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}/"), timeout=30, interval=0.1)
    yield S3Server(f"127.0.0.1:{port}")
    process.terminate()
    process.wait(10)


@pytest.fixture
def s3_store(s3_server: S3Server) -> S3Store:
    """An S3 store with fresh, empty jobs and inbox buckets."""
    store = s3_server.store()
    for bucket in (JOBS_BUCKET, INBOX_BUCKET):
        store.ensure_bucket(bucket)
        for info in list(store.list(bucket)):
            store.delete(bucket, info.key)
    return store


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    server = Receiver(WEBHOOK_SECRET)
    yield server
    server.close()


@pytest.fixture(scope="session")
def tricky_server() -> Iterator[TrickyServer]:
    server = TrickyServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def file_server() -> Iterator[FileServer]:
    server = FileServer(SPEECH)
    yield server
    server.close()


OPS_SERVICES = tuple(OPS_PORTS)  # each serves /metrics, /healthz, /readyz


@dataclass
class Stack:
    url: str
    data: Path
    redis_url: str
    log: Path
    pid: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def ops_url(self, service: str) -> str:
        """Base URL of a background service's operations port (``ROUTER``, ``WORKER``, ...)."""
        return f"http://127.0.0.1:{self.env[f'{service}_METRICS_PORT']}"

    def service(self, module: str) -> psutil.Process:
        """The running process of one service, a child of the stack's supervisor."""
        for child in psutil.Process(self.pid).children():
            with contextlib.suppress(psutil.ZombieProcess):  # one that died, not yet reaped
                if module in child.cmdline():
                    return child
        raise LookupError(module)

    @property
    def inbox(self) -> Path:
        return self.data / "buckets" / INBOX_BUCKET

    def said_ready(self) -> bool:
        """The stack printed "ready": every service answers its /readyz."""
        return b"ready: API on" in self.log.read_bytes()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_stack(
    data: Path, redis_url: str | None, receiver: Receiver, *, flush: bool = True, **env: str
) -> Iterator[Stack]:
    """The embedded stack, started by its real entry point as a user would, on tiny.en; on an
    empty Redis database unless ``flush`` is false (a restart finds what the last run left). With
    no ``redis_url``, on a Redis of its own, as ``python3 dev.py stack`` runs it."""
    port, *ops = free_ports(1 + len(OPS_SERVICES))  # distinct: a port given twice started no API
    url = f"http://127.0.0.1:{port}"
    if flush and redis_url is not None:
        redis.Redis.from_url(redis_url).flushdb()
    own = {"EMBEDDED_REDIS_PORT": "0"} if redis_url is None else {"REDIS_URL": redis_url}
    environment = {
        **{name: value for name, value in os.environ.items() if name != "REDIS_URL"},
        "DATA_DIR": str(data),
        **own,
        "MODEL_SIZE": "tiny.en",
        "API_PORT": str(port),
        "PUBLIC_API_URL": url,
        "DEFAULT_CALLBACK_URL": f"{receiver.url}/default",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "URL_ALLOWLIST": "127.0.0.1",
        "WEBHOOK_BACKOFF": "0.5",
        "SETTLE_SECONDS": "0.5",
        "RESTART_DELAY": "0.2",  # a service the test killed is back at once (doubling while it keeps dying)
        "WHISPER_CPU_THREADS": "2",
        # Event streams hear of changes only by pub/sub here: one that is not published hangs its test.
        "EVENTS_RECHECK": "3600",
        **{f"{service}_METRICS_PORT": str(ops_port) for service, ops_port in zip(OPS_SERVICES, ops, strict=True)},
        **env,
    }
    data.mkdir(parents=True, exist_ok=True)
    log = data / f"stack-{port}.log"  # one per start: a restart on the same data has its own
    with log.open("wb") as out:
        command = [sys.executable, "-m", "embedded"]
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT)
        stack = Stack(url, data, redis_url or "", log, process.pid, environment, process)
        try:
            wait_until(lambda: stack.said_ready() or process.poll() is not None, timeout=300, interval=0.2)
            assert process.poll() is None
        except AssertionError:
            process.kill()
            raise AssertionError(f"the stack did not come up:\n{stack.log_tail()}") from None
        if redis_url is None:  # where the stack says its own Redis is
            stack.redis_url = dotenv_values(data / "stack.env")["REDIS_URL"] or ""
        yield stack
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(120)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: str, receiver: Receiver) -> Iterator[Stack]:
    limits = {
        # Ten times what the longest job here needs on a busy machine; JOB_TIMEOUT itself is
        # tested on a stack of its own (tests/gpu_worker/test_limits.py).
        "JOB_TIMEOUT": "300",
        # tiny.en by default, and the multilingual base for what an English-only model cannot do.
        "MODELS": "tiny.en,base",
        "MODEL_WAIT": "2",
        "LANGUAGE_CONFIDENCE_MIN": "0.95",
        "REAP_INTERVAL": "1",
        "MAX_CONCURRENCY": "2",
        "MAX_AUDIO_SECONDS": "600",
        "MAX_DOWNLOAD_MB": "1",
        "MAX_JOB_DISK_MB": "64",  # ten times what the longest job here needs (MAX_AUDIO_SECONDS above, split)
        "IO_BACKOFF": "0.2",
        "LOG_FORMAT": "json",
    }
    redis_url = redis_server.rsplit("/", 1)[0] + "/1"
    with running_stack(tmp_path_factory.mktemp("stack"), redis_url, receiver, **limits) as running:
        yield running


@pytest.fixture(scope="session")
def timeout_stack(tmp_path_factory: pytest.TempPathFactory, redis_server: str, receiver: Receiver) -> Iterator[Stack]:
    """A stack whose jobs have JOB_TIMEOUT=5: each whole, shards and join included."""
    redis_url = redis_server.rsplit("/", 1)[0] + "/11"  # a database of its own: no other test uses 11
    with running_stack(tmp_path_factory.mktemp("timeout"), redis_url, receiver, JOB_TIMEOUT="5") as stack:
        yield stack


# The tenants of ``tenant_stack``: two API keys, and an admin's that sees every job.
TENANT_ONE, TENANT_TWO, ADMIN_KEY = "tenant-one-key-0123456789", "tenant-two-key-0123456789", "admin-key-0123456789ab"


@pytest.fixture(scope="session")
def tenant_stack(tmp_path_factory: pytest.TempPathFactory, redis_server: str, receiver: Receiver) -> Iterator[Stack]:
    """A stack with API keys: two tenants and an admin."""
    redis_url = redis_server.rsplit("/", 1)[0] + "/20"  # a database no other test uses
    settings = {
        "API_KEYS": f"{TENANT_ONE},{TENANT_TWO}",
        "ADMIN_API_KEYS": ADMIN_KEY,
        "MODELS": "tiny.en",
        "MAX_CONCURRENCY": "2",
        "JOB_TIMEOUT": "300",
    }
    with running_stack(tmp_path_factory.mktemp("tenants"), redis_url, receiver, **settings) as stack:
        yield stack
