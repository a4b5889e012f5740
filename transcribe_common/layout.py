"""Where things live in the buckets.

Jobs bucket (``MINIO_BUCKET``), one folder per job::

    <job_id>/manifest.json     what to do (written last by the API; its creation event starts the job)
    <job_id>/input/<filename>  an uploaded source
    <job_id>/status.json       what happened
    <job_id>/attempt-<n>/result.<format>   the transcript in each format, by the attempt that made
                               it; ``status.json``'s ``outputs`` names the published ones

Inbox bucket (``MINIO_INBOX_BUCKET``): anything dropped there becomes a job; the transcript is
written beside the object, ``talks/a.mp4`` → ``talks/a.srt``, marked with ``OUTPUT_MARKER`` so that
its own creation event is not taken for a new drop.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import secrets
import time
import unicodedata
from datetime import UTC, datetime

MANIFEST = "manifest.json"
STATUS = "status.json"
CHECKPOINT = "checkpoint.json"
# Options for every drop in an inbox folder and the folders below it (the nearest one counts),
# for stores whose objects carry no metadata (the local folder) or people who would rather not set it.
OPTIONS_FILE = ".transcribe.json"
# User metadata (X-Amz-Meta-Transcribe-Output) on every object the pipeline writes into the inbox.
OUTPUT_MARKER = "transcribe-output"

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# Of a name the pipeline writes beside a drop: under a file system's 255 bytes (the local store
# takes up to 255, and hashes the name of a sidecar that would not fit).
MAX_NAME_BYTES = 250
MAX_KEY_BYTES = 1024  # of an object key, in S3
SAFE_NAME_BYTES = 150  # an upload's own name, leaving room for what is added to it ("source-", suffixes)
_UNSAFE = re.compile(r"[^\w.\- ]+")


INBOX_ID_MARK = "f"  # the first digit of every inbox job's id: they sort after every dated one


def new_job_id(now: float | None = None) -> str:
    """Time-ordered: 8 hex digits of the creation's Unix seconds and 4 of its fraction (1/65536 s),
    then 20 random ones. The jobs bucket lists in key order, so the janitor can list only the jobs
    made since a watermark (``dated_floor``) instead of every job ever kept; and files submitted
    together list in the order they were submitted, not at random within their second."""
    now = time.time() if now is None else now
    return f"{int(now):08x}{int(now % 1 * 65536):04x}{secrets.token_hex(10)}"


def made_at(job_id: str) -> datetime:
    """When a job of ``new_job_id`` was made, from its id: the order jobs list in is the order of
    their ids. Not for an inbox job's id, which is not dated."""
    if not is_job_id(job_id) or job_id.startswith(INBOX_ID_MARK):
        raise ValueError(f"{job_id!r} is not a dated job id")
    seconds = int(job_id[:8], 16) + int(job_id[8:12], 16) / 65536
    return datetime.fromtimestamp(seconds, tz=UTC)


def inbox_job_id(bucket: str, key: str, version: str | None) -> str:
    """A stable id for an inbox object, so that duplicate events for it make one job. Not dated
    (an event does not say when the object was written): it starts with ``INBOX_ID_MARK``, which
    sorts after every dated id until the year 2097, so it never falls in the janitor's window."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version or ''}".encode()).hexdigest()
    return INBOX_ID_MARK + digest[:31]


def dated_floor(seconds: float) -> str:
    """The smallest job id made at or after ``seconds``: a bound for a listing in key order."""
    return f"{max(0, int(seconds)):08x}"


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID.match(value))


def job_prefix(job_id: str) -> str:
    """Every object of a job: input, manifest, status, results."""
    return f"{job_id}/"


def manifest_key(job_id: str) -> str:
    return f"{job_id}/{MANIFEST}"


def status_key(job_id: str) -> str:
    return f"{job_id}/{STATUS}"


def result_key(job_id: str, fmt: str, attempt: int | None = None) -> str:
    """Where a transcript is written: under the attempt that made it (``<job_id>/attempt-2/...``),
    so that a stale attempt writes nothing a reader takes for the job's result; the final move
    publishes the winner's keys. Without ``attempt``: where jobs before attempts kept them."""
    return f"{job_id}/result.{fmt}" if attempt is None else f"{job_id}/attempt-{attempt}/result.{fmt}"


def shard_key(job_id: str, attempt: int, name: str) -> str:
    """What an attempt that split its job into shards keeps for them: ``plan.json``, each shard's
    audio (``<index>.s16le``) and transcript (``<index>.json``). Never published, so the janitor
    removes what the join did not once the job has ended."""
    return f"{job_id}/attempt-{attempt}/shards/{name}"


def checkpoint_key(job_id: str, attempt: int) -> str:
    """What an attempt has decoded so far (``gpu_worker.checkpoint``): the next attempt goes on
    from there. Never published: the janitor removes it once the job has ended."""
    return f"{job_id}/attempt-{attempt}/{CHECKPOINT}"


def is_attempt_key(key: str) -> bool:
    """A result written under an attempt (``<job_id>/attempt-<n>/...``)."""
    parts = key.split("/")
    return len(parts) > 2 and parts[1].startswith("attempt-")


def input_key(job_id: str, filename: str) -> str:
    return f"{job_id}/input/{safe_filename(filename)}"


def job_id_of_manifest(key: str) -> str | None:
    """The job id if ``key`` is a manifest key, else None."""
    head, _, tail = key.partition("/")
    return head if tail == MANIFEST and is_job_id(head) else None


def is_options_file(key: str) -> bool:
    return posixpath.basename(key) == OPTIONS_FILE


def options_files(key: str) -> list[str]:
    """Where the options of an inbox drop may be, nearest first: ``a/b/x.mp3`` → ``a/b/``, ``a/``,
    the root; not where a key would be longer than S3 takes (no object can be there)."""
    folders = key.split("/")[:-1]
    places = (posixpath.join(*folders[:depth], OPTIONS_FILE) for depth in range(len(folders), -1, -1))
    return [place for place in places if len(place.encode()) <= MAX_KEY_BYTES]


def beside_keys(key: str, fmt: str, job_id: str) -> list[str]:
    """Where the ``fmt`` output of drop ``key``'s job may go, the first free one taken (a file
    there that is not the job's is never written over): ``talks/a.srt``, ``talks/a.mp4.srt``,
    ``talks/a.mp4.<job>.srt`` (the job id's last 8 digits); none longer than an S3 key may be."""
    places = (beside_key(key, fmt), beside_key_whole(key, fmt), beside_key_whole(key, f"{job_id[-8:]}.{fmt}"))
    return [place for place in dict.fromkeys(places) if len(place.encode()) <= MAX_KEY_BYTES]


def moved_keys(prefix: str, key: str, job_id: str) -> list[str]:
    """Where ``INBOX_AFTER=move`` may put drop ``key``, the first free one taken: ``processed/talks/a.mp4``,
    then ``processed/talks/a.<job>.mp4``."""
    folder, name = posixpath.split(key)
    stem, ext = posixpath.splitext(name)
    tagged = posixpath.join(folder, cut_bytes(stem, MAX_NAME_BYTES - len(f".{job_id[-8:]}{ext}".encode())))
    places = (prefix + key, f"{prefix}{tagged}.{job_id[-8:]}{ext}")
    return [place for place in places if len(place.encode()) <= MAX_KEY_BYTES]


def beside_key(key: str, fmt: str) -> str:
    """``talks/a.mp4`` → ``talks/a.<fmt>``; a name too long for that (file systems take 255
    bytes) keeps as much of its stem as fits. A drop is never its own output: ``talk.srt``'s is
    ``beside_key_whole``'s."""
    folder, name = posixpath.split(key)
    stem, _ = posixpath.splitext(name)
    beside = posixpath.join(folder, cut_bytes(stem, MAX_NAME_BYTES - len(f".{fmt}".encode())) + f".{fmt}")
    return beside_key_whole(key, fmt) if beside == key else beside


def beside_key_whole(key: str, fmt: str) -> str:
    """``talks/a.mp4`` → ``talks/a.mp4.<fmt>``: where an output goes when ``beside_key`` holds a file
    that is not the job's (the drop itself, a person's own subtitles, the transcript of ``a.wav``)."""
    folder, name = posixpath.split(key)
    return posixpath.join(folder, cut_bytes(name, MAX_NAME_BYTES - len(f".{fmt}".encode())) + f".{fmt}")


def cut_bytes(text: str, most: int) -> str:
    """The longest start of ``text`` whose UTF-8 is at most ``most`` bytes, cut between characters."""
    return text.encode()[:most].decode(errors="ignore")


def safe_filename(name: str | None) -> str:
    """The last path segment of a client's filename, with only harmless characters left."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    base = _UNSAFE.sub("_", base).strip(" .")
    stem, ext = posixpath.splitext(base)
    if len(ext.encode()) > 16:
        stem, ext = base, ""
    return (cut_bytes(stem, SAFE_NAME_BYTES - len(ext.encode())) + ext) or "input"
