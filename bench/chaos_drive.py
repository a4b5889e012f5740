"""The chaos run's load: a burst of uploads, URL jobs and inbox drops, sent the way a careful
client sends them (an ``Idempotency-Key`` on each submission, retried while the service answers
503 or not at all), and a watch on every accepted job's live status while the faults go on."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import redis

from bench.chaos_faults import Clock
from bench.chaos_infra import INBOX_BUCKET
from transcribe_common import keys, layout
from transcribe_common.store.base import put_bytes
from transcribe_common.store.s3 import S3Store

KINDS = {"upload": 2, "url": 1, "drop": 1}  # kind -> weight
OUTPUTS = ["srt", "vtt", "txt", "json", "tsv", "srt,vtt", "txt,json", "srt,vtt,txt,tsv,json"]
RETRIED = {408, 409, 429, 500, 502, 503, 504}  # a client tries these again, with the same key
CLIENTS = 4
FINAL = frozenset({"finished", "failed", "cancelled", "deleted"})


@dataclass
class Job:
    """One submission of the burst, and what became of it."""

    index: int
    kind: str  # upload, url or drop
    outputs: list[str]
    language: str | None
    job_id: str | None = None
    drop_key: str | None = None
    retries: Counter[str] = field(default_factory=Counter)  # why it was sent again
    refused: str | None = None  # the answer of a submission refused for good


def plan(rng: random.Random, count: int) -> list[Job]:
    jobs = []
    for index in range(count):
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        outputs = rng.choice(OUTPUTS).split(",")
        jobs.append(Job(index, kind, outputs, rng.choice(["en", None])))
    return jobs


@dataclass
class Driver:
    api: str
    files_url: str
    hooks_url: str
    clips: dict[str, bytes]
    inbox: S3Store  # moto, straight: a person's S3 client, not the services' failing road
    clock: Clock
    deadline: float  # on the clock: a submission still refused then is given up

    stopping: threading.Event = field(default_factory=threading.Event)

    def submit_all(self, jobs: list[Job], over: float) -> None:
        """Every job, spread over ``over`` seconds by ``CLIENTS`` clients at once. Ctrl-C stops the
        clients too (the pool's threads would otherwise go on retrying until the deadline)."""
        pace = over / max(1, len(jobs))
        with httpx.Client(timeout=30) as client, ThreadPoolExecutor(CLIENTS) as pool:
            try:
                list(pool.map(lambda job: self.submit(client, job, job.index * pace), jobs))
            except BaseException:
                self.stopping.set()
                raise

    def submit(self, client: httpx.Client, job: Job, at: float) -> None:
        if self.stopping.wait(max(0.0, at - self.clock())):
            return
        if job.kind == "drop":
            self.drop(job)
        else:
            self.post(client, job)

    def drop(self, job: Job) -> None:
        job.drop_key = f"chaos/drop-{job.index:04d}.mp4"
        metadata = {"output": ",".join(job.outputs), "db-id": f"chaos-{job.index}"}
        if job.language:
            metadata["language"] = job.language
        data = self.clips["drop"]
        info = put_bytes(self.inbox, INBOX_BUCKET, job.drop_key, data, content_type="video/mp4", metadata=metadata)
        job.job_id = layout.inbox_job_id(INBOX_BUCKET, job.drop_key, info.etag)

    def post(self, client: httpx.Client, job: Job) -> None:
        """Until accepted (202), refused for good (any other 4xx) or the deadline; backing off."""
        delay = 0.2
        while self.clock() < self.deadline and not self.stopping.is_set():
            try:
                response = self.request(client, job)
            except httpx.HTTPError as exc:
                job.retries[type(exc).__name__] += 1
            else:
                if response.status_code == 202:
                    job.job_id = str(response.json()["job_id"])
                    return
                if response.status_code not in RETRIED:
                    job.refused = f"{response.status_code}: {response.text[:300]}"
                    return
                job.retries[str(response.status_code)] += 1
            self.stopping.wait(delay)
            delay = min(2.0, delay * 2)
        job.refused = f"still not accepted after {sum(job.retries.values())} tries"

    def request(self, client: httpx.Client, job: Job) -> httpx.Response:
        fields = {"output": ",".join(job.outputs), "callback_url": f"{self.hooks_url}/hooks/api"}
        fields |= {"db_id": f"chaos-{job.index}"} | ({"language": job.language} if job.language else {})
        headers = {"Idempotency-Key": f"chaos-{job.index}"}
        url = f"{self.api}/v1/transcribe"
        if job.kind == "url":
            body = {"source_type": "url", "url": f"{self.files_url}/clip.wav?job={job.index}", **fields}
            return client.post(url, json=body, headers=headers)
        files = {"file": (f"talk-{job.index}.mp3", self.clips["upload"], "audio/mpeg")}
        return client.post(url, data={"source_type": "upload", **fields}, files=files, headers=headers)


class Watcher(threading.Thread):
    """Every accepted job's live status, straight from Redis in one round trip, twice a second, for
    as long as the run goes on: a job seen ended and later seen in any other state ended twice."""

    def __init__(self, redis_url: str, jobs: list[Job]) -> None:
        super().__init__(name="watcher", daemon=True)
        self.conn = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.jobs = jobs
        self.history: dict[str, list[str]] = {}
        self.ended_at: dict[str, float] = {}  # time.monotonic() when each was first seen ended
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            self.look()

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        self.look()

    def look(self) -> None:
        ids = [job.job_id for job in self.jobs if job.job_id]
        try:
            with self.conn.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hget(keys.job(job_id), "status")
                statuses = pipe.execute()
        except redis.RedisError:
            return  # Redis is being restarted
        for job_id, raw in zip(ids, statuses, strict=True):
            seen = self.history.setdefault(job_id, [])
            if raw is not None and (not seen or seen[-1] != keys.text(raw)):
                seen.append(keys.text(raw))
                if seen[-1] in FINAL:
                    self.ended_at.setdefault(job_id, time.monotonic())

    def ended_twice(self) -> dict[str, list[str]]:
        """Jobs whose status changed after it was final: what was seen, in order."""
        final = {"finished", "failed", "cancelled", "deleted"}
        return {job_id: seen for job_id, seen in self.history.items() if any(status in final for status in seen[:-1])}
