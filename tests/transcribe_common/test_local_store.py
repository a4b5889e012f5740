import os

import pytest

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
