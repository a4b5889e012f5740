"""Stopping and starting the embedded stack (issue 14), each on a stack of its own: Ctrl-C lets
running jobs finish within the worker's DRAIN_TIMEOUT and a second Ctrl-C puts them back in the
queue; a stopping worker stops counting at once; "ready" means every service is ready; a
restarted worker never counts twice."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from tests.conftest import TENANT_ONE, Stack, running_stack
from tests.helpers import GatedServer, Receiver, wait_until


@pytest.fixture
def gated() -> GatedServer:
    server = GatedServer("url.wav")
    yield server  # type: ignore[misc]
    server.close()


def redis_db(redis_server: str, db: int) -> str:
    return redis_server.rsplit("/", 1)[0] + f"/{db}"


def submit(stack: Stack, url: str) -> str:
    request = {"source_type": "url", "url": url, "language": "en"}
    response = httpx.post(f"{stack.url}/v1/transcribe", json=request)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def said(stack: Stack, text: str) -> bool:
    return text.encode() in stack.log.read_bytes()


def stats(stack: Stack) -> dict:
    return httpx.get(f"{stack.url}/v1/stats", timeout=5).json()  # type: ignore[no-any-return]


def test_ctrl_c_lets_a_running_job_finish_within_the_drain_timeout(
    tmp_path: Path, redis_server: str, receiver: Receiver, gated: GatedServer
) -> None:
    env = {"DRAIN_TIMEOUT": "600", "DOWNLOAD_TIMEOUT": "600", "STOP_GRACE": "1"}
    with running_stack(tmp_path, redis_db(redis_server, 7), receiver, **env) as stack:
        job_id = submit(stack, gated.url)
        assert gated.asked.wait(60)
        worker = stack.service("gpu_worker")
        stack.process.send_signal(signal.SIGINT)
        wait_until(lambda: said(stack, "running jobs get 600 s to finish"), timeout=60)
        # Past the supervisor's own grace (every other service has stopped): the worker must still be draining.
        wait_until(lambda: said(stack, "worker is still draining after the 1 s grace"), timeout=60)
        assert worker.is_running(), stack.log_tail()
        gated.open()
        assert stack.process.wait(300) == 0, stack.log_tail()
    status = json.loads((tmp_path / "buckets" / "transcribe" / job_id / "status.json").read_text())
    assert status["status"] == "finished", stack.log_tail()
    assert (tmp_path / "buckets" / "transcribe" / status["outputs"]["srt"]).is_file()


def test_a_second_ctrl_c_puts_the_running_job_back_in_the_queue_at_once(
    tmp_path: Path, redis_server: str, receiver: Receiver, gated: GatedServer
) -> None:
    url = redis_db(redis_server, 8)
    env = {"DRAIN_TIMEOUT": "600", "DOWNLOAD_TIMEOUT": "600"}
    with running_stack(tmp_path, url, receiver, **env) as stack:
        job_id = submit(stack, gated.url)
        assert gated.asked.wait(60)
        stack.process.send_signal(signal.SIGINT)
        wait_until(lambda: said(stack, "running jobs get 600 s to finish"), timeout=60)
        stack.process.send_signal(signal.SIGINT)
        assert stack.process.wait(120) == 0, stack.log_tail()  # far within the 600 s drain
        assert said(stack, "1 jobs requeued"), stack.log_tail()
    conn = redis.Redis.from_url(url)
    assert conn.hget(f"transcribe:job:{job_id}", "status") == b"queued"
    assert job_id.encode() in conn.lrange("rq:queue:transcribe", 0, -1)  # the next start runs it


def test_a_stopping_worker_stops_counting_at_once(
    tmp_path: Path, redis_server: str, receiver: Receiver, gated: GatedServer
) -> None:
    """While it drains, a worker takes no jobs: /v1/models and /v1/stats say so at once, not once
    its heartbeat has run out; after its restart it counts again, once."""
    env = {"DRAIN_TIMEOUT": "600", "DOWNLOAD_TIMEOUT": "600"}
    with running_stack(tmp_path, redis_db(redis_server, 9), receiver, **env) as stack:
        assert httpx.get(f"{stack.url}/v1/models").json() == {"models": ["tiny.en"]}
        job_id = submit(stack, gated.url)
        assert gated.asked.wait(60)
        worker = stack.service("gpu_worker")
        worker.terminate()
        wait_until(lambda: said(stack, "running jobs get 600 s to finish"), timeout=60)
        assert httpx.get(f"{stack.url}/v1/models").json() == {"models": []}
        assert stats(stack)["workers"] == 0
        refused = httpx.post(
            f"{stack.url}/v1/transcribe", json={"source_type": "url", "url": gated.url, "model": "tiny.en"}
        )
        assert refused.status_code == 422
        assert refused.json()["detail"] == "model: no live worker serves model 'tiny.en'; served now: none"
        gated.open()
        worker.wait(120)
        wait_until(lambda: stats(stack)["workers"] == 2, timeout=120)  # restarted by the supervisor
        assert httpx.get(f"{stack.url}/v1/jobs/{job_id}").json()["status"] == "finished"


def test_ready_means_every_service_is_ready_and_a_restart_counts_each_slot_once(
    tmp_path: Path, redis_server: str, receiver: Receiver
) -> None:
    url = redis_db(redis_server, 10)
    with running_stack(tmp_path, url, receiver) as first:
        worker = first.service("gpu_worker")
        worker.kill()  # its registrations stay behind in Redis
        seen = []

        def back() -> bool:
            seen.append(stats(first)["workers"])
            try:
                return first.service("gpu_worker").pid != worker.pid and seen[-1] == 2
            except (LookupError, psutil.Error):
                return False  # not restarted yet

        wait_until(back, timeout=120, interval=0.05)
        assert max(seen) <= 2, seen  # MAX_CONCURRENCY slots of the one worker, never its ghost's too
        supervisor = psutil.Process(first.pid)
        for process in [*supervisor.children(recursive=True), supervisor]:
            process.kill()  # the whole stack dies at once, its services' own children too: Redis keeps what it had
        first.process.wait(30)
    with running_stack(tmp_path, url, receiver, flush=False) as second:
        # At the moment it says ready, the worker has its models and is counted once.
        worker_ready = httpx.get(f"{second.ops_url('WORKER')}/readyz")
        assert worker_ready.status_code == 200, worker_ready.text
        assert stats(second)["workers"] == 2


def test_a_stack_with_api_keys_says_ready_too(tenant_stack: Stack) -> None:
    """It asks each service's /readyz, which needs no key: with API_KEYS set it still says ready
    (it polled /v1/stats without a key before, and never did)."""
    assert tenant_stack.said_ready()
    assert httpx.get(f"{tenant_stack.url}/v1/stats").status_code == 401
    headers = {"Authorization": f"Bearer {TENANT_ONE}"}
    assert httpx.get(f"{tenant_stack.url}/v1/stats", headers=headers).json()["workers"] == 2
