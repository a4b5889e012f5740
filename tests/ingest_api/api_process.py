"""The API as ``transcribe-api`` runs it (uvicorn with ``ingest_api.server``), in a process of its
own on a free loopback port, its log lines kept in a file for the test to read."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from embedded.redis_server import free_port
from tests.helpers import wait_until

DB = 7  # this suite's Redis database for the processes started here (tests/conftest.py uses 0 and 1)


@dataclass
class ApiProcess:
    url: str
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


@contextlib.contextmanager
def api_process(folder: Path, redis_server: str, **settings: str) -> Iterator[ApiProcess]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.rsplit("/", 1)[0] + f"/{DB}",
        "STORE_DIR": str(folder / "buckets"),
        "API_PORT": str(port),
        "LOG_FORMAT": "json",
        **settings,
    }
    log = folder / f"api-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ingest_api"], env=env, stdout=out, stderr=out)
    served = ApiProcess(f"http://127.0.0.1:{port}", log)
    try:
        wait_until(lambda: _answers(served.url) or process.poll() is not None, timeout=60, interval=0.1)
        assert process.poll() is None, "\n".join(served.lines())
        yield served
    finally:
        process.terminate()
        process.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
