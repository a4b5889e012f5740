"""The chaos run's invariants, checked once every fault is over and the stack has settled.

Each check gives a ``Verdict``: the claim, what it counts as when broken (a job ``lost``, a job
``duplicated``, or something ``inconsistent``), and what is wrong, keyed by the job (or the queue,
the list, the folder) it is wrong about. A job is counted once: in the first of lost, duplicated,
inconsistent that it falls in.
"""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
import srt
import webvtt
from rq import Queue
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from bench.chaos_drive import Job, Watcher
from bench.chaos_infra import INBOX_BUCKET, JOBS_BUCKET, Receiver
from transcribe_common import keys, layout
from transcribe_common.ending import ERROR_NOTE
from transcribe_common.errors import NotFound
from transcribe_common.models import JobStatus
from transcribe_common.store.base import get_bytes, get_json
from transcribe_common.store.s3 import S3Store

ENDED = ("finished", "failed")
COMPARED = ("status", "error", "language", "duration", "warnings", "progress")  # status.json and the API both say


@dataclass
class Verdict:
    claim: str
    counts_as: str  # lost, duplicated or inconsistent
    problems: dict[str, list[str]] = field(default_factory=dict)
    seen: str = ""  # what holds, said when nothing is wrong

    def lines(self, most: int = 12) -> list[str]:
        if not self.problems:
            return [f"  ok    {self.claim}: {self.seen}"]
        lines = [f"  FAIL  {self.claim}: {len(self.problems)} {self.counts_as}"]
        for what, problems in list(self.problems.items())[:most]:
            lines.append(f"          {what}: {'; '.join(problems)}")
        if len(self.problems) > most:
            lines.append(f"          … and {len(self.problems) - most} more")
        return lines


@dataclass
class Evidence:
    api: str
    jobs: list[Job]  # every job of the burst, accepted or not
    views: dict[str, dict]  # accepted job id -> GET /v1/jobs/{id} ({} when 404)
    store: S3Store  # moto, straight
    receiver: Receiver
    watcher: Watcher
    conn: redis.Redis
    scratch: Path
    http: httpx.Client

    @property
    def accepted(self) -> list[Job]:
        return [job for job in self.jobs if job.job_id]

    def status(self, job: Job) -> str | None:
        return self.views.get(job.job_id or "", {}).get("status")

    def ended(self) -> list[Job]:
        return [job for job in self.accepted if self.status(job) in ENDED]


def check_all(e: Evidence) -> list[Verdict]:
    return [accepted(e), ended(e), once(e), results(e), agrees(e), webhooks(e), stats(e), drained(e)]


def tally(verdicts: list[Verdict]) -> dict[str, int]:
    """How many lost, duplicated and inconsistent, each thing counted in the first it falls in."""
    counted: set[str] = set()
    totals = {}
    for kind in ("lost", "duplicated", "inconsistent"):
        things = {what for v in verdicts if v.counts_as == kind for what in v.problems} - counted
        totals[kind] = len(things)
        counted |= things
    return totals


def accepted(e: Evidence) -> Verdict:
    problems = {f"submission {job.index} ({job.kind})": [str(job.refused)] for job in e.jobs if not job.job_id}
    retried = sum(1 for job in e.accepted if job.retries)
    tries = sum(sum(job.retries.values()) for job in e.accepted)
    why = Counter[str]()
    for job in e.accepted:
        why.update(job.retries)
    reasons = ", ".join(f"{reason} x{n}" for reason, n in why.most_common())
    seen = f"{len(e.accepted)} accepted, {retried} of them after {tries} retries" + (f" ({reasons})" if reasons else "")
    return Verdict("every valid submission was accepted", "inconsistent", problems, seen)


def ended(e: Evidence) -> Verdict:
    problems: dict[str, list[str]] = {}
    for job in e.accepted:
        view = e.views.get(str(job.job_id), {})
        status = view.get("status")
        if status not in ENDED:
            problems[str(job.job_id)] = [f"{job.kind} job is {status or 'unknown to the API'}"]
        elif status == "failed" and not view.get("error"):
            problems[str(job.job_id)] = ["failed with no error"]
    counts = Counter(e.status(job) for job in e.ended())
    seen = f"{counts['finished']} finished, {counts['failed']} failed"
    return Verdict("every accepted job ended (finished, or failed with a reason)", "lost", problems, seen)


def once(e: Evidence) -> Verdict:
    problems: dict[str, list[str]] = defaultdict(list)
    for job_id, history in e.watcher.ended_twice().items():
        problems[job_id].append("status went " + " → ".join(history))
    for job in e.accepted:
        ids = sorted({str(call.webhook_id) for call in e.receiver.for_job(str(job.job_id))})
        if len(ids) > 1:
            problems[str(job.job_id)].append(f"webhooks with {len(ids)} ids: {', '.join(ids)}")
    for job_id, what in unknown_jobs(e).items():
        problems[job_id].append(what)
    seen = "no status changed after its end, no job has webhooks of two ids, no job that no client was given"
    return Verdict("every accepted job ended exactly once, and no other job ran", "duplicated", dict(problems), seen)


def unknown_jobs(e: Evidence) -> dict[str, str]:
    """Jobs in the bucket or in Redis that no submission was answered with: a retried submission
    that made a second job, say."""
    known = {str(job.job_id) for job in e.accepted}
    folders = {o.object_name.rstrip("/") for o in e.store.client.list_objects(JOBS_BUCKET) if o.object_name}
    live = {keys.text(k).rsplit(":", 1)[-1] for k in e.conn.scan_iter(keys.job("*"))}
    found = {}
    for job_id in sorted((folders | live) - known):
        try:
            manifest = get_json(e.store, JOBS_BUCKET, layout.manifest_key(job_id))
        except NotFound:
            if job_id in live:
                found[job_id] = "a live job with no manifest, answered to no submission"
            continue  # an upload cut short before its manifest: no job (the janitor removes it)
        assert isinstance(manifest, dict)
        status = keys.text(e.conn.hget(keys.job(job_id), "status") or b"no live status")
        found[job_id] = f"a job no submission was answered with ({status}; db_id {manifest.get('db_id')})"
    return found


def results(e: Evidence) -> Verdict:
    problems: dict[str, list[str]] = defaultdict(list)
    parsed = 0
    for job in e.ended():
        job_id = str(job.job_id)
        if e.status(job) == "failed":
            note = layout.beside_key(str(job.drop_key), ERROR_NOTE)
            if job.kind == "drop" and e.store.stat(INBOX_BUCKET, note) is None:
                problems[job_id].append(f"the failed drop has no {ERROR_NOTE} beside it")
            continue
        for fmt in job.outputs:
            answer = e.http.get(f"{e.api}/v1/jobs/{job_id}/result", params={"format": fmt})
            problem = (
                parse(fmt, answer.text) if answer.status_code == 200 else f"{fmt} result: HTTP {answer.status_code}"
            )
            if job.kind == "drop" and problem is None:
                problem = beside(e, job, fmt)
            if problem:
                problems[job_id].append(problem)
            parsed += 1
    seen = f"{parsed} results parsed (srt, vtt, txt, tsv, json), transcripts beside every drop"
    return Verdict("each finished job has all its results, complete and parseable", "inconsistent", problems, seen)


def parse(fmt: str, text: str) -> str | None:
    """What is wrong with a result in ``fmt``, read by a real parser; None if nothing."""
    try:
        if fmt == "srt":
            ok = any(cue.content.strip() for cue in srt.parse(text))
        elif fmt == "vtt":
            ok = any(caption.text.strip() for caption in webvtt.from_buffer(io.StringIO(text)).captions)
        elif fmt == "json":
            ok = bool(json.loads(text)["segments"])
        elif fmt == "tsv":
            rows = text.splitlines()
            ok = rows[0] == "start\tend\ttext" and len(rows) > 1 and all(len(r.split("\t")) == 3 for r in rows[1:])
        else:
            ok = bool(text.strip())
    except Exception as exc:
        return f"{fmt} does not parse: {type(exc).__name__}: {exc}"
    return None if ok else f"{fmt} is empty or incomplete"


def beside(e: Evidence, job: Job, fmt: str) -> str | None:
    key = layout.beside_key(str(job.drop_key), fmt)
    info = e.store.stat(INBOX_BUCKET, key)
    if info is None:
        return f"no {fmt} beside the drop"
    if info.metadata.get(layout.OUTPUT_MARKER) != job.job_id:
        return f"the {fmt} beside the drop is not marked as this job's"
    return parse(fmt, get_bytes(e.store, INBOX_BUCKET, key).decode(errors="replace"))


def agrees(e: Evidence) -> Verdict:
    problems: dict[str, list[str]] = {}
    for job in e.ended():
        job_id, view = str(job.job_id), e.views[str(job.job_id)]
        try:
            stored = get_json(e.store, JOBS_BUCKET, layout.status_key(job_id))
        except NotFound:
            problems[job_id] = ["no status.json"]
            continue
        assert isinstance(stored, dict)
        if differ := [
            f"{name}: status.json {stored.get(name)!r}, API {view.get(name)!r}"
            for name in COMPARED
            if stored.get(name) != view.get(name)
        ]:
            problems[job_id] = differ
    seen = f"{len(e.ended())} status.json files agree ({', '.join(COMPARED)})"
    return Verdict("status.json agrees with the live state the API reports", "inconsistent", problems, seen)


def webhooks(e: Evidence) -> Verdict:
    problems: dict[str, list[str]] = defaultdict(list)
    calls = 0
    for job in e.ended():
        job_id, status = str(job.job_id), e.status(job)
        got = e.receiver.for_job(job_id)
        calls += len(got)
        if unverified := [c for c in got if not c.verified]:
            problems[job_id].append(f"{len(unverified)} webhooks do not verify")
        ids = {c.webhook_id for c in got}
        if len(ids) == 1 and ids != {f"msg_{job_id}_{status}"}:
            problems[job_id].append(f"webhook-id {ids.pop()} for a job that is {status}")
        if said := sorted({str(c.status) for c in got if c.status != status}):
            problems[job_id].append(f"webhooks say {', '.join(said)}; the job is {status}")
        if not any(c.answered is not None and 200 <= c.answered < 300 for c in got):
            state = (e.views[job_id].get("webhook") or {}).get("state", "never queued")
            problems[job_id].append(f"no webhook delivered ({len(got)} calls; its webhook is {state})")
    seen = f"{calls} calls verified, one webhook-id a job, every ended job's delivered"
    claim = "every webhook verifies, each job's share one webhook-id, each ended job got one"
    return Verdict(claim, "inconsistent", dict(problems), seen)


def stats(e: Evidence) -> Verdict:
    shown = e.http.get(f"{e.api}/v1/stats").json()
    counted = Counter(e.status(job) for job in e.accepted)
    problems = {
        f"/v1/stats {status.value}": [f"{shown.get(status.value)}, counted one by one {counted[status.value]}"]
        for status in JobStatus
        if shown.get(status.value, 0) != counted[status.value]
    }
    seen = ", ".join(f"{status.value} {counted[status.value]}" for status in JobStatus if counted[status.value])
    return Verdict("/v1/stats equals the jobs counted one by one", "inconsistent", problems, seen)


def leftovers(conn: redis.Redis, scratch: Path) -> dict[str, list[str]]:
    """What still holds something: RQ queues and their started, scheduled and deferred registries
    (read as they are: counting a registry through RQ would clean it up first), the events lists,
    the index of open jobs, the workers' scratch folder."""
    found: dict[str, list[str]] = {}
    names = {q.name for q in Queue.all(connection=conn)} | {keys.QUEUE, keys.WEBHOOK_QUEUE}
    for name in sorted(names):
        queue = Queue(name, connection=conn)
        held = {"queue": conn.llen(queue.key), "intermediate queue": conn.llen(queue.intermediate_queue.key)}
        for registry in (StartedJobRegistry, ScheduledJobRegistry, DeferredJobRegistry):
            held[registry.__name__] = conn.zcard(registry(queue=queue).key)
        if busy := [f"{n} in its {what}" for what, n in held.items() if n]:
            found[f"RQ {name}"] = busy
    # Events (waiting, taken, put off, dead), the index of open jobs, webhook retries waiting; those
    # this version has.
    lists = ("EVENTS", "EVENTS_PROCESSING", "EVENTS_RETRY", "EVENTS_DEAD", "JOBS_OPEN", "WEBHOOKS_DUE")
    for name in (getattr(keys, n) for n in lists if hasattr(keys, n)):
        if n := _size(conn, name):
            found[name] = [f"{n} entries"]
    if scratch.is_dir() and (folders := sorted(p.name for p in scratch.iterdir())):
        found["scratch"] = [f"{len(folders)} folders: {', '.join(folders[:5])}"]
    return found


def _size(conn: redis.Redis, key: str) -> int:
    kind = keys.text(conn.type(key))
    sizes = {"list": conn.llen, "zset": conn.zcard, "set": conn.scard, "hash": conn.hlen}
    return int(sizes[kind](key)) if kind in sizes else 0


def drained(e: Evidence) -> Verdict:
    claim = "no queue, registry, events list or scratch folder holds anything"
    return Verdict(claim, "inconsistent", leftovers(e.conn, e.scratch), "all empty")
