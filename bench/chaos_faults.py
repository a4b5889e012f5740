"""The chaos run's faults: a schedule drawn from the seed, and the hands that carry it out.

Each fault is one of:

- ``kill``: SIGKILL of a service (worker, router, webhook sender, janitor); the embedded
  supervisor starts it again;
- ``stop``: SIGSTOP of a service, then SIGCONT after a while (a GC pause, a frozen VM, a
  partition): longer than ``WORKER_HEARTBEAT_TTL``, a stopped worker is taken for dead and its
  jobs are recovered while it still holds them;
- ``redis``: Redis shut down and started again on the same port and data folder;
- ``store``: the fault proxy in front of moto drops new connections, resets live ones, or stalls;
- ``hooks``: the webhook receiver answers 500, or holds each request and never answers;

and, at instants the ones above do not choose (issue 32):

- ``pop``: the worker stopped (SIGSTOP) while a job thread waits on its queues, then killed
  (SIGKILL) without being let go on: a job Redis handed to its BLPOP meanwhile is in no RQ list;
- ``drain``: the worker asked to stop (SIGTERM), then killed a moment into its drain;
- ``crash``: Redis killed (SIGKILL), its append-only file synced each second: the last second of
  writes may be lost; started again after a while;
- ``cut``: the worker's own link to Redis (a second fault proxy) stalls, resets or drops for longer
  than its heartbeat, while every other service still reaches Redis; then it heals.

A signal goes to the service and everything it started, as a container runtime's goes to every
process of the container: the webhook sender's workers and their work horses (which RQ puts in
process groups of their own), the worker's ffmpeg. Faults may
overlap, except two on the same thing (one Redis, one proxy, one receiver, one service's stop),
which wait for each other; the printed time is when each really happens.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import redis

from bench.chaos_infra import Receiver, RedisServer, StackProcess
from bench.faultproxy import MODES, FaultProxy

SERVICES = {"worker": "gpu_worker", "router": "event_router", "webhooks": "webhook_sender", "janitor": "janitor"}
KINDS = {"kill": 3, "stop": 3, "redis": 1, "store": 2, "hooks": 1, "pop": 2, "drain": 2, "crash": 1, "cut": 2}
LASTS = {  # seconds: how long the fault lasts (for pop and drain: until the kill)
    "kill": (0, 0),
    "stop": (1, 10),
    "redis": (0.5, 3),
    "store": (1, 6),
    "hooks": (2, 10),
    "pop": (1, 4),
    "drain": (0.2, 3),
    "crash": (0.5, 3),
    "cut": (5, 12),  # the chaos stack's WORKER_HEARTBEAT_TTL is 4
}
# Faults on the same thing wait for each other: the worker process, the one Redis.
LOCKS = {"pop": "kill", "drain": "kill", "crash": "redis"}
RESTART_WAIT = 120.0  # for a service being started again (the supervisor backs off up to 30 s)


@dataclass(frozen=True)
class Fault:
    at: float  # seconds from the start of the burst
    kind: str
    target: str
    seconds: float

    def __str__(self) -> str:
        if self.kind == "kill":
            return f"SIGKILL {self.target}"
        if self.kind == "stop":
            return f"SIGSTOP {self.target} for {self.seconds:g} s"
        if self.kind == "redis":
            return f"Redis restarted, down for {self.seconds:g} s"
        if self.kind == "store":
            return f"store {self.target} for {self.seconds:g} s"
        if self.kind == "pop":
            return f"SIGSTOP worker in its wait on the queues, SIGKILL {self.seconds:g} s later"
        if self.kind == "drain":
            return f"SIGTERM worker, SIGKILL {self.seconds:g} s into its drain"
        if self.kind == "crash":
            return f"Redis killed (SIGKILL), down for {self.seconds:g} s"
        if self.kind == "cut":
            return f"the worker's link to Redis: {self.target} for {self.seconds:g} s"
        answer = "answers 500" if self.target == "error" else "does not answer"
        return f"webhook receiver {answer} for {self.seconds:g} s"


def draw(rng: random.Random, count: int, span: float) -> list[Fault]:
    """``count`` faults at random times in the first ``span`` seconds; the same ones for the same seed."""
    targets = {"kill": sorted(SERVICES), "stop": sorted(SERVICES), "redis": ["redis"], "store": list(MODES)}
    targets |= {"hooks": ["error", "silent"], "pop": ["worker"], "drain": ["worker"], "crash": ["redis"]}
    targets["cut"] = list(MODES)
    faults = []
    for _ in range(count):
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        target = rng.choice(targets[kind])
        low, high = LASTS[kind]
        faults.append(Fault(round(rng.uniform(1.0, span), 1), kind, target, round(rng.uniform(low, high), 1)))
    return sorted(faults, key=lambda fault: fault.at)


class Clock:
    """Seconds since the burst began, for the schedule and for every line printed."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return time.monotonic() - self.started

    def sleep_until(self, at: float) -> None:
        time.sleep(max(0.0, at - self()))

    def say(self, line: str) -> None:
        with self.lock:
            print(f"[{self():7.1f} s] {line}", flush=True)


class Injector:
    """Carries out a schedule, each fault on its own thread at its time."""

    def __init__(
        self,
        stack: StackProcess,
        redis: RedisServer,
        proxies: dict[str, FaultProxy],
        receiver: Receiver,
        clock: Clock,
    ) -> None:
        self.stack, self.redis, self.receiver, self.clock = stack, redis, receiver, clock
        self.proxy, self.worker_link = proxies["store"], proxies["worker-redis"]
        self.locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self.injected: list[Fault] = []
        self.skipped: list[Fault] = []

    def run(self, faults: list[Fault]) -> None:
        threads = [threading.Thread(target=self._at, args=(fault,), daemon=True) for fault in faults]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _at(self, fault: Fault) -> None:
        self.clock.sleep_until(fault.at)
        handler: Callable[[Fault], bool] = getattr(self, f"_{fault.kind}")
        # One Redis, one proxy, one receiver: one failure of each at a time; a service's per service.
        name = LOCKS.get(fault.kind, fault.kind)
        name = f"{name}:{fault.target}" if name in ("kill", "stop") else name
        with self.locks[name]:
            (self.injected if handler(fault) else self.skipped).append(fault)

    def _service(self, fault: Fault) -> psutil.Process | None:
        """The service's process, waiting for it if it is being started again after a kill."""
        deadline = time.monotonic() + RESTART_WAIT
        while (process := self.stack.service(SERVICES[fault.target])) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if process is None:
            self.clock.say(f"{fault}: skipped, {fault.target} is not running")
        return process

    def _kill(self, fault: Fault) -> bool:
        if (process := self._service(fault)) is None:
            return False
        tree = _tree(process)
        _signal(tree, signal.SIGKILL)
        self.clock.say(f"{fault} (pid {process.pid}, {len(tree)} processes)")
        return True

    def _stop(self, fault: Fault) -> bool:
        if (process := self._service(fault)) is None:
            return False
        tree = _tree(process)
        _signal(tree, signal.SIGSTOP)
        self.clock.say(f"{fault} (pid {process.pid}, {len(tree)} processes)")
        time.sleep(fault.seconds)
        alive = _signal(tree, signal.SIGCONT)
        self.clock.say(f"SIGCONT {fault.target} (pid {process.pid})" + ("" if alive else ": gone meanwhile"))
        return True

    def _pop(self, fault: Fault) -> bool:
        """Stop the worker once a job thread of its waits in BLPOP (what Redis hands it then, it
        holds in no list), and kill it without letting it go on."""
        deadline = time.monotonic() + RESTART_WAIT
        with redis.Redis.from_url(self.redis.url, socket_timeout=5) as conn:
            while not _waiting_worker(conn):
                if time.monotonic() > deadline:
                    self.clock.say(f"{fault}: skipped, no worker thread waited on its queues")
                    return False
                time.sleep(0.05)
        if (process := self._service(fault)) is None:
            return False
        tree = _tree(process)
        _signal(tree, signal.SIGSTOP)
        time.sleep(fault.seconds)
        _signal(tree, signal.SIGKILL)
        self.clock.say(f"{fault} (pid {process.pid})")
        return True

    def _drain(self, fault: Fault) -> bool:
        if (process := self._service(fault)) is None:
            return False
        tree = _tree(process)
        process.send_signal(signal.SIGTERM)  # to the worker alone, as a supervisor's stop is
        time.sleep(fault.seconds)
        _signal(tree, signal.SIGKILL)
        self.clock.say(f"{fault} (pid {process.pid})")
        return True

    def _redis(self, fault: Fault) -> bool:
        return self._redis_down(fault, "shutting down", self.redis.stop)

    def _crash(self, fault: Fault) -> bool:
        return self._redis_down(fault, "killed", self.redis.kill)

    def _redis_down(self, fault: Fault, how: str, stop: Callable[[], None]) -> bool:
        self.clock.say(f"{fault}: {how}")
        stop()
        time.sleep(fault.seconds)
        self.redis.start()
        self.clock.say("Redis up again")
        return True

    def _store(self, fault: Fault) -> bool:
        return self._failing(self.proxy, fault, "store healed")

    def _cut(self, fault: Fault) -> bool:
        return self._failing(self.worker_link, fault, "the worker's link to Redis healed")

    def _failing(self, proxy: FaultProxy, fault: Fault, healed: str) -> bool:
        with proxy.failing(fault.target):
            self.clock.say(str(fault))
            time.sleep(fault.seconds)
        self.clock.say(healed)
        return True

    def _hooks(self, fault: Fault) -> bool:
        self.receiver.fail(fault.target)
        self.clock.say(str(fault))
        time.sleep(fault.seconds)
        self.receiver.heal()
        self.clock.say("webhook receiver healed")
        return True


def _waiting_worker(conn: redis.Redis) -> bool:
    """Whether a thread of the worker waits on its queues now (its connection blocked in BLPOP)."""
    try:
        clients = conn.client_list()
    except redis.RedisError:
        return False
    return any(
        c.get("name", "").startswith("transcribe-worker") and c.get("cmd") == "blpop" and "b" in c.get("flags", "")
        for c in clients
    )


def _tree(process: psutil.Process) -> list[psutil.Process]:
    """The service's process and all its descendants, the leader first."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def _signal(tree: list[psutil.Process], sig: signal.Signals) -> bool:
    """Signal every process of ``tree`` that still runs (psutil checks each is the one it was, not a
    reused pid); False if the leader is gone."""
    alive = True
    for process in tree:
        try:
            process.send_signal(sig)
        except psutil.Error:
            alive = alive and process is not tree[0]
    return alive
