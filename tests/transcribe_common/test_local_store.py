import os
import socket
import time
from pathlib import Path

import pytest

from embedded.watcher import InboxWatcher
from transcribe_common.errors import InvalidInput, NotFound
from transcribe_common.events import parse
from transcribe_common.store.base import get_bytes, put_bytes
from transcribe_common.store.local import LocalStore


def test_an_object_appears_whole_or_not_at_all(local_store) -> None:  # type: ignore[no-untyped-def]
    store: LocalStore = local_store.store
    writer = store.open_writer("transcribe", "j/input/a.mp3", content_type="audio/mpeg")
    writer.write(b"half")
    assert store.stat("transcribe", "j/input/a.mp3") is None
    writer.abort()
    assert store.stat("transcribe", "j/input/a.mp3") is None
    assert list((store.root / ".tmp").iterdir()) == []
    assert local_store.records == []


def test_put_announces_like_minio_and_keeps_metadata(local_store) -> None:  # type: ignore[no-untyped-def]
    store: LocalStore = local_store.store
    info = put_bytes(
        store, "transcribe-inbox", "x/y z.wav", b"RIFF", content_type="audio/wav", metadata={"language": "de"}
    )
    assert get_bytes(store, "transcribe-inbox", "x/y z.wav") == b"RIFF"
    assert store.stat("transcribe-inbox", "x/y z.wav") == info
    (event,) = parse(local_store.records[0])
    assert (event.key, event.metadata, event.etag) == ("x/y z.wav", {"language": "de"}, info.etag)


def test_a_file_replaced_by_hand_is_no_longer_announced(local_store) -> None:  # type: ignore[no-untyped-def]
    store: LocalStore = local_store.store
    put_bytes(store, "transcribe-inbox", "a.mp3", b"one", content_type="audio/mpeg")
    assert store.is_announced("transcribe-inbox", "a.mp3")
    path = store.data_path("transcribe-inbox", "a.mp3")
    path.write_bytes(b"second version")
    os.utime(path, ns=(1, 1))
    assert not store.is_announced("transcribe-inbox", "a.mp3")


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_keys_cannot_leave_the_bucket(local_store, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput):
        local_store.store.stat("transcribe", key)


def test_missing_objects_raise_not_found(local_store) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound):
        get_bytes(local_store.store, "transcribe", "nope")


def not_regular_files(store: LocalStore, bucket: str, secret: Path) -> list[str]:
    """Every kind of thing that is not a regular file, in ``bucket``: links (to a file outside, to
    another job's upload, to /dev/zero, to a folder outside), a FIFO and a socket."""
    folder = store.root / bucket / "odd"
    folder.mkdir(parents=True)
    put_bytes(store, "transcribe", "other/input/theirs.mp3", b"someone else's upload")
    (folder / "outside.mp3").symlink_to(secret)
    (folder / "theirs.mp3").symlink_to(store.data_path("transcribe", "other/input/theirs.mp3"))
    (folder / "zero.mp3").symlink_to("/dev/zero")
    (folder / "dir").symlink_to(secret.parent, target_is_directory=True)
    os.mkfifo(folder / "pipe.mp3")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.mp3"))
    sock.close()
    return [
        "odd/outside.mp3",
        "odd/theirs.mp3",
        "odd/zero.mp3",
        f"odd/dir/{secret.name}",
        "odd/pipe.mp3",
        "odd/sock.mp3",
    ]


@pytest.mark.timeout(60)  # a FIFO that is opened for reading would wait for ever
@pytest.mark.parametrize("bucket", ["transcribe-inbox", "transcribe"])
def test_only_regular_files_are_objects(local_store, tmp_path: Path, bucket: str) -> None:  # type: ignore[no-untyped-def]
    store: LocalStore = local_store.store
    secret = tmp_path / "private" / "secret.mp3"
    secret.parent.mkdir()
    secret.write_bytes(b"private audio")
    keys = not_regular_files(store, bucket, secret)
    listed = [info.key for info in store.list(bucket) if info.key.startswith("odd/")]
    assert listed == []
    for key in keys:
        assert store.stat(bucket, key) is None, key
        assert store.is_announced(bucket, key), key  # so nothing announces it
        assert store.adopt(bucket, key) is None, key
        with pytest.raises(NotFound):
            get_bytes(store, bucket, key)
    assert len(local_store.records) == 1  # the one real upload only


@pytest.mark.timeout(60)
def test_the_watcher_skips_what_is_not_a_regular_file(local_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store: LocalStore = local_store.store
    secret = tmp_path / "secret.mp3"
    secret.write_bytes(b"private audio")
    not_regular_files(store, "transcribe-inbox", secret)
    watcher = InboxWatcher(store, "transcribe-inbox", settle_seconds=0.01)
    watcher.scan()
    watcher.settle(now=time.monotonic() + 10)
    assert watcher.pending == {}
    assert len(local_store.records) == 1  # the upload put into the jobs bucket, nothing from the inbox


def test_objects_get_the_mode_a_copied_file_would(local_store) -> None:  # type: ignore[no-untyped-def]
    """Transcripts beside an inbox drop are readable by whoever may read the drop (not 0600)."""
    store: LocalStore = local_store.store
    put_bytes(store, "transcribe-inbox", "talks/a.srt", b"1\n", content_type="text/plain")
    umask = os.umask(0)
    os.umask(umask)
    for path in (
        store.data_path("transcribe-inbox", "talks/a.srt"),
        store.meta_path("transcribe-inbox", "talks/a.srt"),
    ):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
