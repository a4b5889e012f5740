"""What the chaos run (``bench/chaos.py``) stands the stack on, all on loopback in one folder: a
redis-server that can be restarted, moto's S3 server, a stand-in for MinIO's bucket notifications,
a webhook receiver that verifies signatures and can fail, a file server for URL jobs, and the
stack itself as a process tree whose services can be found, signalled and, at the end, stopped."""

from __future__ import annotations

import base64
import collections
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import imageio_ffmpeg
import psutil
import redis
from standardwebhooks import Webhook, WebhookVerificationError

from embedded.redis_server import free_port, start_redis, stop_redis
from tests.minio_notifier import minio_record, selected
from transcribe_common import keys, layout
from transcribe_common.store.base import ObjectInfo
from transcribe_common.store.s3 import S3Store

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "fixtures" / "speech"
JOBS_BUCKET, INBOX_BUCKET = "transcribe", "transcribe-inbox"
CLIP_SECONDS = 4  # of each speech fixture: enough words for every format, quick to transcribe
CLIPS = {"upload": ("upload.mp3", "clip.mp3"), "url": ("url.wav", "clip.wav"), "drop": ("inbox.mp4", "clip.mp4")}


def make_clips(folder: Path) -> dict[str, Path]:
    """The first seconds of the committed speech fixtures, one per way in (upload, URL, drop)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for kind, (source, name) in CLIPS.items():
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(SPEECH / source)]
        subprocess.run([*command, "-t", str(CLIP_SECONDS), "-c", "copy", str(folder / name)], check=True)
        made[kind] = folder / name
    return made


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def wait_for(what: str, predicate: Callable[[], object], timeout: float) -> None:
    """Poll ``predicate`` until it holds; ``timeout`` is a last resort, never the expected case."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(0.1)


class RedisServer:
    """A real redis-server with the embedded stack's persistence (append-only file, no RDB), so
    that a restart on the same port and folder finds what it held, as a production Redis would."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.closed = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if not self.closed:  # a restart fault still under way when the run is stopped starts nothing
            self.process, _ = start_redis(self.data, appendonly=True, port=self.port)

    def stop(self) -> None:
        """SIGTERM: Redis writes its append-only file and exits, as on a clean shutdown."""
        if self.process is not None:
            stop_redis(self.process)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: what its append-only file had not synced (up to a second) is lost."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def close(self) -> None:
        self.closed = True
        self.stop()


class Moto:
    """moto's S3 server in its own process (it is busy: the services' every store call lands here)."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_for("moto's S3 server", lambda: answers(f"http://127.0.0.1:{self.port}/"), timeout=60)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def store(self, endpoint: str | None = None) -> S3Store:
        return S3Store(endpoint or self.endpoint, "testing", "testing")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class Announcer(threading.Thread):
    """MinIO's bucket notifications to Redis, for moto, which has none: new manifests in the jobs
    bucket and new objects in the inbox become MinIO access-format records (built by
    ``tests/minio_notifier.py``'s ``minio_record``, selected by ``infra/minio-notify.json``'s rules)
    RPUSHed onto the events list. Like MinIO with a ``queue_dir``, what cannot be sent while Redis
    is away waits, in order, and goes once it is back.

    Unlike ``tests.minio_notifier.MinioNotifier``, which lists whole buckets every tenth of a second,
    it lists the jobs bucket one level deep (a job's folder, not its eight objects) and looks once for
    the manifest of each folder not yet announced: a full listing of 200 jobs costs moto a third of a
    second, and would take a core from the run."""

    def __init__(self, store: S3Store, redis_url: str, interval: float = 0.2) -> None:
        super().__init__(name="announcer", daemon=True)
        self.store, self.interval = store, interval
        self.conn = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.announced: set[str] = set()  # job folders whose manifest was announced
        self.seen: set[tuple[str, str]] = set()  # inbox objects (key, eTag)
        self.pending: collections.deque[str] = collections.deque()
        self.stopping = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self._scan_jobs()
                self._scan_inbox()
            except Exception:  # moto busy or a listing cut short: the next round looks again
                self.errors += 1
            self._flush()

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def _scan_jobs(self) -> None:
        folders = [o.object_name for o in self.store.client.list_objects(JOBS_BUCKET) if o.is_dir and o.object_name]
        for folder in folders:
            if folder in self.announced:
                continue
            key = folder + layout.MANIFEST
            if selected("jobs", key) and (info := self.store.stat(JOBS_BUCKET, key)) is not None:
                self._queue(JOBS_BUCKET, key, info)
                self.announced.add(folder)

    def _scan_inbox(self) -> None:
        for listed in list(self.store.list(INBOX_BUCKET)):
            if (listed.key, listed.etag) in self.seen or not selected("inbox", listed.key):
                continue
            if (info := self.store.stat(INBOX_BUCKET, listed.key)) is not None:
                self._queue(INBOX_BUCKET, listed.key, info)
            self.seen.add((listed.key, listed.etag))

    def _queue(self, bucket: str, key: str, info: ObjectInfo) -> None:
        self.pending.append(minio_record(bucket, key, info.size, info.etag, info.content_type, info.metadata))

    def _flush(self) -> None:
        while self.pending:
            try:
                self.conn.rpush(keys.EVENTS, self.pending[0])
            except redis.RedisError:
                return  # Redis is away: the queue_dir keeps them
            self.pending.popleft()


@dataclass
class Call:
    """One POST the receiver got."""

    job_id: str | None
    webhook_id: str | None
    status: str | None
    verified: bool
    answered: int | None  # the HTTP status it answered; None: it did not answer
    at: float  # time.monotonic() when it came


class Receiver:
    """A webhook consumer on loopback that verifies every POST with the ``standardwebhooks``
    library, records it, and answers 204; or, while failing, 500 (``error``) or nothing at all
    (``silent``: it holds the request until the failure ends, then hangs up without a word)."""

    def __init__(self) -> None:
        self.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.webhook = Webhook(self.secret)
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.mode = "ok"
        self.healed = threading.Event()
        self.healed.set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_HookHandler, self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True).start()

    def fail(self, mode: str) -> None:
        assert mode in ("error", "silent"), mode
        self.mode = mode
        self.healed.clear()

    def heal(self) -> None:
        self.mode = "ok"
        self.healed.set()

    def record(self, body: bytes, headers: dict[str, str]) -> str:
        """Verify and record one POST; the mode it meets."""
        try:
            self.webhook.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        mode = self.mode
        answered = {"ok": 204 if verified else 401, "error": 500, "silent": None}[mode]
        job_id, status = payload.get("job_id"), payload.get("status")
        call = Call(job_id, headers.get("webhook-id"), status, verified, answered, time.monotonic())
        with self.lock:
            self.calls.append(call)
        return mode

    def for_job(self, job_id: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.job_id == job_id]

    def close(self) -> None:
        self.heal()
        self.server.shutdown()
        self.server.server_close()


class _HookHandler(BaseHTTPRequestHandler):
    def __init__(self, receiver: Receiver, *args: object) -> None:
        self.receiver = receiver
        super().__init__(*args)  # type: ignore[arg-type]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        mode = self.receiver.record(body, {k.lower(): v for k, v in self.headers.items()})
        if mode == "silent":
            self.receiver.healed.wait(60)
            self.close_connection = True
            return
        self.send_response(500 if mode == "error" else 204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class FileServer:
    """The clips, over HTTP on loopback, for URL jobs."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietFiles, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="files", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class StackProcess:
    """The embedded stack on S3 (``bench/chaos_stack.py``) in a session of its own, its log in a file.
    Every process of its tree ever seen is remembered, so that at the end none outlives the run:
    a killed webhook sender's forked workers are no longer the stack's descendants."""

    def __init__(self, env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        command = [sys.executable, str(ROOT / "bench" / "chaos_stack.py")]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.root = psutil.Process(self.process.pid)
        self.seen: dict[int, psutil.Process] = {}
        self.lock = threading.Lock()

    def wait_ready(self, timeout: float) -> None:
        """The stack prints "ready" once every service answers its /readyz (the worker's: model loaded)."""
        wait_for("the stack's ready line", lambda: self.said_ready() or self.process.poll() is not None, timeout)
        if self.process.poll() is not None:
            raise RuntimeError(f"the stack exited with {self.process.returncode}; see {self.log}")

    def said_ready(self) -> bool:
        return b"ready: API on" in self.log.read_bytes()

    def service(self, module: str) -> psutil.Process | None:
        """The running process of ``python -m <module>``, a child of the stack; None while it is
        dead and not yet started again."""
        self.track()
        with contextlib.suppress(psutil.Error):
            for child in self.root.children():
                with contextlib.suppress(psutil.Error):
                    command = child.cmdline()
                    if child.status() != psutil.STATUS_ZOMBIE and command[1:3] == ["-m", module]:
                        return child
        return None

    def track(self) -> None:
        with contextlib.suppress(psutil.Error), self.lock:
            for process in self.root.children(recursive=True):
                self.seen.setdefault(process.pid, process)

    def stop(self, timeout: float = 120) -> None:
        """Ctrl-C, as a person would stop it (running jobs get DRAIN_TIMEOUT); then whatever of its
        tree is left, SIGCONT first (a stopped process cannot exit) and SIGKILL."""
        self.track()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for process in [*self.seen.values()]:
            with contextlib.suppress(psutil.Error):
                if process.is_running():
                    process.send_signal(signal.SIGCONT)
                    process.kill()
