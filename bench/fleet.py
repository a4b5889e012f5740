"""What scaling on the queue saves: a day of jobs through a fixed fleet sized for the peak, and
through the KEDA fleet of infra/k8s, simulated event by event.

    python3 dev.py bench fleet [--seed 1] [--peak 3.0] [--startup 90] [--service 2.47]

No cluster runs here, so this is a discrete-event simulation, deterministic for a seed:

- Arrivals: a non-homogeneous Poisson process over 24 hours. A business day by default: quiet
  until 07:00, the peak rate from 10:00 to 16:00, quiet again from 20:00, with cosine ramps
  between and 0.1 % of the peak through the night. --shape bell: a bell around 14:00
  (sigma 3.5 h) whose tails keep a trickle of jobs coming through the night.
- Service: a job's time on one slot is the 60 s clip's end-to-end time measured by
  bench/worker.py (docs/performance.md: 2.37-2.58 s alone), stretched by the throughput
  MAX_CONCURRENCY 2 gave (x1.51-1.59 for two slots: each slot is slower than one alone), times a
  log-normal spread of +-30 % (runs vary that much). These are CPU figures with tiny.en; no GPU
  figure exists here. A GPU is faster per job, which only shortens the waits.
- A pod holds its GPU from creation to deletion: start-up (scheduling, image, CUDA, model load,
  --startup) and drain included. A pod asked to stop takes no new job, lets running jobs finish
  within DRAIN_TIMEOUT and requeues the others at the back of the queue (gpu_worker.pool).
- KEDA as configured in infra/k8s/base (read from the files, printed): the formula adds the
  waiting jobs (rq:queue:*) and the running ones (rq:wip:*). Every pollingInterval KEDA reads
  it; it wakes the fleet from 0 to 1 when it is above 0, and puts it back to 0 after
  cooldownPeriod at 0. In between, the HPA (every 15 s) asks for ceil(jobs in flight / target)
  pods, within [1, maxReplicaCount], with its 10 % tolerance, its
  default scale-up limit (the larger of 4 pods and 100 % per 15 s), the scale-down
  stabilization window (the highest recommendation of the window wins) and the scale-down
  policy (so many pods per period). Removing pods, the
  ReplicaSet takes pods still starting first, then the most recently ready.

Prints GPU-hours, queue wait p50/p95 (arrival to start, requeued jobs counted from their first
arrival) and jobs lost (never finished: must be 0), for both fleets, and whether the targets are
met: the KEDA fleet at most half the fixed fleet's GPU-hours, with a p95 wait under one pod
start-up plus one job's service time.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import math
import random
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "infra" / "k8s" / "base"
DAY = 24 * 3600.0
HPA_PERIOD = 15.0  # the HPA controller's sync period (Kubernetes' default)
HPA_TOLERANCE = 0.1
# bench/worker.py's last figures (docs/performance.md): mid-points of the ranges measured.
MEASURED_ALONE = 2.47  # s, the 60 s clip end to end, one job at a time (2.37-2.58)
MEASURED_SPEEDUP = 1.55  # throughput of MAX_CONCURRENCY 2 against 1 (1.51-1.59)


@dataclass(frozen=True)
class Rule:
    """KEDA's rule and the worker's settings, as infra/k8s/base configures them."""

    polling: float
    cooldown: float
    list_length: int
    min_replicas: int
    max_replicas: int
    stabilization: float
    down_pods: int  # the scale-down policy: at most this many pods removed...
    down_period: float  # ...in this many seconds
    slots: int
    drain: float
    waiting_only: bool = False  # what KEDA counts: waiting jobs alone, or waiting and running

    @classmethod
    def from_manifests(cls) -> Rule:
        scaler = yaml.safe_load((BASE / "worker-scaler.yaml").read_text())["spec"]
        settings = yaml.safe_load((BASE / "settings.yaml").read_text())["data"]
        behavior = scaler["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        modifiers = scaler["advanced"]["scalingModifiers"]
        (policy,) = behavior["scaleDown"].get("policies", [{"type": "Pods", "value": 10**6, "periodSeconds": 15}])
        if policy["type"] != "Pods":
            raise SystemExit(f"bench/fleet.py models a scale-down policy of type Pods, not {policy['type']}")
        return cls(
            polling=float(scaler.get("pollingInterval", 30)),
            cooldown=float(scaler.get("cooldownPeriod", 300)),
            list_length=int(modifiers["target"]),
            min_replicas=int(scaler.get("minReplicaCount", 0)),
            max_replicas=int(scaler.get("maxReplicaCount", 100)),
            stabilization=float(behavior["scaleDown"].get("stabilizationWindowSeconds", 300)),
            down_pods=int(policy["value"]),
            down_period=float(policy["periodSeconds"]),
            slots=int(settings["MAX_CONCURRENCY"]),
            drain=float(settings["DRAIN_TIMEOUT"]),
        )


@dataclass
class Job:
    id: int
    arrived: float
    work: float  # seconds on one slot
    started: float | None = None


@dataclass
class Pod:
    id: int
    created: float
    ready: float
    running: dict[int, float] = field(default_factory=dict)  # job id -> when it ends
    stopping_at: float | None = None
    gone: float | None = None


def business_day(hour: float) -> float:
    """The rate as a share of the peak: quiet until 07:00, up to the peak by 10:00, the peak
    until 16:00, down again by 20:00 (cosine ramps), and 0.1 % of the peak through the night."""
    if 10 <= hour < 16:
        bump = 1.0
    elif 7 <= hour < 10:
        bump = math.sin((hour - 7) / 3 * math.pi / 2) ** 2
    elif 16 <= hour < 20:
        bump = math.cos((hour - 16) / 4 * math.pi / 2) ** 2
    else:
        bump = 0.0
    return 0.001 + 0.999 * bump


def bell(hour: float) -> float:
    """A broader day: a bell around 14:00 (sigma 3.5 h) whose tails reach into the night."""
    return 0.001 + 0.999 * math.exp(-(((hour - 14) / 3.5) ** 2) / 2)


SHAPES = {"business": business_day, "bell": bell}


def arrivals(rng: random.Random, peak: float, service: float, shape: str) -> list[Job]:
    """Thinning: candidates at the peak rate, each kept with probability rate(t) / peak."""
    jobs, t, rate = [], 0.0, SHAPES[shape]
    while True:
        t += rng.expovariate(peak)
        if t >= DAY:
            return jobs
        if rng.random() < rate(t / 3600):
            jobs.append(Job(len(jobs), t, service * rng.lognormvariate(0, 0.3) / math.exp(0.045)))


class Fleet:
    """The pods, the queue and the events between them."""

    def __init__(self, jobs: list[Job], rule: Rule, startup: float, scaled: bool, fixed: int = 0) -> None:
        self.rule, self.startup, self.scaled = rule, startup, scaled
        self.jobs = {job.id: job for job in jobs}
        self.events: list[tuple[float, int, str, int]] = []
        self.seq = 0
        self.queue: deque[int] = deque()
        self.pods: dict[int, Pod] = {}
        self.replicas = 0
        self.last_active = -math.inf
        self.recommendations: deque[tuple[float, int]] = deque()
        self.removals: deque[tuple[float, int]] = deque()  # the HPA's scale-downs: (when, pods)
        self.requeued = 0
        self.finished = 0
        for job in jobs:
            self.at(job.arrived, "arrive", job.id)
        if scaled:
            self.at(0.0, "poll", 0)
            self.at(0.0, "hpa", 0)
        else:
            self.set_replicas(fixed, now=-startup)  # ready when the day starts

    def at(self, when: float, what: str, ref: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, what, ref))

    def run(self) -> float:
        now = 0.0
        while self.events:
            now, _, what, ref = heapq.heappop(self.events)
            if now > DAY and not self.queue and self.finished == len(self.jobs) and self.all_idle():
                break
            if now > DAY + 6 * 3600:
                break  # what is left unfinished now is counted as lost
            getattr(self, f"on_{what}")(now, ref)
        for pod in self.pods.values():  # those still up hold their GPU to the day's end at least
            pod.gone = pod.gone if pod.gone is not None else max(now, DAY)
        return now

    def all_idle(self) -> bool:
        return all(not pod.running for pod in self.pods.values())

    # --- jobs -------------------------------------------------------------------------------
    def on_arrive(self, now: float, job_id: int) -> None:
        self.queue.append(job_id)
        self.dispatch(now)

    def on_done(self, now: float, job_id: int) -> None:
        for pod in self.pods.values():
            if pod.running.get(job_id) == now:
                del pod.running[job_id]
                self.finished += 1
                if pod.stopping_at is not None and not pod.running:
                    pod.gone = now
        self.dispatch(now)

    def dispatch(self, now: float) -> None:
        for pod in self.pods.values():
            while self.queue and pod.stopping_at is None and pod.ready <= now and len(pod.running) < self.rule.slots:
                job = self.jobs[self.queue.popleft()]
                if job.started is None:
                    job.started = now
                pod.running[job.id] = now + job.work
                self.at(now + job.work, "done", job.id)

    # --- pods -------------------------------------------------------------------------------
    def on_ready(self, now: float, pod_id: int) -> None:
        self.dispatch(now)

    def on_drained(self, now: float, pod_id: int) -> None:
        pod = self.pods[pod_id]
        if pod.gone is not None:
            return
        for job_id in list(pod.running):  # interrupted: back in the queue, to run again elsewhere
            del pod.running[job_id]
            self.queue.append(job_id)
            self.requeued += 1
        pod.gone = now
        self.dispatch(now)

    def set_replicas(self, wanted: int, now: float) -> None:
        self.replicas = wanted
        live = [pod for pod in self.pods.values() if pod.stopping_at is None]
        for _ in range(wanted - len(live)):
            pod = Pod(len(self.pods), now, now + self.startup)
            self.pods[pod.id] = pod
            self.at(pod.ready, "ready", pod.id)
        # Pods still starting go first, then the most recently ready (the ReplicaSet's order).
        for pod in sorted(live, key=lambda p: (p.ready <= now, -p.ready))[: max(0, len(live) - wanted)]:
            pod.stopping_at = now
            if not pod.running:
                pod.gone = now
            else:
                self.at(now + self.rule.drain, "drained", pod.id)

    # --- KEDA and the HPA --------------------------------------------------------------------
    def in_flight(self) -> int:
        """The formula's value: waiting jobs (rq:queue:*) plus running ones (rq:wip:*)."""
        running = 0 if self.rule.waiting_only else sum(len(pod.running) for pod in self.pods.values())
        return len(self.queue) + running

    def on_poll(self, now: float, _: int) -> None:
        if self.in_flight():
            self.last_active = now
            if self.replicas == 0:
                self.set_replicas(max(1, self.rule.min_replicas), now)
        elif self.replicas > 0 and now - self.last_active >= self.rule.cooldown:
            self.set_replicas(self.rule.min_replicas, now)
        if now < DAY or self.events:
            self.at(now + self.rule.polling, "poll", 0)

    def on_hpa(self, now: float, _: int) -> None:
        if now < DAY or self.events:
            self.at(now + HPA_PERIOD, "hpa", 0)
        if self.replicas == 0:
            return  # KEDA alone wakes the fleet
        current, metric = self.replicas, self.in_flight()
        raw = math.ceil(metric / self.rule.list_length)
        if abs(metric / (self.rule.list_length * current) - 1) <= HPA_TOLERANCE:
            raw = current
        raw = min(max(raw, 1), self.rule.max_replicas)
        self.recommendations.append((now, raw))
        while self.recommendations[0][0] < now - self.rule.stabilization:
            self.recommendations.popleft()
        while self.removals and self.removals[0][0] <= now - self.rule.down_period:
            self.removals.popleft()
        if raw > current:
            wanted = min(raw, max(current + 4, 2 * current))
        else:
            allowed = self.rule.down_pods - sum(n for _, n in self.removals)
            wanted = max(min(current, max(r for _, r in self.recommendations)), current - max(0, allowed))
            if wanted < current:
                self.removals.append((now, current - wanted))
        if wanted != current:
            self.set_replicas(wanted, now)

    # --- figures ----------------------------------------------------------------------------
    def gpu_hours(self) -> float:
        return sum((pod.gone or 0.0) - max(pod.created, 0.0) for pod in self.pods.values()) / 3600

    def waits(self) -> list[float]:
        return sorted(job.started - job.arrived for job in self.jobs.values() if job.started is not None)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else math.nan


def report(name: str, fleet: Fleet) -> tuple[float, float]:
    waits = fleet.waits()
    lost = len(fleet.jobs) - fleet.finished
    hours, p50, p95 = fleet.gpu_hours(), percentile(waits, 50), percentile(waits, 95)
    most = max(sum(1 for p in fleet.pods.values() if p.created <= t < (p.gone or DAY)) for t in range(0, 86400, 60))
    print(
        f"{name:<26} {hours:8.1f} GPU-h   wait p50 {p50:6.1f} s  p95 {p95:6.1f} s  max {waits[-1]:6.1f} s   "
        f"pods made {len(fleet.pods):4d}, most at once {most:2d}   requeued {fleet.requeued:3d}   lost {lost}"
    )
    return hours, p95


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peak", type=float, default=3.0, help="jobs per second at the peak (14:00)")
    parser.add_argument("--startup", type=float, default=90.0, help="seconds from a pod's creation to its first job")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="business", help="the day's arrivals")
    parser.add_argument(
        "--waiting-only", action="store_true", help="count only the waiting jobs (rq:queue:*), not the running ones"
    )
    parser.add_argument("--service", type=float, default=0.0, help="seconds per job on one slot (default: measured)")
    args = parser.parse_args()
    rule = Rule.from_manifests()
    if args.waiting_only:
        rule = dataclasses.replace(rule, waiting_only=True)
    limit = f", then {rule.down_pods} pod(s) per {rule.down_period:g} s" if rule.down_pods < 10**6 else ""
    service = args.service or MEASURED_ALONE * rule.slots / MEASURED_SPEEDUP
    jobs = arrivals(random.Random(args.seed), args.peak, service, args.shape)
    fixed = math.ceil(args.peak * service / (rule.slots * 0.8))  # the peak at 80 % of the slots
    if fixed > rule.max_replicas:
        print(f"note: the peak needs {fixed} pods, more than maxReplicaCount {rule.max_replicas}: raise it")
    print(
        f"rule (infra/k8s/base): pollingInterval {rule.polling:g} s, cooldownPeriod {rule.cooldown:g} s, "
        f"target {rule.list_length} jobs in flight a pod, replicas {rule.min_replicas}-{rule.max_replicas}, "
        f"scale-down window {rule.stabilization:g} s{limit}, "
        f"MAX_CONCURRENCY {rule.slots}, DRAIN_TIMEOUT {rule.drain:g} s"
    )
    print(
        f"service: {service:.2f} s a job on one slot ({MEASURED_ALONE} s alone x {rule.slots} slots / "
        f"{MEASURED_SPEEDUP} throughput, bench/worker.py), +-30 % log-normal; pod start-up {args.startup:g} s"
    )
    print(
        f"day ({args.shape}): {len(jobs)} jobs, peak {args.peak:g}/s, night {args.peak * 0.001:.3f}/s; "
        f"seed {args.seed}; fixed fleet {fixed} pods (the peak at 80 % of its slots)"
    )
    steady = Fleet(_copy(jobs), rule, args.startup, False, fixed)
    steady.run()
    fixed_hours, _ = report(f"fixed, {fixed} pods", steady)
    scaled = Fleet(_copy(jobs), rule, args.startup, True)
    scaled.run()
    keda_hours, keda_p95 = report("KEDA, from zero", scaled)
    bound = args.startup + service
    cost_ok, wait_ok = keda_hours <= fixed_hours / 2, keda_p95 < bound
    lost_ok = scaled.finished == len(jobs)
    print(
        f"target: GPU-hours <= half the fixed fleet's: {keda_hours / fixed_hours:.2f} "
        f"({'met' if cost_ok else 'MISSED'}); "
        f"p95 wait < start-up + one job ({bound:.1f} s): {keda_p95:.1f} s ({'met' if wait_ok else 'MISSED'}); "
        f"lost 0: {'met' if lost_ok else 'MISSED'}"
    )
    return 0 if cost_ok and wait_ok and lost_ok else 1


def _copy(jobs: list[Job]) -> list[Job]:
    return [Job(job.id, job.arrived, job.work) for job in jobs]


if __name__ == "__main__":
    sys.exit(main())
