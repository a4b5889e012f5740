"""A chaos run: the embedded stack on S3, a burst of jobs, a seeded schedule of faults, then the
invariants, each printed, and one line that sums them up.

    python3 dev.py bench chaos --seed 1 --jobs 200 [--faults K] [--span S] [--keep]

Everything runs on loopback ports in a fresh temporary folder: a redis-server with the embedded
stack's persistence (restarted as one of the faults), moto's S3 server behind a fault-injecting
TCP proxy (``bench/faultproxy.py``), a stand-in for MinIO's bucket notifications to Redis, a webhook
receiver that verifies every signature, a file server for URL jobs, and the embedded stack on the
S3 store (``bench/chaos_stack.py``): router, worker, webhook sender, janitor, API, each a process.

The burst mixes uploads and URL jobs through the API (retried with their ``Idempotency-Key``
while the API answers 503) and drops straight into the inbox bucket, spread over the first half of
``--span`` seconds; meanwhile ``--faults`` faults drawn from ``--seed`` (``bench/chaos_faults.py``)
hit the services, Redis, the store and the receiver over the whole span. Then the run waits, on
events, for every job to end, every webhook to arrive, every queue to drain and the janitor to run
twice more, and checks (``bench/chaos_checks.py``) that every accepted job ended exactly once with
its results, its ``status.json`` and one webhook id, that ``/v1/stats`` adds up and that nothing is
left behind. The last line is ``N jobs, K faults, 0 lost, 0 duplicated, 0 inconsistent`` (or the
counts that are not 0); the exit status is 1 when any is not 0. The same seed draws the same jobs
and the same faults at the same times; what they meet depends on the machine's speed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chaos_checks import Evidence, Verdict, check_all, leftovers, tally
from bench.chaos_drive import Driver, Job, Watcher, plan
from bench.chaos_faults import KINDS, Clock, Fault, Injector, draw
from bench.chaos_infra import (
    INBOX_BUCKET,
    JOBS_BUCKET,
    Announcer,
    FileServer,
    Moto,
    Receiver,
    RedisServer,
    StackProcess,
    make_clips,
)
from bench.faultproxy import FaultProxy
from embedded.redis_server import free_port
from transcribe_common import keys

POLL = 0.5
PROGRESS_EVERY = 15.0  # seconds between two lines saying what a wait still waits for
READY_TIMEOUT = 600.0  # for the stack to come up (its model loaded): ten times what it takes when busy


@dataclass
class Infra:
    work: Path
    redis: RedisServer
    moto: Moto
    proxy: FaultProxy
    worker_link: FaultProxy
    receiver: Receiver
    files: FileServer
    stack: StackProcess
    clips: dict[str, bytes]
    api: str
    janitor_metrics: str

    @property
    def scratch(self) -> Path:
        return self.work / "data" / "scratch"


def stack_env(work: Path, redis_url: str, store: str, receiver: Receiver, api_port: int) -> dict[str, str]:
    """The stack on S3 through the proxy, with short clocks so that recovery happens within the run
    (those of ``tests/faults``), and budgets that outlast the faults: a store failure lasts at most
    6 s and the worker's store retries wait 1 + 2 + 4 + 8 s; a receiver failure lasts at most 10 s
    and 40 webhook attempts wait up to 2 s each."""
    ports = {f"{service}_METRICS_PORT": str(free_port()) for service in ("ROUTER", "WORKER", "JANITOR", "WEBHOOK")}
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "STORE_"))},
        "DATA_DIR": str(work / "data"),
        "REDIS_URL": redis_url,
        "STORE_BACKEND": "s3",
        "MINIO_ENDPOINT": store,
        "MINIO_ACCESS_KEY": "testing",
        "MINIO_SECRET_KEY": "testing",
        "MINIO_BUCKET": JOBS_BUCKET,
        "MINIO_INBOX_BUCKET": INBOX_BUCKET,
        "MODEL_SIZE": "tiny.en",
        "WHISPER_CPU_THREADS": "1",
        "MAX_CONCURRENCY": "2",
        "API_PORT": str(api_port),
        "PUBLIC_API_URL": f"http://127.0.0.1:{api_port}",
        "METRICS_HOST": "127.0.0.1",
        **ports,
        "WEBHOOK_SECRET": receiver.secret,
        "DEFAULT_CALLBACK_URL": f"{receiver.url}/hooks/default",
        "URL_ALLOWLIST": "127.0.0.1",
        "WEBHOOK_TIMEOUT": "2",
        "WEBHOOK_DEADLINE": "5",
        "WEBHOOK_BACKOFF": "0.5",
        "WEBHOOK_BACKOFF_MAX": "2",
        "WEBHOOK_ATTEMPTS": "40",
        "WORKER_HEARTBEAT_TTL": "4",
        "REAP_INTERVAL": "1",
        "MAX_ATTEMPTS": "4",
        "JANITOR_INTERVAL": "1",
        "LOST_AFTER": "3",
        "SCRATCH_MAX_AGE": "5",
        "IO_BACKOFF": "1",
        "IO_ATTEMPTS": "5",
        "JOB_TIMEOUT": "300",
        "DRAIN_TIMEOUT": "5",
        "LOG_FORMAT": "json",
    }


def start_infra(work: Path, cleanup: contextlib.ExitStack) -> Infra:
    """Every server, each stopped by ``cleanup`` in the reverse order (the stack first, Redis last)."""
    redis_server = RedisServer(work / "redis")
    redis_server.start()
    cleanup.callback(redis_server.close)
    moto = Moto(work / "moto.log")
    cleanup.callback(moto.stop)
    for bucket in (JOBS_BUCKET, INBOX_BUCKET):
        moto.store().ensure_bucket(bucket)
    proxy = FaultProxy(("127.0.0.1", moto.port))
    cleanup.callback(proxy.close)
    worker_link = FaultProxy(("127.0.0.1", redis_server.port))  # the worker's road to Redis, for ``cut``
    cleanup.callback(worker_link.close)
    announcer = Announcer(moto.store(), redis_server.url)
    announcer.start()
    cleanup.callback(announcer.stop)
    receiver = Receiver()
    cleanup.callback(receiver.close)
    clips = make_clips(work / "clips")
    files = FileServer(work / "clips")
    cleanup.callback(files.close)
    api_port = free_port()
    env = stack_env(work, redis_server.url, proxy.address, receiver, api_port)
    env["CHAOS_WORKER_REDIS_URL"] = f"redis://{worker_link.address}/0"
    stack = StackProcess(env, work / "stack.log", cwd=work)
    cleanup.callback(stack.stop)
    stack.wait_ready(READY_TIMEOUT)
    api, janitor = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{env['JANITOR_METRICS_PORT']}/metrics"
    data = {kind: path.read_bytes() for kind, path in clips.items()}
    return Infra(work, redis_server, moto, proxy, worker_link, receiver, files, stack, data, api, janitor)


def unended(http: httpx.Client, api: str, jobs: list[Job], ended: set[str]) -> str:
    """What is left to end; ``ended`` remembers the jobs seen ended (the watcher sees any change after)."""
    waiting: Counter[str] = Counter()
    for job in jobs:
        if job.job_id and job.job_id not in ended:
            status = http.get(f"{api}/v1/jobs/{job.job_id}").json().get("status", "unknown")
            if status in ("finished", "failed", "cancelled", "deleted"):
                ended.add(job.job_id)
            else:
                waiting[status] += 1
    return ", ".join(f"{n} {status}" for status, n in waiting.items())


def undelivered(http: httpx.Client, api: str, jobs: list[Job], receiver: Receiver) -> str:
    """Ended jobs whose webhook has not been answered 2xx and has not been given up."""
    waiting = 0
    for job in jobs:
        if job.job_id and not any(c.answered and 200 <= c.answered < 300 for c in receiver.for_job(job.job_id)):
            webhook = http.get(f"{api}/v1/jobs/{job.job_id}").json().get("webhook") or {}
            waiting += webhook.get("state") != "failed"
    return f"{waiting} webhooks not delivered" if waiting else ""


def drains(conn: redis.Redis, scratch: Path) -> str:
    """What still holds something, with how much, so that a wait sees it change as it drains."""
    return "; ".join(f"{what}: {', '.join(held)}" for what, held in leftovers(conn, scratch).items())


class JanitorRuns:
    """Waits for two janitor runs that began after the wait did: the first may have begun before."""

    def __init__(self, metrics: str, http: httpx.Client) -> None:
        self.metrics, self.http = metrics, http
        self.marks = [time.time()]

    def __call__(self) -> str:
        metrics = self.http.get(self.metrics).text
        found = re.search(r"^transcribe_janitor_last_run_timestamp_seconds (\S+)$", metrics, re.MULTILINE)
        if found and float(found.group(1)) > self.marks[-1]:
            self.marks.append(time.time())
        return "" if len(self.marks) > 2 else f"{len(self.marks) - 1} of 2 janitor runs"


@dataclass(frozen=True)
class Limits:
    """When a wait gives up: at ``deadline`` (on the clock), or once what it waits for has not
    changed for ``patience`` seconds, so that a slow machine that still makes progress is waited
    for, and a stuck stack is not waited for twenty minutes."""

    deadline: float
    patience: float


def wait(what: str, pending: Callable[[], str], clock: Clock, limits: Limits) -> bool:
    """Until ``pending`` says nothing is left (''), saying every so often what is; False if it gives up."""
    said = changed = clock()
    last = None
    while True:
        try:
            left = pending()
        except (httpx.HTTPError, redis.RedisError, ValueError) as exc:
            left = f"cannot tell yet ({type(exc).__name__}: {exc})"
        if not left:
            clock.say(what)
            return True
        if left != last:
            last, changed = left, clock()
        if clock() > limits.deadline or clock() - changed > limits.patience:
            why = "the deadline" if clock() > limits.deadline else f"{limits.patience:g} s without a change"
            clock.say(f"{what}: NOT after {why} ({left}); checking things as they are")
            return False
        if clock() - said > PROGRESS_EVERY:
            clock.say(f"waiting until {what}: {left}")
            said = clock()
        time.sleep(POLL)


def settle(infra: Infra, jobs: list[Job], clock: Clock, limits: Limits) -> None:
    conn = redis.Redis.from_url(infra.redis.url)
    ended: set[str] = set()
    with httpx.Client(timeout=30) as http:
        steps: list[tuple[str, Callable[[], str]]] = [
            ("every accepted job ended", lambda: unended(http, infra.api, jobs, ended)),
            ("every webhook delivered", lambda: undelivered(http, infra.api, jobs, infra.receiver)),
            ("every queue, registry and list drained", lambda: drains(conn, infra.scratch)),
            ("two more janitor runs", JanitorRuns(infra.janitor_metrics, http)),
        ]
        for what, pending in steps:
            if not wait(what, pending, clock, limits):
                limits = Limits(clock(), 0.0)  # the run has failed: the other steps are looked at once


@dataclass
class Burst:
    clock: Clock
    injector: Injector
    watcher: Watcher


def burst(args: argparse.Namespace, infra: Infra, jobs: list[Job], faults: list[Fault]) -> Burst:
    """The jobs sent and the faults injected at once; returns when both are done and the stack has settled."""
    clock = Clock()
    watcher = Watcher(infra.redis.url, jobs)
    watcher.start()
    proxies = {"store": infra.proxy, "worker-redis": infra.worker_link}
    injector = Injector(infra.stack, infra.redis, proxies, infra.receiver, clock)
    chaos = threading.Thread(target=injector.run, args=(faults,), name="chaos", daemon=True)
    chaos.start()
    clock.say(f"burst: {describe(jobs)} over {args.span / 2:g} s; {len(faults)} faults over {args.span:g} s")
    deadline = args.span + args.deadline
    inbox = infra.moto.store()
    Driver(infra.api, infra.files.url, infra.receiver.url, infra.clips, inbox, clock, deadline).submit_all(
        jobs, over=args.span / 2
    )
    clock.say(f"burst sent: {sum(1 for job in jobs if job.job_id)} of {len(jobs)} accepted")
    chaos.join()
    clock.say(f"faults over: {len(injector.injected)} injected, {len(injector.skipped)} skipped")
    landed = Counter(fault.kind for fault in injector.injected)
    for kind in KINDS:
        clock.say(f"  {kind}: {landed[kind]} landed")
    settle(infra, jobs, clock, Limits(clock() + args.deadline, args.patience))
    watcher.stop()
    return Burst(clock, injector, watcher)


def describe(jobs: list[Job]) -> str:
    kinds = Counter(job.kind for job in jobs)
    return f"{len(jobs)} jobs ({kinds['upload']} uploads, {kinds['url']} URL jobs, {kinds['drop']} inbox drops)"


def evidence(infra: Infra, jobs: list[Job], watcher: Watcher, http: httpx.Client) -> Evidence:
    views = {}
    for job in jobs:
        if job.job_id:
            answer = http.get(f"{infra.api}/v1/jobs/{job.job_id}")
            views[job.job_id] = answer.json() if answer.status_code == 200 else {}
    conn = redis.Redis.from_url(infra.redis.url)
    return Evidence(infra.api, jobs, views, infra.moto.store(), infra.receiver, watcher, conn, infra.scratch, http)


def report(e: Evidence, infra: Infra) -> None:
    """What happened beside the invariants: why jobs failed, how often they ran, what restarted."""
    failed = Counter(str(e.views[str(j.job_id)].get("error")) for j in e.ended() if e.status(j) == "failed")
    for error, n in failed.most_common():
        print(f"  failed x{n}: {error}")
    attempts = Counter(int(e.conn.hget(keys.job(str(j.job_id)), "attempts") or 0) for j in e.accepted)
    print("  starts per job: " + ", ".join(f"{n} jobs {a}x" for a, n in sorted(attempts.items())))
    calls = e.receiver.calls
    answers = Counter("no answer" if c.answered is None else str(c.answered) for c in calls)
    print(f"  webhook calls: {len(calls)} ({', '.join(f'{a} x{n}' for a, n in answers.most_common())})")
    print(f"  webhook delivered after its job ended: {lateness(e)}")
    restarts = Counter(re.findall(r'"message": "(\w+) exited with', infra.stack.log.read_text(errors="replace")))
    print("  restarted by the supervisor: " + (", ".join(f"{s} x{n}" for s, n in restarts.items()) or "none"))


def lateness(e: Evidence) -> str:
    """How long after a job was seen ended its first webhook was answered 2xx: the median, the worst."""
    late = {}
    for job_id, ended_at in e.watcher.ended_at.items():
        answered = [c.at for c in e.receiver.for_job(job_id) if c.answered is not None and 200 <= c.answered < 300]
        if answered:
            late[job_id] = max(0.0, min(answered) - ended_at)
    if not late:
        return "none"
    worst = max(late, key=late.__getitem__)
    return f"median {statistics.median(late.values()):.1f} s, worst {late[worst]:.1f} s (job {worst})"


def version() -> str:
    """The commit the services run from, and whether files differ from it: figures name what they measured."""
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="draws the jobs and the faults (default 1)")
    parser.add_argument("--jobs", type=int, default=200, help="jobs in the burst (default 200)")
    parser.add_argument("--faults", type=int, help="faults in the schedule (default: a tenth of --jobs, at least 10)")
    parser.add_argument("--span", type=float, help="seconds the faults are spread over (default 0.4 s a job, ≥ 30)")
    parser.add_argument("--deadline", type=float, default=1200.0, help="seconds to settle after the faults, at most")
    parser.add_argument(
        "--patience", type=float, default=300.0, help="seconds a wait goes on with nothing changing (default 300)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (kept anyway on a failure)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="KIND[:TARGET]",
        help="leave out the drawn faults of a kind (kill, stop, redis, store, hooks, pop, drain, crash, cut) or "
        "one target of it (kill:webhooks, store:stall); the others keep their times. Repeatable: to tell which "
        "fault a failure needs",
    )
    args = parser.parse_args()
    args.faults = max(10, args.jobs // 10) if args.faults is None else args.faults
    args.span = max(30.0, 0.4 * args.jobs) if args.span is None else args.span
    return args


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the run the same way, through the cleanup of every server it started,
    also when it was started in the background (where a shell has SIGINT ignored)."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def main() -> int:
    stop_on_signals()
    args = parse_args()
    rng = random.Random(args.seed)
    jobs, faults = plan(rng, args.jobs), draw(rng, args.faults, args.span)
    faults = [f for f in faults if f.kind not in args.skip and f"{f.kind}:{f.target}" not in args.skip]
    work = Path(tempfile.mkdtemp(prefix=f"chaos-{args.seed}-"))
    started = time.monotonic()
    print(f"chaos run, seed {args.seed}: {describe(jobs)}, {len(faults)} faults; code {version()}", flush=True)
    print(f"in {work}")
    for fault in faults:
        print(f"  at {fault.at:6.1f} s  {fault}")
    with contextlib.ExitStack() as cleanup:
        infra = start_infra(work, cleanup)
        print(f"stack ready after {time.monotonic() - started:.1f} s", flush=True)
        run = burst(args, infra, jobs, faults)
        with httpx.Client(timeout=30) as http:
            found = evidence(infra, jobs, run.watcher, http)
            verdicts: list[Verdict] = check_all(found)
            print("invariants:")
            for verdict in verdicts:
                print("\n".join(verdict.lines()))
            report(found, infra)
    totals = tally(verdicts)
    failing = any(totals.values())
    print(f"wall time {time.monotonic() - started:.0f} s (the burst and its settling {run.clock():.0f} s)")
    if args.keep or failing:
        print(f"kept {work} (the stack's log: {work / 'stack.log'})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    accepted = sum(1 for job in jobs if job.job_id)
    print(f"{accepted} jobs, {len(run.injector.injected)} faults, {totals['lost']} lost, "
          f"{totals['duplicated']} duplicated, {totals['inconsistent']} inconsistent", flush=True)  # fmt: skip
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
