"""The event router against its limit, a bare loop that does only BLMOVE and enqueue, in one run.

    .venv/bin/python bench/router.py [--events 20000] [--rate 200] [--seconds 15]

Starts a real redis-server (no persistence) and, in turn, each contender as its own process:

- ours: ``python -m event_router``, the production router (parse the MinIO record, move the job to
  ``queued`` in Redis, enqueue it in RQ, remove the event from the processing list);
- the limit: a loop that BLMOVEs an event, reads the key out of the JSON and enqueues the same RQ
  job, nothing else.

Each gets the same MinIO-format manifest events (``transcribe_common.events.access_record``):

1. throughput: ``--events`` pushed at once; events per second until the last job is in RQ's queue;
2. latency at a steady ``--rate`` events per second for ``--seconds``: from the producer's RPUSH to
   the job's ``enqueued_at`` as RQ records it (one machine, one clock), p50 and p99.

Targets (issue 8): at least 2,000 events/s on 2 cores; p99 at most 20 ms at 200 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import redis
from rq import Queue
from rq.job import Job

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embedded.redis_server import start_redis, stop_redis
from transcribe_common import events, keys, layout

BUCKET = "transcribe"
RQ_QUEUE = f"rq:queue:{keys.QUEUE}"


def event_for(job_id: str) -> str:
    key = layout.manifest_key(job_id)
    return events.access_record(
        BUCKET, key, size=512, etag=uuid.uuid4().hex, content_type="application/json", metadata={}
    )


def bare_loop(redis_url: str) -> None:
    """The limit: BLMOVE, the key out of the JSON, RQ's enqueue of the same job. Nothing else."""
    conn = redis.Redis.from_url(redis_url)
    queue = Queue(keys.QUEUE, connection=conn)
    while True:
        raw = conn.blmove(keys.EVENTS, keys.EVENTS_PROCESSING, 1, "LEFT", "RIGHT")
        if raw is None:
            continue
        record = json.loads(raw)[0]["Event"][0]
        job_id = urllib.parse.unquote_plus(record["s3"]["object"]["key"]).split("/")[0]
        queue.enqueue_call(keys.WORKER_FUNCTION, args=(job_id,), job_id=job_id, description=f"transcribe {job_id}")


class Contender:
    def __init__(self, name: str, redis_url: str, folder: Path) -> None:
        self.name, self.redis_url, self.folder = name, redis_url, folder
        self.conn = redis.Redis.from_url(redis_url)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.conn.flushdb()
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "STORE_DIR": str(self.folder / "buckets"),
            "ROUTER_METRICS_PORT": "0",
        }
        if self.name == "ours":
            command = [sys.executable, "-m", "event_router"]
        else:
            command = [sys.executable, __file__, "--bare-loop", self.redis_url]
        # Default logging (INFO, JSON: a line per enqueued job), to a file as in production.
        log = (self.folder / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
        # Ready once it waits in BLMOVE (its imports and start-up are not what is measured).
        deadline = time.monotonic() + 60
        while not any(c.get("cmd") == "blmove" for c in self.conn.client_list()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"{self.name} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(30)

    def wait_enqueued(self, count: int, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while int(self.conn.llen(RQ_QUEUE)) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name}: only {self.conn.llen(RQ_QUEUE)} of {count} jobs enqueued")
            time.sleep(0.005)
        return time.perf_counter()

    def throughput(self, count: int) -> float:
        self.start()
        batch = [event_for(uuid.uuid4().hex) for _ in range(count)]
        started = time.perf_counter()
        with self.conn.pipeline(transaction=False) as pipe:
            for record in batch:
                pipe.rpush(keys.EVENTS, record)
            pipe.execute()
        ended = self.wait_enqueued(count)
        self.stop()
        return count / (ended - started)

    def latency(self, rate: float, seconds: float) -> list[float]:
        """Milliseconds from RPUSH to RQ's enqueued_at, at a steady rate."""
        self.start()
        pushed: dict[str, float] = {}
        count = int(rate * seconds)
        records = [(job_id, event_for(job_id)) for job_id in (uuid.uuid4().hex for _ in range(count))]
        start = time.perf_counter()
        for n, (job_id, record) in enumerate(records):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pushed[job_id] = time.time()
            self.conn.rpush(keys.EVENTS, record)
        self.wait_enqueued(count)
        self.stop()
        jobs = Job.fetch_many(list(pushed), connection=self.conn)
        return [(job.enqueued_at.timestamp() - pushed[job.id]) * 1000 for job in jobs if job and job.enqueued_at]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--bare-loop", metavar="REDIS_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_loop:
        bare_loop(args.bare_loop)
        return
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        folder = Path(tmp)
        redis_process, redis_url = start_redis(folder / "redis", appendonly=False)
        try:
            contenders = [Contender(name, redis_url, folder) for name in ("ours", "bare")]
            rates = {c.name: c.throughput(args.events) for c in contenders}
            lags = {c.name: c.latency(args.rate, args.seconds) for c in contenders}
        finally:
            stop_redis(redis_process)
    cores = os.cpu_count()
    print(f"\nrouter vs bare BLMOVE+enqueue loop ({cores} cores; redis-server, router and producer share them)\n")
    print(f"{'measure':<42}{'router':>10}{'bare loop':>12}{'ratio':>8}   target")
    verdict = "met" if rates["ours"] >= 2000 else "MISSED"
    label = f"events/s, {args.events} pushed at once"
    ratio = rates["ours"] / rates["bare"]
    print(f"{label:<42}{rates['ours']:>10.0f}{rates['bare']:>12.0f}{ratio:>8.2f}   >= 2000/s: {verdict}")
    for q in (50, 99):
        ours, bare = percentile(lags["ours"], q), percentile(lags["bare"], q)
        target = f"<= 20 ms: {'met' if ours <= 20 else 'MISSED'}" if q == 99 else ""
        label = f"RPUSH -> enqueued p{q} at {args.rate:g}/s, ms"
        print(f"{label:<42}{ours:>10.2f}{bare:>12.2f}{ours / bare:>8.2f}   {target}")
    print(f"{'max latency, ms':<42}{max(lags['ours']):>10.2f}{max(lags['bare']):>12.2f}")


if __name__ == "__main__":
    main()
