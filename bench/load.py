"""A burst of load through the whole embedded stack: nothing lost, nothing run twice, /v1/stats adds up.

    .venv/bin/python bench/load.py [--jobs 500] [--drops 100] [--model tiny.en] [--concurrency 2]

Starts a real redis-server and the embedded stack (``python -m embedded``: watcher, router, one
worker with ``--concurrency`` slots, webhook sender, janitor, API) on a fresh data folder. Then, at
once, ``--jobs`` uploads of a 2 s speech clip through the API (8 clients in parallel) and
``--drops`` copies of it into the inbox folder, as people would drop them. While they run, the
queue is sampled every 0.1 s. Prints the submission rate, the throughput against raw
faster-whisper on the same clip in one process, one at a time, the peak queue lengths, and checks:
every job finished, each ran once (``attempts`` = 1), each has its results once, every drop has one
transcript beside it, and /v1/stats equals the jobs counted one by one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import imageio_ffmpeg
import redis
from rq import Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embedded.redis_server import free_port, start_redis, stop_redis
from transcribe_common import keys
from transcribe_common.models import OUTPUT_FORMATS

SPEECH = ROOT / "tests" / "fixtures" / "speech"
RESULTS = {"manifest.json", "status.json", "input/clip.mp3", *(f"result.{fmt}" for fmt in OUTPUT_FORMATS)}
RAW = """
import sys, time
from pathlib import Path
from faster_whisper import WhisperModel
from gpu_worker.whisper import resolve_model
model = WhisperModel(resolve_model(sys.argv[1], Path(sys.argv[2])), device="cpu", compute_type="int8")
clip, runs = sys.argv[3], int(sys.argv[4])
list(model.transcribe(clip, language="en", beam_size=5, vad_filter=True)[0])  # warm
started = time.perf_counter()
for _ in range(runs):
    list(model.transcribe(clip, language="en", beam_size=5, vad_filter=True)[0])
print(runs / (time.perf_counter() - started))
"""


def make_clip(folder: Path) -> Path:
    clip = folder / "clip.mp3"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(SPEECH / "upload.mp3"), "-t", "2"]
    subprocess.run([*command, "-b:a", "32k", str(clip)], check=True)
    return clip


def raw_rate(model: str, models_dir: Path, clip: Path, runs: int) -> float:
    command = [sys.executable, "-c", RAW, model, str(models_dir), str(clip), str(runs)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


class Sampler(threading.Thread):
    """Peak lengths of the transcription queue and of the events backlog."""

    def __init__(self, conn: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.conn, self.stop = conn, threading.Event()
        self.peak_queue = self.peak_events = 0

    def run(self) -> None:
        queue = Queue(keys.QUEUE, connection=self.conn)
        while not self.stop.wait(0.1):
            self.peak_queue = max(self.peak_queue, queue.count)
            self.peak_events = max(self.peak_events, int(self.conn.llen(keys.EVENTS)))


def submit_all(url: str, clip: bytes, count: int) -> tuple[list[str], list[float], float]:
    latencies: list[float] = []
    with httpx.Client(timeout=60) as client:

        def one(_: int) -> str:
            started = time.perf_counter()
            files = {"file": ("clip.mp3", clip, "audio/mpeg")}
            response = client.post(f"{url}/v1/transcribe", data={"source_type": "upload"}, files=files)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            return str(response.json()["job_id"])

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            job_ids = list(pool.map(one, range(count)))
        return job_ids, latencies, time.perf_counter() - started


def wait_ready(url: str, stack: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and stack.poll() is None:
        try:
            if httpx.get(f"{url}/v1/stats", timeout=1).json()["workers"] > 0:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise SystemExit("the stack did not come up; see its log")


def check(conn: redis.Redis, data: Path, job_ids: list[str], drops: list[str], stats: dict) -> list[str]:
    problems = []
    jobs = data / "buckets" / "transcribe"
    for job_id in job_ids:
        status = keys.text(conn.hget(keys.job(job_id), "status") or b"lost")
        attempts = int(conn.hget(keys.job(job_id), "attempts") or 0)
        files = {p.relative_to(jobs / job_id).as_posix() for p in (jobs / job_id).rglob("*") if p.is_file()}
        if status != "finished" or attempts != 1 or files != RESULTS:
            problems.append(f"job {job_id}: {status}, {attempts} attempts, {sorted(files ^ RESULTS)} differ")
    inbox = data / "buckets" / "transcribe-inbox" / "load"
    for name in drops:
        beside = sorted(p.name for p in inbox.glob(f"{Path(name).stem}.*"))
        if beside != [name, f"{Path(name).stem}.srt"]:
            problems.append(f"drop {name}: {beside}")
    recount = Counter(keys.text(conn.hget(k, "status") or b"?") for k in conn.scan_iter(keys.job("*")))
    for status in ("queued", "started", "finished", "failed", "cancelled"):
        if stats[status] != recount[status]:
            problems.append(f"/v1/stats {status}={stats[status]}, jobs counted one by one: {recount[status]}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--drops", type=int, default=100)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    clip_path = make_clip(work)
    clip = clip_path.read_bytes()
    redis_process, redis_url = start_redis(work / "redis")
    conn = redis.Redis.from_url(redis_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATA_DIR": str(work / "data"),
        "REDIS_URL": redis_url,
        "MODEL_SIZE": args.model,
        "MAX_CONCURRENCY": str(args.concurrency),
        "API_PORT": str(port),
        "JANITOR_METRICS_PORT": "0",
        "SETTLE_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
    }
    log = (work / "stack.log").open("wb")
    stack = subprocess.Popen(
        [sys.executable, "-m", "embedded"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_ready(url, stack)
        print(f"raw faster-whisper on the same clip ({args.model}, one process) ...", flush=True)
        raw = raw_rate(args.model, work / "data" / "models", clip_path, 30)
        sampler = Sampler(conn)
        sampler.start()
        started = time.perf_counter()
        inbox = work / "data" / "buckets" / "transcribe-inbox" / "load"
        inbox.mkdir(parents=True)
        drops = [f"drop-{n:03d}.mp3" for n in range(args.drops)]
        dropper = threading.Thread(target=lambda: [shutil.copy(clip_path, inbox / name) for name in drops])
        dropper.start()
        job_ids, latencies, submit_seconds = submit_all(url, clip, args.jobs)
        dropper.join()
        total = args.jobs + args.drops
        while True:
            stats = httpx.get(f"{url}/v1/stats", timeout=10).json()
            if stats["finished"] + stats["failed"] + stats["cancelled"] >= total and not stats["queued"]:
                break
            if time.perf_counter() - started > 3600:
                raise SystemExit(f"not done after an hour: {stats}")
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        sampler.stop.set()
        problems = check(conn, work / "data", job_ids, drops, stats)
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(60)
        stop_redis(redis_process)
    rate = total / elapsed
    ms = sorted(1000 * t for t in latencies)
    print(f"\n{args.jobs} API uploads + {args.drops} inbox drops of a 2 s clip; {args.model}, "
          f"MAX_CONCURRENCY={args.concurrency}, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'submissions':<34} {args.jobs / submit_seconds:8.1f} /s   p50 {statistics.median(ms):.0f} ms, "
          f"p99 {ms[int(0.99 * (len(ms) - 1))]:.0f} ms")  # fmt: skip
    print(f"{'all finished after':<34} {elapsed:8.1f} s")
    print(f"{'throughput, pipeline':<34} {rate:8.2f} jobs/s")
    print(f"{'throughput, raw faster-whisper':<34} {raw:8.2f} clips/s   (one process, one clip at a time, no I/O)")
    print(f"{'ratio pipeline / raw':<34} {rate / raw:8.2f}")
    print(f"{'peak queue length (RQ)':<34} {sampler.peak_queue:8d}")
    print(f"{'peak events backlog':<34} {sampler.peak_events:8d}")
    print(f"{'/v1/stats':<34} {stats}")
    print(f"{'lost, run twice or incomplete':<34} {len(problems):8d}")
    for problem in problems[:20]:
        print("  ", problem)
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
