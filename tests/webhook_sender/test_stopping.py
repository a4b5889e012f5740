"""How ``transcribe-webhooks`` stops: a signal to its process group, as a terminal's Ctrl-C or a
supervisor sends it. It lets the attempts it is running end and be recorded, waits for nothing
else (not a Redis that does not answer), and exits. Found by CI with the forking sender it
replaced: now and then a sender SIGTERMed with its process group never exited."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from embedded.redis_server import start_redis, stop_redis
from tests.helpers import Receiver, wait_until
from tests.webhook_sender.test_delivery import _send, _settled, _start, fresh_db


def _exit_code(process) -> int:  # type: ignore[no-untyped-def]
    return int(process.wait(120))


def test_an_idle_sender_stops_at_once(redis_server: str, tmp_path: Path) -> None:
    log = tmp_path / "sender.log"
    sender = _start(redis_server.rsplit("/", 1)[0] + "/14", log)
    os.killpg(sender.pid, signal.SIGTERM)
    assert _exit_code(sender) == 0, log.read_text()[-3000:]
    assert '"stopped"' in log.read_text()


def test_a_stopping_sender_lets_its_attempt_end_and_records_it(
    redis_server: str, receiver: Receiver, tmp_path: Path
) -> None:
    redis_url, conn = fresh_db(redis_server, 14)
    log = tmp_path / "sender.log"
    url, held = receiver.script("/finishing"), receiver.hold("/finishing")
    sender = _start(redis_url, log, WEBHOOK_DEADLINE="60", WEBHOOK_TIMEOUT="60")
    try:
        _send(conn, "3" * 32, url)
        wait_until(lambda: receiver.on_path("/finishing"), timeout=60)
        os.killpg(sender.pid, signal.SIGTERM)
        wait_until(lambda: "stopping: 1 attempts running get to end" in log.read_text(), timeout=60)
        assert sender.poll() is None  # it waits for the attempt
    finally:
        held.set()
    assert _exit_code(sender) == 0, log.read_text()[-3000:]
    record = _settled(conn, "3" * 32)
    assert record is not None, log.read_text()[-3000:]
    assert record.state == "delivered"
    assert len(receiver.on_path("/finishing")) == 1


def test_a_sender_stops_while_redis_cannot_answer_it(tmp_path: Path) -> None:
    process, redis_url = start_redis(tmp_path / "redis", appendonly=False)
    log = tmp_path / "sender.log"
    try:
        sender = _start(redis_url, log)
    finally:
        stop_redis(process)
    wait_until(lambda: "could not connect to Redis" in log.read_text(), timeout=60)  # its workers wait for it
    os.killpg(sender.pid, signal.SIGTERM)
    assert _exit_code(sender) == 0, log.read_text()[-3000:]
