"""What every object store offers the services."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from transcribe_common.errors import ObjectMissing
from transcribe_common.layout import OUTPUT_MARKER

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)
    modified: float = 0.0  # when it was last written, epoch seconds (0: unknown)


@dataclass(frozen=True)
class IncompleteUpload:
    """A write that was begun and never committed nor aborted (its writer's process died):
    an S3 multipart upload, or a local temporary file. It holds space until it is aborted."""

    bucket: str
    key: str
    upload_id: str
    size: int
    started: float  # epoch seconds: S3's initiation time; a local file's last write


class ObjectWriter(Protocol):
    """A streaming write: the object appears whole on ``commit`` or not at all."""

    size: int

    def write(self, data: bytes) -> None: ...

    def commit(self) -> ObjectInfo: ...

    def abort(self) -> None: ...


class ObjectStore(Protocol):
    def ensure_bucket(self, bucket: str) -> None: ...

    def open_writer(
        self, bucket: str, key: str, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> ObjectWriter: ...

    def stat(self, bucket: str, key: str) -> ObjectInfo | None: ...

    def iter_bytes(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The object's bytes, or ``length`` of them (None: to its end) from ``offset``."""
        ...

    def list(self, bucket: str, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` after the key ``start_after``: top-level folders in key order, and
        a folder's keys together (S3 lists every key in order; the local store, a folder's own
        files before its subfolders')."""
        ...

    def delete(self, bucket: str, key: str) -> None: ...

    def incomplete_uploads(self, bucket: str) -> Iterator[IncompleteUpload]: ...

    def abort_upload(self, upload: IncompleteUpload) -> None: ...

    def download_url(self, bucket: str, key: str) -> str | None:
        """A URL that downloads the object without credentials, if this store can make one."""
        ...


def put_chunks(
    store: ObjectStore,
    bucket: str,
    key: str,
    chunks: Iterable[bytes],
    *,
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
) -> ObjectInfo:
    """Write ``chunks`` as one object: committed whole, or aborted if anything fails on the way."""
    writer = store.open_writer(bucket, key, content_type=content_type, metadata=metadata)
    try:
        for chunk in chunks:
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def put_bytes(
    store: ObjectStore,
    bucket: str,
    key: str,
    data: bytes,
    *,
    content_type: str = "application/octet-stream",
    metadata: dict[str, str] | None = None,
) -> ObjectInfo:
    return put_chunks(store, bucket, key, [data], content_type=content_type, metadata=metadata)


def put_model(store: ObjectStore, bucket: str, key: str, model: BaseModel, **kwargs: object) -> ObjectInfo:
    data = model.model_dump_json(indent=2).encode()
    return put_bytes(store, bucket, key, data, content_type="application/json", **kwargs)  # type: ignore[arg-type]


def get_bytes(store: ObjectStore, bucket: str, key: str) -> bytes:
    return b"".join(store.iter_bytes(bucket, key))


def get_json(store: ObjectStore, bucket: str, key: str) -> object:
    return json.loads(get_bytes(store, bucket, key))


def download(store: ObjectStore, bucket: str, key: str, dest: Path) -> int:
    """Copy an object to a local file in chunks; returns its size."""
    with dest.open("wb") as out:
        for chunk in store.iter_bytes(bucket, key):
            out.write(chunk)
    return dest.stat().st_size


def copy_object(store: ObjectStore, bucket: str, key: str, dest: str, *, metadata: dict[str, str]) -> ObjectInfo:
    """Copy an object within its bucket, streamed, with ``metadata`` added to its own."""
    source = store.stat(bucket, key)
    if source is None:
        raise ObjectMissing(f"no object {bucket}/{key}")
    chunks = store.iter_bytes(bucket, key)
    return put_chunks(
        store, bucket, dest, chunks, content_type=source.content_type, metadata=source.metadata | metadata
    )


def free_place(store: ObjectStore, bucket: str, places: Iterable[str], owner: str) -> str | None:
    """The first of ``places`` that holds nothing, or an object ``owner`` wrote (its
    ``transcribe-output`` metadata): what a person put there is never written over. None if
    every place is taken."""
    for place in places:
        there = store.stat(bucket, place)
        if there is None or there.metadata.get(OUTPUT_MARKER) == owner:
            return place
    return None


def upload_file(
    store: ObjectStore, bucket: str, key: str, path: Path, *, content_type: str, metadata: dict[str, str] | None = None
) -> ObjectInfo:
    return put_chunks(store, bucket, key, _file_chunks(path), content_type=content_type, metadata=metadata)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            yield chunk


def delete_prefix(store: ObjectStore, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix``; how many there were."""
    keys = [info.key for info in store.list(bucket, prefix)]
    for key in keys:
        store.delete(bucket, key)
    return len(keys)
