"""``transcribe_common.ops`` when a service starts again inside one process (``embedded.light``):
its operations port and its gauges answer for the new one, on a real port and a real Redis."""

from __future__ import annotations

import httpx
import redis
from prometheus_client import generate_latest

from embedded.redis_server import free_port
from transcribe_common.ops import RedisGauge, register_redis_gauges, serve_ops


def test_a_service_served_again_on_its_port_answers_for_the_new_one() -> None:
    port = free_port()
    first = serve_ops("again", "127.0.0.1", port, lambda: "the first one stopped", {})
    assert first is not None
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 503
    second = serve_ops("again", "127.0.0.1", port, lambda: None, {})
    assert second is not None
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        second.shutdown()
        second.server_close()


def test_gauges_registered_again_are_read_once_through_the_new_connection(
    redis_server: str, redis_conn: redis.Redis
) -> None:
    stopped = redis.Redis.from_url(redis_server.rsplit("/", 1)[0] + "/29")  # the stopped service's (a db no test uses)
    stopped.set("ops-test", 3)
    redis_conn.set("ops-test", 7)
    gauge = [RedisGauge("transcribe_ops_test", "A test's gauge.", lambda r: float(r.get("ops-test") or 0))]
    register_redis_gauges(stopped, gauge)
    register_redis_gauges(redis_conn, gauge)
    exported = [line for line in generate_latest().decode().splitlines() if line.startswith("transcribe_ops_test")]
    assert exported == ["transcribe_ops_test 7.0"]
