"""Which checkpoint a job's next run goes on from (``gpu_worker.checkpoint``), on a real local
store: the furthest of an earlier attempt on the same model and input, never one it cannot trust;
and what a run saves, when."""

from __future__ import annotations

from gpu_worker.checkpoint import Checkpoint, Keeper, latest
from gpu_worker.transcript import Segment
from tests.conftest import JOBS_BUCKET
from transcribe_common import layout
from transcribe_common.store.base import put_bytes, put_model

JOB = "a" * 32


def kept(attempt: int, until: float, model: str = "tiny.en", duration: float = 120.0) -> Checkpoint:
    segments = [Segment(id=0, start=0.0, end=until, text=f"said up to {until}")]
    return Checkpoint(
        attempt=attempt, model=model, duration=duration, language="en", language_probability=0.99, until=until,
        segments=segments,
    )  # fmt: skip


def test_the_furthest_checkpoint_of_an_earlier_attempt_on_the_same_model_and_input(local_store) -> None:  # type: ignore[no-untyped-def]
    store = local_store.store

    def save(checkpoint: Checkpoint, attempt: int | None = None) -> None:
        put_model(store, JOBS_BUCKET, layout.checkpoint_key(JOB, attempt or checkpoint.attempt), checkpoint)

    assert latest(store, JOBS_BUCKET, JOB, 3, "tiny.en", 120.0) is None
    save(kept(1, 30.0))
    save(kept(2, 20.0))  # a later attempt that got less far (crashed sooner)
    assert latest(store, JOBS_BUCKET, JOB, 3, "tiny.en", 120.0).until == 30.0  # type: ignore[union-attr]
    assert latest(store, JOBS_BUCKET, JOB, 2, "tiny.en", 120.0).until == 30.0  # type: ignore[union-attr]
    assert latest(store, JOBS_BUCKET, JOB, 1, "tiny.en", 120.0) is None  # its own, or a later one's: never
    assert latest(store, JOBS_BUCKET, JOB, 3, "base", 120.0) is None  # another model decodes otherwise
    assert latest(store, JOBS_BUCKET, JOB, 3, "tiny.en", 90.0) is None  # other audio
    put_bytes(store, JOBS_BUCKET, layout.checkpoint_key(JOB, 4), b"{half a file")
    assert latest(store, JOBS_BUCKET, JOB, 5, "tiny.en", 120.0).until == 30.0  # type: ignore[union-attr]


def test_a_keeper_saves_when_due_and_when_asked_and_only_what_is_new() -> None:
    saved: list[Checkpoint] = []
    keeper = Keeper(saved.append, attempt=1, model="tiny.en", duration=60.0, resume=None, every=3600)
    keeper.save()
    assert saved == []  # nothing decoded, no language yet
    keeper.heard("en", 0.98)
    keeper.add(Segment(id=0, start=0.0, end=4.0, text="One."))
    assert saved == []  # not due
    keeper.save()
    assert [c.until for c in saved] == [4.0]
    keeper.save()
    assert len(saved) == 1  # nothing new
    due = Keeper(saved.append, attempt=2, model="tiny.en", duration=60.0, resume=saved[0].resume(), every=0)
    due.add(Segment(id=1, start=5.0, end=9.0, text="Two."))
    assert [c.until for c in saved] == [4.0, 9.0]
    assert [s.text for s in saved[-1].segments] == ["One.", "Two."]
    assert saved[-1].attempt == 2


def test_a_save_that_fails_costs_only_the_work_since_the_last() -> None:
    def away(_: Checkpoint) -> None:
        raise OSError("the store is away")

    keeper = Keeper(away, attempt=1, model="tiny.en", duration=60.0, resume=None, every=0)
    keeper.heard("en", 0.98)
    keeper.add(Segment(id=0, start=0.0, end=4.0, text="One."))  # the job goes on
    assert len(keeper.segments) == 1
