"""``transcribe-stack``: the whole pipeline on one machine, with no Docker and no network.

It starts a real redis-server (or uses ``REDIS_URL``), then processes writing to this terminal:
``WORKERS`` workers (one by default), and one for the services that hold no model (the folder
watcher, the router, the webhook sender, the janitor and the API on 127.0.0.1:8000), each on
threads of it (``embedded.light``; ``SERVICES_APART=true`` runs each in a process of its own).
A service that dies is started again. "ready" is printed once every service answers its
``/readyz`` (the worker's once its model is loaded). Ctrl-C stops them all, Redis last: running jobs
get the worker's ``DRAIN_TIMEOUT`` to finish, and a second Ctrl-C puts them back in the queue at
once. Everything lives under ``DATA_DIR`` (default ``./data``), so a second start carries on where
the first stopped.

Redis listens on ``EMBEDDED_REDIS_PORT`` (6379) when that port is free, on another free port (and
a line says so) when it is not. While the stack runs, ``DATA_DIR/stack.env`` says where its Redis,
folders and ports are, so that a service command run by hand from the same folder
(``.venv/bin/transcribe-janitor --once --dry-run``) acts on this stack
(``transcribe_common.settings``).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from embedded.redis_server import choose_port, start_redis, stop_redis
from embedded.restarts import MAX_RESTART_DELAY, STABLE_SECONDS, Backoff
from transcribe_common.logs import setup_logging
from transcribe_common.ops import OPS_PORTS
from transcribe_common.runtime import command_line
from transcribe_common.settings import STACK_PID, CommonSettings, stack_env_file
from transcribe_common.store.local import META_DIR, TMP_DIR

log = logging.getLogger("stack")

# The services, by name, and the module that runs each alone (``python -m event_router``). The
# worker holds the model and runs in processes of its own; the others hold none and share one, each
# on a thread (``embedded.light``), unless SERVICES_APART.
SERVICES = {
    "watcher": "embedded.watcher",
    "router": "event_router",
    "worker": "gpu_worker",
    "webhooks": "webhook_sender",
    "janitor": "janitor",
    "api": "ingest_api",
}
LIGHT = "light"  # the process of the services that share one
KEPT_IN = Path("redis") / "password"  # in DATA_DIR: the password of the stack's own Redis


class StackSettings(CommonSettings):
    data_dir: Path = Field(Path("data"), description="Everything the embedded stack keeps.")
    redis_url: str = Field("", description="Use this Redis instead of starting one (so do REDIS_SENTINELS).")
    embedded_redis_port: int = Field(
        6379, ge=0, le=65535, description="The port of the Redis the stack starts, when free (else any; 0: any)."
    )
    model_size: str = Field("base", description="Offline multilingual base model by default.")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    log_format: Literal["json", "text"] = Field("text", description="Lines for this terminal; json if asked.")
    drain_timeout: float = Field(60.0, ge=0, description="The worker's: seconds running jobs get to finish.")
    stop_grace: float = Field(
        15.0,
        gt=0,
        description="Seconds a service gets to stop once asked, then it is killed; the worker's drain on top.",
    )
    restart_delay: float = Field(
        1.0,
        gt=0,
        description=f"Seconds before a service that died is started again; doubled while it keeps dying young "
        f"(within {STABLE_SECONDS:g} s), up to {MAX_RESTART_DELAY:g} s.",
    )
    services_apart: bool = Field(
        False,
        description="Run the watcher, router, webhook sender, janitor and API each in a process of its own, as "
        "production does (about 50 MiB more each), rather than on threads of one; a fault in one then leaves the "
        "others running.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=16,
        description="Worker processes, each with its own model and MAX_CONCURRENCY slots, so that the shards "
        "of a long job run side by side. The n-th serves its /metrics on WORKER_METRICS_PORT + 10 * (n - 1).",
    )
    # The services' own, read here too (from the environment or .env) to ask each whether it is ready.
    router_metrics_port: int = OPS_PORTS["ROUTER"]
    worker_metrics_port: int = OPS_PORTS["WORKER"]
    janitor_metrics_port: int = OPS_PORTS["JANITOR"]
    webhook_metrics_port: int = OPS_PORTS["WEBHOOK"]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Not the ``stack.env`` of a stack: the stack writes it."""
        return init_settings, env_settings, dotenv_settings, file_secret_settings


Service = tuple[tuple[str, ...], dict[str, str]]  # its command after -m, and its environment's own


def services(settings: StackSettings) -> dict[str, Service]:
    """Every process the stack runs, by name: ``WORKERS`` worker processes, each named apart."""
    planned: dict[str, Service] = {}
    if not settings.services_apart:
        light = [module for name, module in SERVICES.items() if name != "worker"]
        planned[LIGHT] = (("embedded.light", "--restart-delay", f"{settings.restart_delay:g}", *light), {})
    for name, module in SERVICES.items():
        if name != "worker":
            if settings.services_apart:
                planned[name] = ((module,), {})
            continue
        for n in range(1, settings.workers + 1):
            port = settings.worker_metrics_port and settings.worker_metrics_port + 10 * (n - 1)
            own = {"WORKER_NAME": f"embedded-worker-{n}", "WORKER_METRICS_PORT": str(port)} if n > 1 else {}
            planned["worker" if n == 1 else f"worker-{n}"] = ((module,), own)
    return planned


class Supervisor:
    def __init__(
        self,
        env: dict[str, str],
        drain_timeout: float = 0.0,
        planned: dict[str, Service] | None = None,
        grace: float = 15.0,
        restart_delay: float = 1.0,
    ) -> None:
        self.env = env
        self.services = planned or {name: ((module,), {}) for name, module in SERVICES.items()}
        self.drain_timeout = drain_timeout
        self.grace = grace
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()
        self.hurried_at: float | None = None
        self.started_at: dict[str, float] = {}
        self.backoff = {name: Backoff(restart_delay) for name in self.services}

    def start(self, name: str) -> None:
        command, own = self.services[name]
        # A session of their own: Ctrl-C reaches only this supervisor, which stops them in order.
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", *command], env={**self.env, **own}, start_new_session=True
        )
        self.started_at[name] = time.monotonic()

    def watch(self) -> None:
        while not self.stopping.wait(0.5):
            for name, process in list(self.processes.items()):
                if process.poll() is not None and not self.stopping.is_set():
                    self.restart(name, process.returncode)

    def restart(self, name: str, code: int | None) -> None:
        """Start a dead service again, backing off while it keeps dying young."""
        lived = time.monotonic() - self.started_at[name]
        delay = self.backoff[name].after(code, lived)
        log.error("%s exited with %s after %.0f s; starting it again in %g s", name, code, lived, delay)
        if not self.stopping.wait(delay):
            self.start(name)

    def signal(self) -> None:
        """Ctrl-C (or SIGTERM): the first stops the stack; a second hurries it."""
        if self.stopping.is_set() and self.hurried_at is None:
            log.warning("second stop request: running jobs go back in the queue now")
            self.hurried_at = time.monotonic()
            self._terminate()  # each service's second signal: the worker requeues its jobs at once
        self.stopping.set()

    def stop(self) -> None:
        """Ask every service to stop, then wait: the worker for its drain and the grace, the others
        for the grace; after a second Ctrl-C, each for the grace from then."""
        self._terminate()
        started = time.monotonic()
        for name, process in self.processes.items():
            drain = self.drain_timeout if name.startswith("worker") else 0.0
            graced = False
            while process.poll() is None:
                hurried = self.hurried_at
                limit = self.grace + (0.0 if hurried else drain)
                waited = time.monotonic() - (hurried or started)
                if waited > limit:
                    log.warning("%s did not stop within %g s; killing it", name, limit)
                    process.kill()
                    process.wait()
                    break
                if waited > self.grace and drain and not hurried and not graced:
                    graced = True
                    log.info(
                        "%s is still draining after the %g s grace; it has its %g s drain", name, self.grace, drain
                    )
                time.sleep(0.1)

    def _terminate(self) -> None:
        for name in reversed(self.services):
            if (process := self.processes.get(name)) is not None and process.poll() is None:
                process.terminate()


def child_env(settings: StackSettings, redis_url: str) -> dict[str, str]:
    data = settings.data_dir.resolve()
    defaults = {
        "STORE_DIR": str(data / "buckets"),
        "SCRATCH_DIR": str(data / "scratch"),
        "MODEL_CACHE_DIR": str(data / "models"),
        "METRICS_HOST": settings.api_host,  # like the API: this machine only, unless asked
        "LOG_FORMAT": settings.log_format,
        # One name across restarts: a restarted worker replaces its old registration at once.
        "WORKER_NAME": "embedded-worker",
    }
    return {
        **defaults,
        **os.environ,
        "REDIS_URL": redis_url,
        "STORE_BACKEND": "local",
        "MODEL_SIZE": settings.model_size,
        "PUBLIC_API_URL": os.environ.get("PUBLIC_API_URL", f"http://{settings.api_host}:{settings.api_port}"),
        "PYTHONUNBUFFERED": "1",
    }


def readiness_urls(settings: StackSettings, env: dict[str, str], planned: dict[str, Service]) -> dict[str, str]:
    """Each service's ``/readyz`` (the watcher has none), where the stack's settings put it."""
    host = "127.0.0.1" if env["METRICS_HOST"] in ("0.0.0.0", "::", "") else env["METRICS_HOST"]
    api_host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    urls = {"api": f"http://{api_host}:{settings.api_port}/readyz"}
    for service in OPS_PORTS:
        if port := getattr(settings, f"{service.lower()}_metrics_port"):
            urls[service.lower()] = f"http://{host}:{port}/readyz"
    for name, (_, own) in planned.items():
        if int(own.get("WORKER_METRICS_PORT", 0)):
            urls[name] = f"http://{host}:{own['WORKER_METRICS_PORT']}/readyz"
    return urls


def wait_until_ready(urls: dict[str, str], supervisor: Supervisor, timeout: float = 600.0) -> bool:
    """True once every service answers its ``/readyz`` with 200: the worker's includes its model."""
    waiting = dict(urls)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline and not supervisor.stopping.is_set():
        for name, url in list(waiting.items()):
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    del waiting[name]
            except httpx.HTTPError:
                pass
        if waiting:
            time.sleep(0.2)
    if waiting and not supervisor.stopping.is_set():
        log.error("not ready after %g s: %s do not answer /readyz (see their lines above)", timeout, ", ".join(waiting))
    return not waiting


def main() -> None:
    command_line("transcribe-stack", __doc__)
    settings = StackSettings()
    setup_logging("stack", settings.log_level, settings.log_format)
    redis_process = None
    redis_url = shown_url = settings.redis_url
    if settings.redis_sentinels:  # the primary the Sentinels name; the URL gives its database only
        redis_url = shown_url = redis_url or "redis://localhost:6379/0"
        log.info("Redis: the primary %r of the Sentinels %s", settings.redis_sentinel_master, settings.redis_sentinels)
    elif not redis_url:
        port = choose_port(settings.embedded_redis_port)
        password = redis_password(settings.data_dir)
        redis_process, redis_url = start_redis(settings.data_dir.resolve() / "redis", port=port, password=password)
        shown_url = f'"redis://:$(cat {settings.data_dir / KEPT_IN})@127.0.0.1:{port}/0"'
        log.info("redis-server on 127.0.0.1:%d, its password in %s", port, settings.data_dir / KEPT_IN)
    env = child_env(settings, redis_url)
    planned = services(settings)
    supervisor = Supervisor(env, settings.drain_timeout, planned, settings.stop_grace, settings.restart_delay)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.signal())
    written = write_stack_env(settings, env)
    keep_private(settings, env)
    for name in planned:
        supervisor.start(name)
    threading.Thread(target=_announce, args=(settings, env, supervisor, shown_url), daemon=True).start()
    try:
        supervisor.watch()
    finally:
        log.info("stopping")
        supervisor.stop()
        written.unlink(missing_ok=True)
        if redis_process is not None:
            stop_redis(redis_process)
        log.info("stopped")


def stack_env(settings: StackSettings, env: dict[str, str]) -> dict[str, str]:
    """Where this stack put things: what a service started by hand needs to act on it. Each is in
    every service's environment too, so the stack's own services never depend on the file."""
    names = ("REDIS_URL", "STORE_BACKEND", "STORE_DIR", "SCRATCH_DIR", "MODEL_CACHE_DIR", "METRICS_HOST")
    ports = {f"{name}_METRICS_PORT": str(getattr(settings, f"{name.lower()}_metrics_port")) for name in OPS_PORTS}
    return {
        **{name: env[name] for name in (*names, "LOG_FORMAT", "MODEL_SIZE", "PUBLIC_API_URL")},
        "MINIO_BUCKET": settings.minio_bucket,
        "MINIO_INBOX_BUCKET": settings.minio_inbox_bucket,
        **(sentinels_env(settings) if settings.redis_sentinels else {}),
        **ports,
        STACK_PID: str(os.getpid()),
    }


def sentinels_env(settings: StackSettings) -> dict[str, str]:
    return {
        "REDIS_SENTINELS": settings.redis_sentinels,
        "REDIS_SENTINEL_MASTER": settings.redis_sentinel_master,
        "REDIS_SENTINEL_PASSWORD": settings.redis_sentinel_password,
    }


def write_stack_env(settings: StackSettings, env: dict[str, str]) -> Path:
    """``DATA_DIR/stack.env``, readable by its owner only (a Redis URL may hold a password)."""
    path = settings.data_dir / stack_env_file().name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by the running embedded stack; removed when it stops (transcribe_common.settings)."]
    for name, value in stack_env(settings, env).items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{name}="{escaped}"')
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


def keep_private(settings: StackSettings, env: dict[str, str]) -> None:
    """Make every folder but the inbox's its owner's only (0700): the jobs bucket holds every
    tenant's uploads and manifests (callback URLs may hold credentials), the store's sidecars and
    temporary files and the scratch folder hold the same. The inbox stays as the umask makes it,
    for the people of this machine who drop files there and read the transcripts beside them.
    Folders an earlier version made open are closed too."""
    buckets, jobs = Path(env["STORE_DIR"]), env.get("MINIO_BUCKET", settings.minio_bucket)
    private = [buckets / META_DIR, buckets / TMP_DIR, Path(env["SCRATCH_DIR"])]
    if jobs != env.get("MINIO_INBOX_BUCKET", settings.minio_inbox_bucket):
        private.append(buckets / jobs)
    for folder in private:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)


def redis_password(data_dir: Path) -> str:
    """The password of the stack's own Redis: made at its first start, kept in
    ``DATA_DIR/redis/password`` (0600) for the next ones and for a person's ``rq`` commands. Whoever
    can write to Redis can have the workers run code (RQ runs what a job names): it is never open."""
    path = data_dir / KEPT_IN
    if path.is_file() and (kept := path.read_text().strip()):
        path.chmod(0o600)
        return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(password + "\n")
    return password


DASHBOARD_PORT = 9181  # rq-dashboard's own default


def rq_commands(redis_url: str) -> list[str]:
    """RQ's own tools, as they run from this folder, for this stack's Redis (its URL as a shell
    reads it: the stack's own gives its password by the file that keeps it)."""
    rq, dashboard = _tool("rq"), _tool("rq-dashboard")
    port = choose_port(DASHBOARD_PORT, "the rq-dashboard command below", "another stack's rq-dashboard")
    web = f"RQ's web view: {dashboard} --redis-url {redis_url} -b 127.0.0.1 -p {port} (then http://127.0.0.1:{port})"
    if not Path(dashboard).exists():
        web += "; rq-dashboard is in the dashboard extra: pip install -e '.[dashboard]'"
    return [f"RQ's queues and workers: {rq} info --url {redis_url}", web]


def _tool(name: str) -> str:
    """A command of this virtual environment, by a path that works from the current folder."""
    path = Path(sys.executable).parent / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _announce(settings: StackSettings, env: dict[str, str], supervisor: Supervisor, redis_url: str) -> None:
    url = f"http://{settings.api_host}:{settings.api_port}"
    if wait_until_ready(readiness_urls(settings, env, supervisor.services), supervisor):
        inbox = Path(env["STORE_DIR"]) / env.get("MINIO_INBOX_BUCKET", settings.minio_inbox_bucket)
        log.info("ready: API on %s (docs at %s/docs); drop files into %s", url, url, inbox)
        if not settings.redis_sentinels:  # RQ's tools take one address, not the Sentinels
            for line in rq_commands(redis_url):
                log.info("%s", line)


if __name__ == "__main__":
    main()
