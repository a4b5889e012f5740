"""``embedded.light``: the embedded stack's services that hold no model, on threads of one process,
each with its lines under its own name; one that stops is started again on its thread while the
others run on; a stop request stops them all. Real processes on a real Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import embedded.light as light_module
from tests.helpers import wait_until
from transcribe_common.ops import OPS_PORTS

DB = 28  # a database no other test uses


def light(tmp_path: Path, redis_server: str, *modules: str, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "light.log"
    environment = {
        **os.environ,
        "REDIS_URL": redis_server.rsplit("/", 1)[0] + f"/{DB}",
        "STORE_BACKEND": "local",
        "STORE_DIR": str(tmp_path / "buckets"),
        "SCRATCH_DIR": str(tmp_path / "scratch"),
        "LOG_FORMAT": "json",
        **{f"{service}_METRICS_PORT": "0" for service in OPS_PORTS},
        **env,
    }
    with log.open("wb") as out:
        command = [sys.executable, "-m", "embedded.light", "--restart-delay", "0.2", *modules]
        return subprocess.Popen(command, env=environment, stdout=out, stderr=subprocess.STDOUT), log


def stops(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM stops the process with exit code 0; if it does not, the failure shows where each of
    its threads waits (SIGUSR1: ``stop_on_signals``)."""
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(120) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        wait_until(lambda: "most recent call first" in log.read_text(errors="replace"), timeout=60)
        raise AssertionError(f"still running 120 s after SIGTERM:\n{log.read_text(errors='replace')}") from None


def lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_each_light_service_logs_under_its_name_and_a_stop_stops_them_all(tmp_path: Path, redis_server: str) -> None:
    process, log = light(tmp_path, redis_server, "event_router", "janitor", "webhook_sender", "embedded.watcher")
    said = {"router": "routing", "janitor": "run:", "webhooks": "delivering webhooks", "watcher": "watching"}

    def all_said() -> bool:
        seen = {(line["service"], line["message"]) for line in lines(log)}
        return all(any(name == who and words in message for who, message in seen) for name, words in said.items())

    try:
        wait_until(all_said, timeout=120)
        stops(process, log)
    finally:
        process.kill()
    assert "stopped" in {line["message"] for line in lines(log) if line["service"] == "webhooks"}


def test_a_light_service_that_stops_is_started_again_while_the_others_run_on(tmp_path: Path, redis_server: str) -> None:
    blocker = tmp_path / "buckets"
    blocker.write_text("a file where the store's folder should be")  # the router cannot start
    process, log = light(tmp_path, redis_server, "event_router", "webhook_sender")

    def said(service: str, words: str) -> int:
        return sum(line["service"] == service and words in line["message"] for line in lines(log))

    try:
        wait_until(lambda: said("router", "router stopped (exit code 1)") >= 2, timeout=120)
        assert said("router", "router failed") >= 2
        assert process.poll() is None
        assert said("webhooks", "delivering webhooks") == 1  # it ran on, untouched
        blocker.unlink()  # the cause is gone: the next start routes
        wait_until(lambda: said("router", "routing transcribe:events"), timeout=120)
        stops(process, log)
    finally:
        process.kill()
    assert said("webhooks", "delivering webhooks") == 1


def test_a_service_that_does_not_stop_is_left_behind_saying_where_it_waits(caplog, capfd) -> None:  # type: ignore[no-untyped-def]
    """The others stop; the process does not wait for ever on the one that does not (the
    supervisor would kill it, and say nothing of why)."""
    stopped = threading.Event()

    def stops(settings: object, stopping: threading.Event) -> int:
        stopping.wait()
        stopped.set()
        return 0

    def stuck(settings: object, stopping: threading.Event) -> int:
        threading.Event().wait()  # waits on something that never comes, whatever it is asked
        return 0

    stopping = threading.Event()
    chosen = {"a": light_module.Light("good", object, stops), "b": light_module.Light("stuck", object, stuck)}
    threading.Timer(0.2, stopping.set).start()
    assert light_module.run(chosen, {"a": object(), "b": object()}, stopping, 0.1, stop_wait=1.0) == 1  # type: ignore[dict-item]
    assert stopped.is_set()
    assert "stuck did not stop within 1 s" in caplog.text
    assert "in stuck" in capfd.readouterr().err  # the stuck thread's stack, by its function


def test_an_api_that_cannot_start_leaves_no_thread_behind(redis_server: str, tmp_path: Path) -> None:
    """embedded.light starts a failed API again and again (its port taken): each start's stop
    thread ends with its server, rather than wait for the process's stop for ever."""
    from ingest_api.__main__ import serve_until
    from ingest_api.settings import ApiSettings

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        settings = ApiSettings(redis_url=redis_server, store_dir=tmp_path / "buckets", api_port=held.getsockname()[1])
        stopping = threading.Event()
        for _ in range(3):
            with pytest.raises(SystemExit):  # uvicorn's word for a port it cannot bind (_serve logs it)
                serve_until(settings, stopping)
    wait_until(lambda: not [t for t in threading.enumerate() if t.name == "api-stop"], timeout=30)
