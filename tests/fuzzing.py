"""``schemathesis run``, as its own command line, against a real API process: requests generated
from the API's own OpenAPI schema (valid, invalid and malformed, stateful sequences among them),
checked for 5xx answers. The API runs alone (no router, no worker), on a real Redis and a local
store, so accepted jobs stay queued and nothing is fetched.

``tests/ingest_api/test_schemathesis.py`` runs it within a budget on every change;
``bench/fuzz.py`` (``python3 dev.py bench fuzz``) runs it deep."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from embedded.redis_server import free_port
from tests.helpers import wait_until

SEED = 20261124

# With no worker, an OpenAI-style request that passes validation waits OPENAI_WAIT_TIMEOUT and
# answers 504 naming its job, by design; any other 5xx there is still a failure. A job's event
# stream stays open while the job is queued (here, for ever): its first event is read, then the
# stream is let go, as a client that has what it came for would.
CONFIG = """
[[operations]]
include-path = "/v1/audio/transcriptions"
checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "504"]
[[operations]]
include-path = "/v1/audio/translations"
checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "504"]
[[operations]]
include-path = "/v1/jobs/{job_id}/events"
max-stream-events = 1
"""


@dataclass
class Fuzzed:
    returncode: int
    output: str  # schemathesis's report, then the API's log
    generated: int  # requests generated and sent
    seconds: float


def fuzz_api(redis_url: str, folder: Path, *, max_examples: int, seed: int = SEED) -> Fuzzed:
    """One run of schemathesis over every operation, against an API process of its own."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "STORE_DIR": str(folder / "buckets"),
        "API_PORT": str(port),
        "MAX_UPLOAD_MB": "1",
        "OPENAI_WAIT_TIMEOUT": "0.2",  # no worker here: OpenAI-style requests give up quickly
    }
    (folder / "schemathesis.toml").write_text(CONFIG)
    log = folder / "api.log"
    api = subprocess.Popen(
        [sys.executable, "-m", "ingest_api"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(url), timeout=30)
        command = [
            sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
            "--checks", "not_a_server_error",
            "--max-examples", str(max_examples),
            "--seed", str(seed),
            "--report", "junit", "--report-dir", str(folder / "report"),
        ]  # fmt: skip
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}, cwd=folder)
        seconds = time.monotonic() - started
    finally:
        api.terminate()
        api.wait(30)
    generated = re.search(r"(\d+) generated", done.stdout)
    output = f"{done.stdout[-6000:]}\n{done.stderr[-2000:]}\napi log:\n{log.read_text()[-3000:]}"
    return Fuzzed(done.returncode, output, int(generated.group(1)) if generated else 0, seconds)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
