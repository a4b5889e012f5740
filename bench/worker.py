"""The worker against raw faster-whisper, measured side by side in one run.

    .venv/bin/python bench/worker.py [--model tiny.en] [--threads 2]

Starts a real redis-server, the router and a worker process (the same code as production) on a
local store, submits jobs as the API does (input, then manifest), and waits for each to finish.
The raw side runs faster-whisper alone in a fresh process: same clip, model, compute type,
threads and options (beam 5, VAD, language en). Prints:

1. one 60 s clip: end-to-end job time (submit → finished) against raw transcribe time;
2. 20 short jobs in a row: against one model load plus 20 raw transcriptions;
3. throughput of 8 short jobs at MAX_CONCURRENCY 1 and 2;
4. peak memory (RSS) of the worker process against the raw process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import imageio_ffmpeg
import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.helpers-free imports when run from anywhere

from embedded.redis_server import start_redis, stop_redis
from transcribe_common import keys, layout
from transcribe_common.models import Manifest, ObjectSource
from transcribe_common.store.base import put_model, upload_file
from transcribe_common.store.local import LocalStore

SPEECH = ROOT / "tests" / "fixtures" / "speech"
BUCKET = "transcribe"

RAW = textwrap.dedent(
    """
    import json, resource, sys, time
    from faster_whisper import WhisperModel
    from gpu_worker.whisper import resolve_model
    from pathlib import Path
    model_name, threads, clips = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    started = time.perf_counter()
    location = resolve_model(model_name, Path("/tmp"))
    model = WhisperModel(location, device="cpu", compute_type="int8", cpu_threads=threads)
    load = time.perf_counter() - started
    runs = []
    for clip in clips:
        t = time.perf_counter()
        segments, _ = model.transcribe(clip, language="en", beam_size=5, vad_filter=True)
        list(segments)
        runs.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"load": load, "runs": runs, "total": time.perf_counter() - started, "peak": peak}))
    """
)


def make_clip(folder: Path, seconds: int) -> Path:
    """``seconds`` of varied speech: the three fixtures in turn, made one format so concat can join them."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    parts = []
    for name in ("upload.mp3", "url.wav", "inbox.mp4"):
        part = folder / f"{Path(name).stem}.wav"
        subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(SPEECH / name), "-ac", "1", "-ar", "16000",
                        str(part)], check=True)  # fmt: skip
        parts.append(part)
    listing = folder / "list.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts) * (seconds // 30 + 1))
    out = folder / f"clip{seconds}.mp3"
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
         "-t", str(seconds), "-b:a", "64k", str(out)],
        check=True,
    )  # fmt: skip
    return out


def raw(model: str, threads: int, clips: list[Path]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RAW, model, str(threads), *map(str, clips)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


class Pipeline:
    """redis-server, router and worker processes on a local store, as in production."""

    def __init__(self, folder: Path, model: str, threads: int, concurrency: int) -> None:
        self.folder = folder
        self.redis_process, self.redis_url = start_redis(folder / "redis", appendonly=False)
        self.conn = redis.Redis.from_url(self.redis_url)
        self.store = LocalStore(folder / "buckets", notify=lambda r: self.conn.rpush(keys.EVENTS, r))
        for bucket in (BUCKET, "transcribe-inbox"):
            self.store.ensure_bucket(bucket)
        env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "STORE_DIR": str(folder / "buckets"),
            "SCRATCH_DIR": str(folder / "scratch"),
            "MODEL_SIZE": model,
            "WHISPER_CPU_THREADS": str(threads),
            "MAX_CONCURRENCY": str(concurrency),
            "LOG_LEVEL": "WARNING",
        }
        self.processes = [
            subprocess.Popen([sys.executable, "-m", module], env=env, cwd=ROOT)
            for module in ("event_router", "gpu_worker")
        ]
        self.worker = psutil.Process(self.processes[1].pid)
        self.peak_rss = 0
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()
        while int(self.conn.scard("rq:workers") or 0) < concurrency:
            time.sleep(0.05)

    def _sample(self) -> None:
        while self._sampling:
            try:
                self.peak_rss = max(self.peak_rss, self.worker.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def submit(self, clip: Path) -> str:
        job_id = layout.new_job_id()
        info = upload_file(self.store, BUCKET, layout.input_key(job_id, clip.name), clip, content_type="audio/mpeg")
        manifest = Manifest(
            job_id=job_id, origin="api", source=ObjectSource(bucket=BUCKET, key=info.key), options={"language": "en"}
        )
        put_model(self.store, BUCKET, layout.manifest_key(job_id), manifest)
        return job_id

    def wait(self, job_ids: list[str]) -> None:
        pending = set(job_ids)
        while pending:
            for job_id in list(pending):
                status = self.conn.hget(keys.job(job_id), "status")
                if status in (b"finished", b"failed"):
                    assert status == b"finished", self.conn.hgetall(keys.job(job_id))
                    pending.discard(job_id)
            time.sleep(0.005)

    def run(self, clips: list[Path]) -> float:
        started = time.perf_counter()
        self.wait([self.submit(clip) for clip in clips])
        return time.perf_counter() - started

    def close(self) -> None:
        self._sampling = False
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)
        stop_redis(self.redis_process)


def row(label: str, ours: float, theirs: float, unit: str = "s", target: str = "") -> None:
    print(f"{label:<46} {ours:>9.2f} {unit:<3} {theirs:>9.2f} {unit:<3} {ours / theirs:>7.3f}x  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        long_clip, short = make_clip(folder, 60), SPEECH / "upload.mp3"
        print(f"model {args.model}, int8, {args.threads} CPU threads, {os.cpu_count()} cores; clips: 60 s, 12.7 s\n")
        print(f"{'':<46} {'pipeline':>13} {'raw':>13} {'ratio':>8}")

        raw_long = raw(args.model, args.threads, [long_clip, long_clip])
        raw_short = raw(args.model, args.threads, [short] * 20)
        pipeline = Pipeline(folder / "c1", args.model, args.threads, concurrency=1)
        try:
            pipeline.run([short])  # warm-up: first decode, first VAD
            e2e = min(pipeline.run([long_clip]) for _ in range(2))
            twenty = pipeline.run([short] * 20)
            one_slot = pipeline.run([short] * 8)
        finally:
            pipeline.close()
        row("60 s clip: end to end vs raw transcribe", e2e, min(raw_long["runs"]), target="target <= 1.05x")
        row("20 short jobs vs 1 load + 20 raw transcribes", twenty, raw_short["total"])
        row("peak RSS: worker vs raw process", pipeline.peak_rss / 2**20, raw_short["peak"] / 2**20, "MiB")

        two = Pipeline(folder / "c2", args.model, args.threads, concurrency=2)
        try:
            two.run([short] * 2)
            two_slots = two.run([short] * 8)
        finally:
            two.close()
        audio = 8 * 12.75
        print(f"\nthroughput, 8 short jobs ({audio:.0f} s of audio):")
        print(f"  MAX_CONCURRENCY=1: {one_slot:6.2f} s  {audio / one_slot:6.1f}x real time")
        speedup = one_slot / two_slots
        print(f"  MAX_CONCURRENCY=2: {two_slots:6.2f} s  {audio / two_slots:6.1f}x real time  ({speedup:.2f}x)")
        print(f"  peak RSS with 2 slots: {two.peak_rss / 2**20:.0f} MiB (one copy of the model)")


if __name__ == "__main__":
    main()
