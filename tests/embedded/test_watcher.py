"""Files copied into the inbox folder by hand are announced once, and only once they settle."""

import time

from embedded.watcher import InboxWatcher
from tests.conftest import INBOX_BUCKET
from transcribe_common.events import parse
from transcribe_common.store.base import put_bytes


def test_a_file_still_being_written_waits_until_it_settles(local_store) -> None:  # type: ignore[no-untyped-def]
    store = local_store.store
    watcher = InboxWatcher(store, INBOX_BUCKET, settle_seconds=2.0)
    path = store.root / INBOX_BUCKET / "talks" / "long.mp3"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a" * 100)
    start = time.monotonic()
    watcher.scan()
    watcher.settle(now=start + 1.5)
    assert local_store.records == []

    with path.open("ab") as handle:  # the copy goes on
        handle.write(b"b" * 100)
    watcher.settle(now=start + 2.5)
    assert local_store.records == []
    watcher.settle(now=start + 5.0)
    (event,) = parse(local_store.records[0])
    assert (event.key, event.size) == ("talks/long.mp3", 200)

    watcher.consider(path)  # a late filesystem event for the same content
    watcher.settle(now=start + 10.0)
    assert len(local_store.records) == 1


def test_files_the_store_wrote_and_partial_names_are_not_taken(local_store) -> None:  # type: ignore[no-untyped-def]
    store = local_store.store
    put_bytes(store, INBOX_BUCKET, "a.srt", b"1", content_type="text/plain")
    assert len(local_store.records) == 1
    folder = store.root / INBOX_BUCKET
    (folder / "b.mp3.part").write_bytes(b"x")
    (folder / ".hidden.mp3").write_bytes(b"x")
    watcher = InboxWatcher(store, INBOX_BUCKET, settle_seconds=0.1)
    watcher.scan()
    watcher.settle(now=time.monotonic() + 1)
    assert len(local_store.records) == 1
