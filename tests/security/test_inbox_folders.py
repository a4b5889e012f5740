"""Issue 31, the second attack on the inbox folder: a folder swapped for a link while its job ran
had the transcript written through it (anywhere the service may write) and its drop deleted
through it; a name of 251 to 255 bytes left no room for its sidecar's ``.json``, and the watcher
died on it again at each restart; a name of other bytes than UTF-8 did the same."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from embedded.watcher import InboxWatcher
from tests.conftest import INBOX_BUCKET, Published, Stack
from tests.helpers import SPEECH, Receiver, wait_until
from tests.test_truth import drop
from transcribe_common import layout
from transcribe_common.errors import InvalidInput, NotFound
from transcribe_common.events import parse
from transcribe_common.store.base import get_bytes, put_bytes
from transcribe_common.store.local import LocalStore


def swap_for_link(store: LocalStore, folder: str, target: Path) -> None:
    """What a dropper can do while a job runs: put a link where the drop's folder was."""
    path = store.root / INBOX_BUCKET / folder
    path.rename(path.with_name(".was-" + path.name))
    path.symlink_to(target, target_is_directory=True)


def test_a_folder_swapped_for_a_link_is_not_written_read_or_emptied_through(
    local_store: Published, tmp_path: Path
) -> None:
    store = local_store.store
    put_bytes(store, INBOX_BUCKET, "talks/a.mp3", b"the drop", content_type="audio/mpeg")
    elsewhere = tmp_path / "elsewhere"  # another job's folder, or anything the service may write
    elsewhere.mkdir()
    (elsewhere / "a.mp3").write_bytes(b"not the dropper's")
    swap_for_link(store, "talks", elsewhere)

    writer = store.open_writer(INBOX_BUCKET, "talks/a.srt", content_type="text/plain")
    writer.write(b"1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    with pytest.raises(InvalidInput, match="link"):
        writer.commit()
    with pytest.raises(NotFound):
        get_bytes(store, INBOX_BUCKET, "talks/a.mp3")
    store.delete(INBOX_BUCKET, "talks/a.mp3")

    assert sorted(p.name for p in elsewhere.iterdir()) == ["a.mp3"]
    assert (elsewhere / "a.mp3").read_bytes() == b"not the dropper's"
    assert list((store.root / ".tmp").iterdir()) == []  # the refused write left nothing behind


@pytest.mark.parametrize("length", [251, 255])
def test_a_drop_whose_name_fills_the_folder_limit_is_announced(local_store: Published, length: int) -> None:
    store = local_store.store
    name = "a" * (length - len(".wav")) + ".wav"
    (store.root / INBOX_BUCKET / name).write_bytes(b"RIFF")
    watcher = InboxWatcher(store, INBOX_BUCKET, settle_seconds=0.01)
    watcher.scan()
    watcher.settle(now=time.monotonic() + 10)

    assert [event.key for record in local_store.records for event in parse(record)] == [name]
    assert store.is_announced(INBOX_BUCKET, name)  # so a restart does not announce it again
    assert [info.key for info in store.list(INBOX_BUCKET)] == [name]
    store.delete(INBOX_BUCKET, name)
    assert list(store.list(INBOX_BUCKET)) == []
    assert list((store.root / ".meta" / INBOX_BUCKET).iterdir()) == []


def test_names_no_object_key_may_have_are_passed_over_and_the_rest_announced(local_store: Published) -> None:
    store = local_store.store
    folder = store.root / INBOX_BUCKET
    os.mkdir(os.fsencode(folder) + b"/caf\xe9")  # Latin-1, as an old tool may write
    (Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9")) / "talk.wav").write_bytes(b"RIFF")
    deep = folder.joinpath(*["d" * 200] * 6)  # 1,200 bytes: more than an S3 key may have
    deep.mkdir(parents=True)
    (deep / "talk.wav").write_bytes(b"RIFF")
    (folder / "fine.wav").write_bytes(b"RIFF")
    watcher = InboxWatcher(store, INBOX_BUCKET, settle_seconds=0.01)
    watcher.scan()
    watcher.settle(now=time.monotonic() + 10)

    assert [event.key for record in local_store.records for event in parse(record)] == ["fine.wav"]
    assert [info.key for info in store.list(INBOX_BUCKET)] == ["fine.wav"]


@pytest.mark.timeout(120)
def test_a_folder_name_that_is_not_utf8_does_not_stop_the_watch(local_store: Published) -> None:
    """watchfiles stops at once on a tree holding such a name, at each start: the watcher died
    and was started again and again, and no drop after it was taken."""
    store = local_store.store
    folder = store.root / INBOX_BUCKET
    bad = Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9"))
    bad.mkdir()
    (bad / "talk.wav").write_bytes(b"RIFF")
    watcher = InboxWatcher(store, INBOX_BUCKET, settle_seconds=0.01)
    stopping = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stopping,))
    thread.start()
    try:
        (folder / "after").mkdir()
        (folder / "after" / "talk.wav").write_bytes(b"RIFF")
        announced = lambda: [event.key for record in local_store.records for event in parse(record)]  # noqa: E731
        wait_until(lambda: announced() == ["after/talk.wav"], timeout=60)
        assert thread.is_alive()
    finally:
        stopping.set()
        thread.join(30)


def test_a_drop_named_like_its_own_transcript_is_kept(stack: Stack, receiver: Receiver) -> None:
    """A recording named ``talk.srt`` had its transcript written over it: the drop was lost."""
    job_id = drop(stack, "named-like-output/talk.srt", SPEECH / "upload.mp3", {"output": "srt"})
    assert receiver.wait_for(job_id)["json"]["status"] == "finished", stack.log_tail()
    folder = stack.inbox / "named-like-output"
    assert (folder / "talk.srt").read_bytes() == (SPEECH / "upload.mp3").read_bytes()
    assert "-->" in (folder / "talk.srt.srt").read_text()


def test_a_drop_whose_folder_options_could_not_have_a_key_is_transcribed(stack: Stack, receiver: Receiver) -> None:
    """A drop of 1,018 bytes is a key S3 takes; an options file in its folder would be 1,026: the
    router asked the store for it, was refused, and the event went to the dead letters at each
    janitor run."""
    key = "deep/" + "/".join(["d" * 200] * 5) + "/talk.wav"
    beside_options = f"{key.rpartition('/')[0]}/{layout.OPTIONS_FILE}"
    assert len(key.encode()) <= 1024 < len(beside_options.encode())
    job_id = drop(stack, key, SPEECH / "url.wav")
    assert receiver.wait_for(job_id)["json"]["status"] == "finished", stack.log_tail()


def test_files_beside_a_drop_that_are_not_its_transcript_are_left_as_they_are(stack: Stack, receiver: Receiver) -> None:
    """A person's own talk.srt beside talk.mp4 was written over by the transcript of talk.mp4; then
    their talk.mp4.srt, the next name taken."""
    folder = stack.inbox / "own-subtitles"
    folder.mkdir()
    theirs = b"1\n00:00:00,000 --> 00:00:02,000\ntheir own subtitles\n"
    (folder / "talk.srt").write_bytes(theirs)
    (folder / "talk.mp4.srt").write_bytes(theirs + b"(another copy)\n")
    job_id = drop(stack, "own-subtitles/talk.mp4", SPEECH / "inbox.mp4", {"output": "srt"})
    assert receiver.wait_for(job_id)["json"]["status"] == "finished", stack.log_tail()
    assert (folder / "talk.srt").read_bytes() == theirs
    assert (folder / "talk.mp4.srt").read_bytes() == theirs + b"(another copy)\n"
    assert "-->" in (folder / f"talk.mp4.{job_id[-8:]}.srt").read_text()
