"""What history costs: a janitor run and Redis at 1,000, 10,000 and 100,000 retained ended jobs.

    python3 dev.py bench scale [--sizes 1000,10000,100000] [--recent 200] [--dir /dev/shm]

For each size, in a fresh redis-server and local store (in ``--dir``: by default /dev/shm where
there is one, so that what is measured is the janitor, not a shared disk's small-file writes), it
makes that many ended jobs fast (no transcription): each has a manifest and a ``status.json`` in
its folder, and went through the real status moves (``queued``, ``started``, ``finished``) with
``STATE_TTL=1``, so its live state expires as it would a week after its end. It adds ``--recent`` jobs that ended in
the janitor's look-back (the same number at every size: the work that can still need a run).
Then, each as its own process (so peak RSS is the run's own):

- the first janitor run, with no watermark (as after Redis lost its data): it lists everything;
- a later run, a look-back after the jobs ended (the steady state).

It prints per size: the runs' seconds and peak RSS, and Redis's ``used_memory`` per ended job
after the TTL (over an empty Redis with the same counters); then the 100k/10k ratios.

Targets (issue 16): the later run's time and RSS within 1.5x from 10,000 to 100,000; Redis
memory per ended job after the TTL near 0.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embedded.redis_server import start_redis, stop_redis
from janitor.reconcile import DAY, Janitor, Limits
from janitor.settings import JanitorSettings
from transcribe_common import keys, layout
from transcribe_common.ending import Ending
from transcribe_common.jobstate import JobStates
from transcribe_common.models import JobStatus, Manifest, UrlSource
from transcribe_common.store.base import put_bytes, put_model
from transcribe_common.store.local import LocalStore

BUCKET, INBOX = "transcribe", "transcribe-inbox"
LIMITS = Limits(orphan_after=3600, lost_after=3600, retention_days=0)


def make_jobs(states: JobStates, store: LocalStore, count: int, made: float, *, recent: bool = False) -> None:
    """``count`` ended jobs, made at ``made`` (Unix seconds), one second apart."""
    for n in range(count):
        job_id = layout.new_job_id(made + n)
        manifest = Manifest(job_id=job_id, origin="api", source=UrlSource(url="https://example.org/a.mp3"))
        put_model(store, BUCKET, layout.manifest_key(job_id), manifest)
        states.advance(job_id, JobStatus.QUEUED)
        started = states.advance(job_id, JobStatus.STARTED)
        assert started is not None
        key = layout.result_key(job_id, "txt", started.attempts)
        if recent:  # a transcript too; the history's are left out, to make it in minutes, not hours
            put_bytes(store, BUCKET, key, b"hello\n", content_type="text/plain")
        states.advance(job_id, JobStatus.FINISHED, attempt=started.attempts, outputs=json.dumps({"txt": key}))


def janitor_run(data: Path, redis_url: str, now: float) -> dict[str, float]:
    """One janitor run in this process: its seconds and this process's peak RSS."""
    conn = redis.Redis.from_url(redis_url)
    store = LocalStore(data / "buckets")
    settings = JanitorSettings(redis_url=redis_url, minio_bucket=BUCKET, minio_inbox_bucket=INBOX)
    states = JobStates.for_settings(conn, store, settings)
    janitor = Janitor(Ending(conn, states, store, settings), LIMITS)
    started = time.perf_counter()
    report = janitor.run(now=now)
    took = time.perf_counter() - started
    assert not report.counts.get("errors"), report.summary()
    return {"seconds": took, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_child(data: Path, redis_url: str, now: float) -> dict[str, float]:
    command = [sys.executable, __file__, "--run", str(data), redis_url, str(now)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def wait_expired(conn: redis.Redis, timeout: float = 600) -> None:
    """Until no job's live hash is left (Redis expires keys a sample at a time)."""
    deadline = time.monotonic() + timeout
    while any(True for _ in conn.scan_iter(keys.job("*"), count=1000)):
        assert time.monotonic() < deadline, "live states did not expire"
        time.sleep(0.5)


def measure(size: int, recent: int, where: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="transcribe-scale-", dir=where) as tmp:
        data = Path(tmp)
        process, url = start_redis(data / "redis", appendonly=False)
        try:
            conn = redis.Redis.from_url(url)
            store = LocalStore(data / "buckets")
            for bucket in (BUCKET, INBOX):
                store.ensure_bucket(bucket)
            states = JobStates(conn, store, BUCKET, ttl=1)
            now = time.time()
            make_jobs(states, store, 1, now - 90 * DAY)  # the counters and indexes exist in both
            wait_expired(conn)
            empty = int(conn.info("memory")["used_memory"])
            make_jobs(states, store, size, now - 60 * DAY)
            # The runs' clock: a look-back after the history's ends (which took a while to make).
            later = time.time() + LIMITS.lookback + 60
            make_jobs(states, store, recent, later - 3600, recent=True)  # ended within the runs' look-back
            wait_expired(conn)
            first = in_child(data, url, later)  # lists everything, trims the ended index
            conn.execute_command("MEMORY", "PURGE")
            per_job = (int(conn.info("memory")["used_memory"]) - empty) / (size + recent)
            steady = in_child(data, url, later + 60)
            return {
                "first_s": first["seconds"],
                "first_rss": first["rss_mib"],
                "steady_s": steady["seconds"],
                "steady_rss": steady["rss_mib"],
                "redis_bytes_per_job": per_job,
            }
        finally:
            stop_redis(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--recent", type=int, default=200)
    shm = Path("/dev/shm")  # a RAM disk, where there is one
    parser.add_argument("--dir", default=str(shm) if shm.is_dir() else None, help="where the data goes")
    parser.add_argument("--run", nargs=3, metavar=("DATA", "REDIS_URL", "NOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(janitor_run(Path(args.run[0]), args.run[1], float(args.run[2]))))
        return 0
    results = {}
    print(f"{'ended jobs':>10}  {'first run s':>11}  {'RSS MiB':>7}  {'later run s':>11}  {'RSS MiB':>7}  "
          f"{'Redis B/job':>11}")  # fmt: skip
    for size in (int(n) for n in args.sizes.split(",")):
        r = results[size] = measure(size, args.recent, args.dir)
        print(f"{size:>10}  {r['first_s']:>11.3f}  {r['first_rss']:>7.1f}  {r['steady_s']:>11.3f}  "
              f"{r['steady_rss']:>7.1f}  {r['redis_bytes_per_job']:>11.1f}", flush=True)  # fmt: skip
    if 10_000 in results and 100_000 in results:
        small, large = results[10_000], results[100_000]
        print(f"100k/10k: later run time {large['steady_s'] / small['steady_s']:.2f}x, "
              f"RSS {large['steady_rss'] / small['steady_rss']:.2f}x (target: within 1.5x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
