"""The janitor as operators run it: its own process, its log line per run, its /metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import redis

from embedded.redis_server import free_port
from tests.conftest import JOBS_BUCKET, Published
from tests.helpers import wait_until
from transcribe_common import layout
from transcribe_common.store.base import put_bytes


def _env(redis_server: str, local_store: Published, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_server,
        "STORE_DIR": str(local_store.store.root),
        "SCRATCH_DIR": str(local_store.store.root.parent / "scratch"),
        "ORPHAN_AFTER": "0",
        **extra,
    }


def _orphan(local_store: Published) -> str:
    job_id = layout.new_job_id()
    put_bytes(local_store.store, JOBS_BUCKET, layout.input_key(job_id, "a.mp3"), b"x" * 4096)
    return job_id


def test_a_dry_run_logs_what_it_would_do_and_leaves_it(  # type: ignore[no-untyped-def]
    redis_server: str, redis_conn: redis.Redis, local_store: Published
) -> None:
    job_id = _orphan(local_store)
    command = [sys.executable, "-m", "janitor", "--once", "--dry-run"]
    done = subprocess.run(command, env=_env(redis_server, local_store), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{job_id}: removing 1 objects (4096 bytes) [dry run: left]" in done.stderr
    assert "run (dry run): orphans_removed 1; 4096 bytes freed" in done.stderr
    assert list(local_store.store.list(JOBS_BUCKET, f"{job_id}/"))


def test_each_run_is_counted_in_its_metrics(redis_server: str, redis_conn: redis.Redis, local_store: Published) -> None:  # type: ignore[no-untyped-def]
    job_id = _orphan(local_store)
    port = free_port()
    env = _env(
        redis_server,
        local_store,
        JANITOR_INTERVAL="1",
        JANITOR_METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
    )
    process = subprocess.Popen([sys.executable, "-m", "janitor"], env=env, stderr=subprocess.PIPE, text=True)
    try:

        def metrics() -> str:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
            except httpx.HTTPError:
                return ""

        wait_until(lambda: 'transcribe_janitor_runs_total{outcome="ok"} 2.0' in metrics(), timeout=30)
        text = metrics()
        assert 'transcribe_janitor_actions_total{action="orphans_removed",dry_run="false"} 1.0' in text
        assert 'transcribe_janitor_bytes_freed_total{dry_run="false"} 4096.0' in text
        assert "transcribe_janitor_last_run_timestamp_seconds" in text
        assert not list(local_store.store.list(JOBS_BUCKET, f"{job_id}/"))
        assert not (Path(local_store.store.root) / JOBS_BUCKET / job_id).exists()
    finally:
        process.terminate()
        assert process.wait(10) == 0
