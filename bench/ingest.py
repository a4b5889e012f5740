"""The ingest API against its limits, side by side in one run.

    .venv/bin/python bench/ingest.py [--requests 3000] [--concurrency 8] [--upload-mib 1024]

Starts a real redis-server and the API (``python -m ingest_api``, local store, no router or worker,
so nothing is fetched) as its own process, and:

1. JSON URL submissions: ``--requests`` POST /v1/transcribe from ``--concurrency`` clients on kept-alive
   connections, as fast as they are answered: submissions per second (and the latency at that
   saturation, which is mostly queueing); then ``--rate`` submissions/s for ``--seconds``, each
   sent on its schedule (open loop): p50 and p99. The limit is a bare FastAPI app on the same
   uvicorn that reads the JSON body and answers 202, measured by the same client.
2. One upload of ``--upload-mib`` MiB of random bytes, streamed as multipart from a file: the API
   process's peak RSS growth over its RSS before (sampled every 10 ms), and the upload's throughput
   against a plain file copy (``shutil.copyfile``) of the same file on the same disk.

Targets (issue 8): at least 300 submissions/s with p99 at most 50 ms on the local store; RSS growth
of a 1 GiB upload under 64 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import uvicorn
from fastapi import FastAPI, Request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embedded.redis_server import free_port, start_redis, stop_redis

BODY = {"source_type": "url", "url": "https://93.184.215.14/talks/keynote.mp3", "output": ["srt"]}
MIB = 2**20


def bare_app(port: int) -> None:
    """The limit: the same server and framework, a route that reads the JSON and answers 202."""
    app = FastAPI()

    @app.post("/v1/transcribe", status_code=202)
    async def accept(request: Request) -> dict[str, str]:
        await request.json()
        return {"job_id": "0" * 32, "status": "queued"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start(command: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    """Default logging (INFO, JSON: an access line and a "submitted" line per job), to a file."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{command} did not start")


async def hammer(url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    remaining = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def client_loop() -> None:
            for _ in remaining:
                started = time.perf_counter()
                response = await client.post(f"{url}/v1/transcribe", json=BODY)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 202:
                    raise SystemExit(f"{response.status_code}: {response.text}")

        for _ in range(min(50, requests)):  # warm the connections and the server
            await client.post(f"{url}/v1/transcribe", json=BODY)
        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


async def steady(url: str, rate: float, seconds: float) -> list[float]:
    """Latencies of submissions sent at a steady ``rate`` (open loop: each on its schedule,
    whether or not the earlier ones have been answered)."""
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one() -> None:
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}/v1/transcribe", json=BODY)
            except httpx.HTTPError as exc:  # counted, not fatal: a server that falls behind drops some
                errors.append(str(exc) or type(exc).__name__)
                return
            latencies.append(time.perf_counter() - started)
            if response.status_code != 202:
                errors.append(f"HTTP {response.status_code}")

        await asyncio.gather(*(one() for _ in range(50)))  # warm the connections and the server
        latencies.clear()
        tasks = []
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    if errors:
        print(f"{url}: {len(errors)} of {len(tasks)} steady submissions failed, e.g. {errors[0]}")
    return latencies


def cut(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50": cuts[49] * 1000, "p99": cuts[98] * 1000}


def rate_row(requests: int, elapsed: float, latencies: list[float]) -> dict[str, float]:
    return {"rate": requests / elapsed, **cut(latencies)}


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.stop, self.peak = psutil.Process(pid), threading.Event(), 0

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)


def big_upload(url: str, api_pid: int, folder: Path, mib: int) -> dict[str, float]:
    source = folder / "big.bin"
    with source.open("wb") as out:
        for _ in range(mib // 8):
            out.write(os.urandom(8 * MIB))
    before = psutil.Process(api_pid).memory_info().rss
    sampler = PeakRss(api_pid)
    sampler.start()
    started = time.perf_counter()
    with source.open("rb") as data, httpx.Client(timeout=600) as client:
        response = client.post(
            f"{url}/v1/transcribe", data={"source_type": "upload"}, files={"file": ("big.bin", data, "audio/mpeg")}
        )
    upload_seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    if response.status_code != 202:
        raise SystemExit(f"upload: {response.status_code}: {response.text}")
    started = time.perf_counter()
    shutil.copyfile(source, folder / "copy.bin")
    copy_seconds = time.perf_counter() - started
    size = source.stat().st_size
    return {
        "growth": (sampler.peak - before) / MIB,
        "upload": size / MIB / upload_seconds,
        "copy": size / MIB / copy_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=300, help="submissions/s for the steady latency")
    parser.add_argument("--seconds", type=float, default=10, help="how long the steady run lasts")
    parser.add_argument("--upload-mib", type=int, default=1024)
    parser.add_argument("--bare-app", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_app:
        bare_app(args.bare_app)
        return
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        folder = Path(tmp)
        redis_process, redis_url = start_redis(folder / "redis", appendonly=False)
        port, bare_port = free_port(), free_port()
        env = {**os.environ, "REDIS_URL": redis_url, "STORE_DIR": str(folder / "buckets"), "API_PORT": str(port)}
        url, bare_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bare_port}"
        api = start([sys.executable, "-m", "ingest_api"], env, url, folder / "api.log")
        bare = start([sys.executable, __file__, "--bare-app", str(bare_port)], env, bare_url, folder / "bare.log")
        try:
            bare.send_signal(signal.SIGSTOP)  # one contender at a time on the 2 cores
            ours = rate_row(args.requests, *asyncio.run(hammer(url, args.requests, args.concurrency)))
            ours_steady = cut(asyncio.run(steady(url, args.rate, args.seconds)))
            api.send_signal(signal.SIGSTOP)
            bare.send_signal(signal.SIGCONT)
            limit = rate_row(args.requests, *asyncio.run(hammer(bare_url, args.requests, args.concurrency)))
            limit_steady = cut(asyncio.run(steady(bare_url, args.rate, args.seconds)))
            bare.terminate()
            api.send_signal(signal.SIGCONT)
            upload = big_upload(url, api.pid, folder, args.upload_mib) if args.upload_mib else None
        finally:
            for process in (api, bare):
                process.send_signal(signal.SIGCONT)
                process.terminate()
                process.wait(30)
            stop_redis(redis_process)
    print(f"\ningest API vs its limits ({os.cpu_count()} cores; API, redis-server and client share them)\n")
    print("limit of submissions: a bare FastAPI route on the same uvicorn that reads the JSON and answers 202\n")
    print(f"{'measure':<48}{'API':>10}{'limit':>10}{'ratio':>8}   target")
    label = f"JSON URL submissions/s ({args.concurrency} clients)"
    verdict = "met" if ours["rate"] >= 300 else "MISSED"
    ratio = ours["rate"] / limit["rate"]
    print(f"{label:<48}{ours['rate']:>10.0f}{limit['rate']:>10.0f}{ratio:>8.2f}   >= 300/s: {verdict}")
    for q in ("p50", "p99"):
        label = f"  latency {q} at that saturation, ms"
        print(f"{label:<48}{ours[q]:>10.1f}{limit[q]:>10.1f}{ours[q] / limit[q]:>8.2f}")
    for q in ("p50", "p99"):
        target = f"<= 50 ms: {'met' if ours_steady['p99'] <= 50 else 'MISSED'}" if q == "p99" else ""
        label = f"latency {q} at a steady {args.rate:g}/s, ms"
        ratio = ours_steady[q] / limit_steady[q]
        print(f"{label:<48}{ours_steady[q]:>10.1f}{limit_steady[q]:>10.1f}{ratio:>8.2f}   {target}")
    if upload is None:
        return
    label = f"{args.upload_mib} MiB upload, MiB/s (limit: file copy)"
    print(f"{label:<48}{upload['upload']:>10.0f}{upload['copy']:>10.0f}{upload['upload'] / upload['copy']:>8.2f}")
    verdict = "met" if upload["growth"] < 64 else "MISSED"
    print(f"{'API peak RSS growth during it, MiB':<48}{upload['growth']:>10.1f}{'':>10}{'':>8}   < 64 MB: {verdict}")


if __name__ == "__main__":
    main()
