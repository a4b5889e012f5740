"""The whole embedded stack end to end, against raw faster-whisper, in one run.

    .venv/bin/python bench/e2e.py [--model tiny.en] [--threads 2] [--samples 20] [--runs 3]

Starts the embedded stack (``python -m embedded``: redis-server, watcher, router, one worker,
webhook sender, janitor, API) on a fresh data folder, waits until it is ready and idle, then:

1. idle latency, submit to started: ``--samples`` uploads of a 13 s clip, one at a time on an idle
   stack, each timed from just before its POST to the moment its status in Redis reads ``started``
   (polled every millisecond); p50, p95 and max, and the POST's own share;
2. a 60 s clip, total: from just before its POST to ``finished``, against raw faster-whisper
   transcribing the same file in a process of its own with the model already loaded (same model,
   threads, beam 5, VAD, language en); the median of ``--runs``.

Target (issue 8): submit to started at most 250 ms when idle.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import wait_ready
from bench.worker import make_clip, raw
from embedded.redis_server import free_port, start_redis, stop_redis
from transcribe_common import keys

SPEECH = ROOT / "tests" / "fixtures" / "speech"


class Stack:
    def __init__(self, folder: Path, model: str, threads: int, **settings: str) -> None:
        self.redis_process, self.redis_url = start_redis(folder / "redis", appendonly=False)
        self.conn = redis.Redis.from_url(self.redis_url)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATA_DIR": str(folder / "data"),
            "REDIS_URL": self.redis_url,
            "API_PORT": str(port),
            "MODEL_SIZE": model,
            "WHISPER_CPU_THREADS": str(threads),
            "MAX_CONCURRENCY": "1",
            "LOG_LEVEL": "WARNING",
            **{f"{name}_METRICS_PORT": "0" for name in ("ROUTER", "WORKER", "WEBHOOK", "JANITOR")},
            **settings,
        }
        self.log = (folder / "stack.log").open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "embedded"], env=env, cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        wait_ready(self.url, self.process)

    def status(self, job_id: str) -> str | None:
        value = self.conn.hget(keys.job(job_id), "status")
        return None if value is None else keys.text(value)

    def submit(self, clip: Path) -> tuple[str, float, float]:
        """The job id, when its POST began, and how long the POST took."""
        with httpx.Client(timeout=120) as client:
            started = time.perf_counter()
            response = client.post(
                f"{self.url}/v1/transcribe",
                data={"source_type": "upload", "language": "en"},
                files={"file": (clip.name, clip.read_bytes(), "audio/mpeg")},
            )
            posted = time.perf_counter() - started
        response.raise_for_status()
        return str(response.json()["job_id"]), started, posted

    def wait_for(self, job_id: str, wanted: set[str], interval: float, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while (status := self.status(job_id)) not in wanted:
            if status in {"failed", "cancelled"} or time.monotonic() > deadline:
                raise SystemExit(f"job {job_id}: {status}")
            time.sleep(interval)
        return time.perf_counter()

    def idle(self) -> None:
        while True:
            stats = httpx.get(f"{self.url}/v1/stats").json()
            if stats["queued"] == stats["started"] == 0:
                return
            time.sleep(0.05)

    def close(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)
        stop_redis(self.redis_process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        folder = Path(tmp)
        clip60 = make_clip(folder, 60)
        short = SPEECH / "upload.mp3"
        stack = Stack(folder, args.model, args.threads)
        try:
            to_started, posts = [], []
            for _ in range(args.samples):
                stack.idle()
                job_id, began, posted = stack.submit(short)
                to_started.append((stack.wait_for(job_id, {"started", "finished"}, 0.001) - began) * 1000)
                posts.append(posted * 1000)
                stack.wait_for(job_id, {"finished"}, 0.01)
            totals = []
            for _ in range(args.runs):
                stack.idle()
                job_id, began, _ = stack.submit(clip60)
                totals.append(stack.wait_for(job_id, {"finished"}, 0.01) - began)
        finally:
            stack.close()
        raws = raw(args.model, args.threads, [clip60] * args.runs)["runs"]
    cuts = statistics.quantiles(to_started, n=100, method="inclusive")
    ours, theirs = statistics.median(totals), statistics.median(raws)
    print(f"\nend to end on the embedded stack ({os.cpu_count()} cores, {args.model}, {args.threads} threads)\n")
    print(f"{'measure':<46}{'stack':>10}{'raw':>10}{'ratio':>8}   target")
    verdict = "met" if cuts[49] <= 250 and max(to_started) <= 250 else "MISSED"
    print(f"{'idle submit -> started p50, ms':<46}{cuts[49]:>10.0f}{'':>18}   <= 250 ms: {verdict}")
    print(f"{'idle submit -> started p95 / max, ms':<46}{cuts[94]:>10.0f} / {max(to_started):.0f}")
    print(f"{'  of which the POST (77 KB upload), p50 ms':<46}{statistics.median(posts):>10.0f}")
    print(f"{'60 s clip: submit -> finished vs raw, s':<46}{ours:>10.2f}{theirs:>10.2f}{ours / theirs:>8.2f}")
    print("\nraw: faster-whisper alone, model loaded, same clip and options; stack: upload, routing, fetch, decode,")
    print("transcription, five result files written and the status recorded.")


if __name__ == "__main__":
    main()
