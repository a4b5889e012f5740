"""``schemathesis run``, as its own command line, against a real API process: requests generated
from the API's own OpenAPI schema — valid, invalid and malformed, stateful sequences among them —
and none may get a 5xx. The API runs alone (no router, no worker), on a real Redis and a local
store, so accepted jobs stay queued and nothing is fetched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from embedded.redis_server import free_port
from tests.helpers import wait_until


def test_schemathesis_finds_no_5xx(redis_server: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.rsplit("/", 1)[0] + "/5",
        "STORE_DIR": str(tmp_path / "buckets"),
        "API_PORT": str(port),
        "MAX_UPLOAD_MB": "1",
        "OPENAI_WAIT_TIMEOUT": "0.2",  # no worker here: OpenAI-style requests give up quickly
    }
    # With no worker, an OpenAI-style request that passes validation waits OPENAI_WAIT_TIMEOUT and
    # answers 504 naming its job, by design; any other 5xx there is still a failure.
    (tmp_path / "schemathesis.toml").write_text(
        '[[operations]]\ninclude-path = "/v1/audio/transcriptions"\n'
        'checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "504"]\n'
        '[[operations]]\ninclude-path = "/v1/audio/translations"\n'
        'checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "504"]\n'
    )
    log = tmp_path / "api.log"
    api = subprocess.Popen(
        [sys.executable, "-m", "ingest_api"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(url), timeout=30)
        command = [
            sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
            "--checks", "not_a_server_error",
            "--max-examples", "30",
            "--seed", "20261124",
            "--report", "junit", "--report-dir", str(tmp_path / "report"),
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"}, cwd=tmp_path
        )
        assert done.returncode == 0, (
            f"{done.stdout[-6000:]}\n{done.stderr[-2000:]}\napi log:\n{log.read_text()[-3000:]}"
        )
        generated = re.search(r"(\d+) generated", done.stdout)
        assert generated is not None, done.stdout[-3000:]
        assert int(generated.group(1)) >= 300  # it really ran
    finally:
        api.terminate()
        api.wait(30)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
