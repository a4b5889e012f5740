"""The embedded Redis's port: the one asked for (6379 by default) when it is free, another free one,
said in a warning, when something listens there (issue 18, item 5)."""

from __future__ import annotations

import logging
import socket

import pytest
import redis

from embedded.redis_server import choose_port, free_port, start_redis, stop_redis


def test_a_free_port_is_the_one_taken(tmp_path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    wanted = free_port()
    assert choose_port(wanted) == wanted
    process, url = start_redis(tmp_path, appendonly=False, port=choose_port(wanted))
    try:
        assert url == f"redis://127.0.0.1:{wanted}/0"
        assert redis.Redis.from_url(url).ping()
    finally:
        stop_redis(process)
    assert "taken" not in caplog.text


def test_a_port_in_use_gives_another_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="stack"):
            port = choose_port(taken)
    assert port != taken
    assert f"port {taken} is taken (another Redis?); the embedded Redis listens on {port} instead" in caplog.text


def test_zero_asks_for_any_free_port() -> None:
    assert choose_port(0) > 0


def test_another_taker_is_named_in_the_message(caplog: pytest.LogCaptureFixture) -> None:
    """rq-dashboard's port is chosen the same way; its message must not speak of Redis."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="stack"):
            port = choose_port(taken, "the rq-dashboard command below", "another stack's rq-dashboard")
    assert (
        f"port {taken} is taken (another stack's rq-dashboard?); the rq-dashboard command below listens on {port}"
        in (caplog.text)
    )
