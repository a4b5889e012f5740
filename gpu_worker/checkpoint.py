"""What a running job has decoded, kept in the store, so that its next run goes on from there.

A worker that drains (SIGTERM: a scale-in, a rollout, Ctrl-C) puts its running jobs back in the
queue once ``DRAIN_TIMEOUT`` has passed. A job started again used to decode from zero, and its
progress stood still until the new run passed the old figure. Now each run of a whole job keeps
the segments it has decoded in ``<job>/attempt-<n>/checkpoint.json``: at the drain, and every
``CHECKPOINT_EVERY`` seconds of decoding, so that a crash (SIGKILL, an OOM kill, a lost node)
costs at most that much work. The next run decodes the input again (seconds of ffmpeg), takes the
latest checkpoint of an earlier attempt that matches it (the same model, the same decoded length),
and transcribes on from its last segment's end in the language it heard.

Shards are not checkpointed: a shard is ``SHARD_SECONDS`` of audio, at most one decode window,
and is started again whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pydantic import BaseModel, ValidationError

from gpu_worker.transcript import Resume, Segment
from transcribe_common import layout
from transcribe_common.store.base import ObjectStore, get_bytes

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 30.0  # seconds of decoding between saves: what a crash may cost


class Checkpoint(BaseModel):
    attempt: int
    model: str
    duration: float  # seconds of the decoded input: a next run's must be the same
    language: str
    language_probability: float
    until: float  # seconds into the audio decoded: the end of the last segment
    segments: list[Segment]

    def resume(self) -> Resume:
        return Resume(self.segments, self.until, self.language, self.language_probability)


def latest(
    store: ObjectStore, bucket: str, job_id: str, attempt: int, model: str, duration: float
) -> Checkpoint | None:
    """The checkpoint of an earlier attempt of this job that went furthest, on this model and this
    input; None if there is none (a first run, or a checkpoint unreadable or of other audio)."""
    found: list[Checkpoint] = []
    for info in store.list(bucket, f"{layout.job_prefix(job_id)}attempt-"):
        if not info.key.endswith(f"/{layout.CHECKPOINT}"):
            continue
        try:
            kept = Checkpoint.model_validate_json(get_bytes(store, bucket, info.key))
        except (ValidationError, ValueError) as exc:
            log.warning("job %s: checkpoint %s is not readable (%s); not used", job_id, info.key, exc)
            continue
        if kept.attempt < attempt and kept.model == model and abs(kept.duration - duration) < 0.01:
            found.append(kept)
    return max(found, key=lambda kept: kept.until, default=None)


class Keeper:
    """A run's segments as they are decoded, saved (``save``) every ``every`` seconds and when
    asked: the earlier run's first, if it goes on from one."""

    def __init__(
        self,
        save: Callable[[Checkpoint], object],
        *,
        attempt: int,
        model: str,
        duration: float,
        resume: Resume | None,
        every: float = CHECKPOINT_EVERY,
    ) -> None:
        self._save, self.every = save, every
        self.attempt, self.model, self.duration = attempt, model, duration
        self.segments: list[Segment] = list(resume.segments) if resume else []
        self.language = (resume.language, resume.language_probability) if resume else None
        self._saved_at = time.monotonic()
        self._saved_count = len(self.segments)

    def heard(self, language: str, probability: float) -> None:
        self.language = (language, probability)

    def add(self, segment: Segment) -> None:
        self.segments.append(segment.model_copy(update={"id": len(self.segments)}))  # ids run on across windows
        if time.monotonic() - self._saved_at >= self.every:
            self.save()

    def save(self) -> None:
        """Keep what is decoded, if anything is new. A save that fails costs only the work since
        the last one: the job goes on."""
        if self.language is None or len(self.segments) == self._saved_count:
            return
        kept = Checkpoint(
            attempt=self.attempt,
            model=self.model,
            duration=self.duration,
            language=self.language[0],
            language_probability=self.language[1],
            until=self.segments[-1].end,
            segments=self.segments,
        )
        self._saved_at = time.monotonic()
        try:
            self._save(kept)
        except Exception as exc:
            log.warning("checkpoint not saved (%s); the next save tries again", exc)
            return
        self._saved_count = len(kept.segments)
