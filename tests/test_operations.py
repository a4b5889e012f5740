"""What operators see of the running stack: every service's /metrics, /healthz and /readyz, and
JSON logs with the job id on every line about a job."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SPEECH, Stack, free_port
from tests.helpers import Receiver, wait_until
from tests.test_pipeline import upload
from transcribe_common import keys


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, parsed by Prometheus' own parser."""
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def finished_job(stack: Stack, receiver: Receiver) -> str:
    job_id = upload(stack, (SPEECH / "upload.mp3").read_bytes(), "observed.mp3")
    assert receiver.wait_for(job_id)["json"]["status"] == "finished"
    wait_until(lambda: receiver.for_job(job_id), timeout=30)
    return job_id


@pytest.mark.parametrize("service", ["ROUTER", "WORKER", "WEBHOOK", "JANITOR"])
def test_each_service_is_alive_and_ready(stack: Stack, service: str) -> None:
    url = stack.ops_url(service)
    healthy = {"status": "ok"}
    if service == "ROUTER":  # and what an operator should know: events it could not handle
        healthy |= {"dead_letters": 0, "events_waiting_to_retry": 0}
    assert httpx.get(f"{url}/healthz").json() == healthy
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert set(ready.json()["checks"].values()) == {"ok"}
    assert "redis" in ready.json()["checks"]
    assert httpx.get(f"{url}/nothing-here").status_code == 404


def test_the_worker_is_ready_only_with_its_models_and_says_what_it_checks(stack: Stack) -> None:
    checks = httpx.get(f"{stack.ops_url('WORKER')}/readyz").json()["checks"]
    assert checks == {"redis": "ok", "store": "ok", "models": "ok"}


def test_router_counts_events_and_their_lag(stack: Stack, finished_job: str) -> None:
    samples = scrape(stack.ops_url("ROUTER"))
    assert value(samples, "transcribe_router_events_total", outcome="enqueued") >= 1
    assert value(samples, "transcribe_router_lag_seconds_count") >= 1
    # The lag is from the store's event to the enqueue: on one machine, well under a second.
    assert value(samples, "transcribe_router_lag_seconds_bucket", le="1.0") >= 1
    assert ("transcribe_router_backlog", ()) in samples
    assert value(samples, "transcribe_queue_length", queue=keys.QUEUE) >= 0


def test_worker_counts_jobs_stages_audio_and_realtime_factor(stack: Stack, finished_job: str) -> None:
    samples = scrape(stack.ops_url("WORKER"))
    assert value(samples, "transcribe_worker_jobs_total", outcome="finished") >= 1
    assert value(samples, "transcribe_worker_job_seconds_count", outcome="finished") >= 1
    for stage in ("fetch", "decode", "transcribe", "write"):
        assert value(samples, "transcribe_worker_stage_seconds_count", stage=stage) >= 1
    audio = value(samples, "transcribe_worker_audio_seconds_total", model="tiny.en")
    assert audio >= 3.0  # the upload fixture is several seconds of speech
    rtf_sum = value(samples, "transcribe_worker_realtime_factor_sum", model="tiny.en")
    rtf_count = value(samples, "transcribe_worker_realtime_factor_count", model="tiny.en")
    assert rtf_count >= 1
    assert 0 < rtf_sum / rtf_count < 5
    assert value(samples, "transcribe_worker_slots") == 2
    assert value(samples, "transcribe_worker_models_loaded") == 2  # MODELS=tiny.en,base


def test_webhook_sender_counts_deliveries(stack: Stack, finished_job: str) -> None:
    samples = scrape(stack.ops_url("WEBHOOK"))
    assert value(samples, "transcribe_webhook_attempts_total", outcome="delivered") >= 1
    assert ("transcribe_webhook_scheduled", ()) in samples


def test_janitor_reports_its_runs(stack: Stack) -> None:
    samples = scrape(stack.ops_url("JANITOR"))
    assert value(samples, "transcribe_janitor_runs_total", outcome="ok") >= 1


def test_every_log_line_is_json_and_lines_about_a_job_carry_its_id(stack: Stack, finished_job: str) -> None:
    lines = [line for line in stack.log.read_text().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    assert {"time", "level", "service", "logger", "message"} <= set(records[0])
    about = [r for r in records if finished_job in r["message"]]
    services = {r["service"] for r in about}
    assert {"api", "router", "worker"} <= services, services
    assert all(r["job_id"] == finished_job for r in about), [r for r in about if r["job_id"] != finished_job]
    # And lines that do not name the job in their text still carry it (a stage's own lines).
    assert any(r["job_id"] == finished_job and finished_job not in r["message"] for r in records)
    job_ids = {r["job_id"] for r in records if r.get("job_id")}
    assert all(re.fullmatch(r"[0-9a-z_-]+", job_id) for job_id in job_ids)


def test_a_service_whose_redis_is_away_stays_alive_but_is_not_ready(tmp_path: Path) -> None:
    """The router started with no Redis to talk to: alive (it waits; restarting it would not help),
    not ready, and /readyz says why."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        "STORE_DIR": str(tmp_path / "buckets"),
        "ROUTER_METRICS_PORT": str(port),
        "METRICS_HOST": "127.0.0.1",
    }
    log = tmp_path / "router.log"
    with log.open("wb") as out:
        router = subprocess.Popen([sys.executable, "-m", "event_router"], env=env, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/healthz"), timeout=30)
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not ready"
        assert body["checks"]["redis"].startswith("unavailable: ")
        assert body["checks"]["store"] == "ok"
        assert scrape(url)  # the Redis gauges are left out, the scrape still works
        assert router.poll() is None, log.read_text()
        assert "redis unavailable" in log.read_text()
    finally:
        router.terminate()
        router.wait(10)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def test_rq_info_shows_our_queues_and_workers(stack: Stack, finished_job: str) -> None:
    """``rq info`` as the README says to run it, against the stack's Redis."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "rq"), "info", "--url", stack.redis_url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    out = done.stdout
    assert re.search(rf"^{re.escape(keys.QUEUE)}\s+\|", out, re.M), out
    assert re.search(rf"^{re.escape(keys.WEBHOOK_QUEUE)}\s+\|", out, re.M), out
    workers = httpx.get(f"{stack.url}/v1/stats").json()["workers"]
    # The worker's job slots (one RQ worker each) and the webhook sender's threads (one RQ worker each).
    assert re.search(rf"\b{workers + 4} workers\b", out), out
    assert keys.QUEUE in out.split("workers")[0]


def test_the_dashboard_extra_brings_what_rq_dashboard_imports_and_does_not_declare() -> None:
    """Issue 34: rq-dashboard 0.9.0 imports ``six`` and does not declare it. The test tools bring it
    (via jsonschema), so the dashboard ran here; on a runtime-only install (``python3 dev.py stack``)
    the command the stack prints crashed with ``No module named 'six'``."""
    import tomllib
    from importlib.metadata import distribution, requires

    declared = {
        re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower() for requirement in requires("rq-dashboard") or []
    }
    files = [f for f in distribution("rq-dashboard").files or [] if f.suffix == ".py"]
    imported = {m for f in files for m in re.findall(r"^(?:from|import) (\w+)", f.read_text(), re.M)}
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    extra = {
        re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower()
        for requirement in pyproject["project"]["optional-dependencies"]["dashboard"]
    }
    undeclared = {"six"} & imported - declared
    assert undeclared == {"six"}  # what the pin is for; gone once rq-dashboard declares it
    assert undeclared <= extra


def test_rq_dashboard_shows_our_queues_and_workers(stack: Stack, finished_job: str, tmp_path: Path) -> None:
    port = free_port()
    command = [str(Path(sys.executable).parent / "rq-dashboard"), "-b", "127.0.0.1", "-p", str(port)]
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        dashboard = subprocess.Popen([*command, "-u", stack.redis_url], stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), timeout=30)
        queues = {q["name"]: q for q in httpx.get(f"{url}/0/data/queues.json").json()["queues"]}
        assert {keys.QUEUE, keys.WEBHOOK_QUEUE} <= set(queues), queues
        workers = httpx.get(f"{url}/0/data/workers.json").json()["workers"]
        transcribing = [w for w in workers if keys.QUEUE in w["queues"]]
        sending = [w for w in workers if keys.WEBHOOK_QUEUE in w["queues"]]
        assert len(transcribing) == 2, workers  # MAX_CONCURRENCY=2: one RQ worker per job slot
        assert len(sending) == 4, workers  # WEBHOOK_CONCURRENCY
        assert all(w["state"] in {"idle", "busy"} for w in workers), workers
        assert httpx.get(f"{url}/0/view/workers").status_code == 200
        job = httpx.get(f"{url}/0/data/job/{finished_job}.json").json()
        assert (job["origin"], job["status"]) == (keys.QUEUE, "finished"), job
        assert job["description"] == f"transcribe {finished_job}", job
    finally:
        dashboard.terminate()
        dashboard.wait(10)
