"""A folder that stands in for the object store: each bucket is a folder, each key a file.

Writes land in ``.tmp/`` and are renamed into place, so a reader never sees half an object.
An object's content type, user metadata and eTag sit in a sidecar under ``.meta/``. Like MinIO,
the store announces each object it creates (``notify`` receives an access-format record); files
that people copy into a bucket folder by hand are announced by the folder watcher, which calls
``adopt`` once they have settled.

Only regular files are objects. A symlink (to a file outside the bucket, or to another user's
upload), a hard link (a second name of a file that may lie anywhere on the disk), a FIFO, a
device or a socket put into a bucket folder is never read, hashed, listed or announced: it is
skipped with a warning. Files are opened without following links and without
blocking, and checked again once open, so that nothing swapped in between is read either.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import mimetypes
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from transcribe_common.errors import InvalidInput, ObjectMissing
from transcribe_common.events import access_record
from transcribe_common.layout import MAX_KEY_BYTES
from transcribe_common.store.base import CHUNK, IncompleteUpload, ObjectInfo

log = logging.getLogger(__name__)
Notify = Callable[[str], object]
# Objects, and their sidecars, get the mode a file copied there by hand would (0644 under the usual
# umask 022), so that others who may read the folder can read transcripts; temporary files start out 0600.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
META_DIR = ".meta"
MAX_NAME_BYTES = 255  # of one name in a folder, on the usual file systems
TMP_DIR = ".tmp"
_TMP_PREFIX = "put-"  # then the bucket: put-<bucket>-<random>


def check_key(key: str) -> PurePosixPath:
    """``key`` as a path below its bucket; ``InvalidInput`` for one that would leave it, or that S3
    would refuse: not UTF-8 (a file name of other bytes), or longer than 1,024 bytes."""
    path = PurePosixPath(key)
    if not key or key.startswith("/") or "\x00" in key or any(p in ("", ".", "..") for p in key.split("/")):
        raise InvalidInput(f"invalid object key {key!r}")
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        raise InvalidInput(f"object key {key!r} is not UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise InvalidInput(f"object key {key[:64]!r}… is {size} bytes; S3 takes {MAX_KEY_BYTES} at most")
    return path


class LocalStore:
    def __init__(self, root: Path, notify: Notify | None = None) -> None:
        self.root = root.resolve()
        self._notify = notify
        (self.root / TMP_DIR).mkdir(parents=True, exist_ok=True)

    def data_path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / check_key(key)

    @staticmethod
    def _parts(bucket: str, key: str) -> list[str]:
        """The object's path below the root, a folder at a time: its bucket's, then its key's."""
        return [bucket, *check_key(key).parts]

    def meta_path(self, bucket: str, key: str) -> Path:
        return self.root.joinpath(META_DIR, *self._sidecar_parts(bucket, key))

    @staticmethod
    def _sidecar_parts(bucket: str, key: str) -> list[str]:
        """Where an object's sidecar is, below ``META_DIR``: its path with ``.json`` added, or, for
        a name too long to take it (251 bytes and up), one named after the name's digest."""
        *folders, name = LocalStore._parts(bucket, key)
        if len(name.encode()) > MAX_NAME_BYTES - len(".json"):
            name = f".long-{hashlib.sha256(name.encode()).hexdigest()}"
        return [*folders, f"{name}.json"]

    def ensure_bucket(self, bucket: str) -> None:
        if not bucket or bucket.startswith(".") or "/" in bucket:
            raise InvalidInput(f"invalid bucket name {bucket!r}")
        (self.root / bucket).mkdir(parents=True, exist_ok=True)

    def open_writer(
        self, bucket: str, key: str, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> _LocalWriter:
        return _LocalWriter(self, bucket, key, content_type, dict(metadata or {}))

    def regular(self, bucket: str, key: str) -> os.stat_result | None:
        """The file's stat if it is a regular file reached through no link; else None (a link, a
        FIFO, a device or a socket is logged and passed over)."""
        data = self.data_path(bucket, key)
        try:
            st = data.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode) or data.resolve() != data or st.st_nlink != 1:
            log.warning("%s/%s is not a regular file (a link, FIFO, device or socket); skipped", bucket, key)
            return None
        return st

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        st = self.regular(bucket, key)
        if st is None:
            return None
        sidecar = self._read_sidecar(bucket, key, st)
        if sidecar is not None:
            return sidecar
        try:
            etag = _md5_file(self.root, self._parts(bucket, key))
        except OSError:  # gone, or swapped for something that is not a file, since the check
            return None
        return ObjectInfo(bucket, key, st.st_size, etag, _guess_type(key), {}, st.st_mtime)

    def iter_bytes(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        if self.regular(bucket, key) is None:
            raise ObjectMissing(f"no object {bucket}/{key}")
        try:
            handle = _open_regular(self.root, self._parts(bucket, key))
        except OSError as exc:  # gone, or swapped for something else since
            raise ObjectMissing(f"no object {bucket}/{key}") from exc
        left = math.inf if length is None else length
        with handle:
            handle.seek(offset)
            while left > 0 and (chunk := handle.read(int(min(CHUNK, left)))):
                left -= len(chunk)
                yield chunk

    def list(self, bucket: str, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        base = self.root / bucket
        top = base / prefix.rpartition("/")[0]  # where the prefix's folders start: no walk of the rest
        for dirpath, dirs, files in os.walk(top):
            folder = Path(dirpath).relative_to(base).as_posix()
            folder = "" if folder == "." else folder + "/"
            # In key order, as S3 lists (a folder's keys come together); folders wholly before
            # ``start_after`` or outside ``prefix`` are not walked into.
            dirs[:] = sorted(d for d in dirs if _may_hold(folder + d + "/", prefix, start_after))
            for name in sorted(files):
                key = folder + name
                if key.startswith(prefix) and key > start_after and (info := self._listed(bucket, key)) is not None:
                    yield info

    def _listed(self, bucket: str, key: str) -> ObjectInfo | None:
        """What ``list`` shows of a file: nothing for one whose name no object key may have."""
        try:
            return self.stat(bucket, key)
        except InvalidInput as exc:
            log.warning("%s: skipped (%s)", bucket, exc)
            return None

    def delete(self, bucket: str, key: str) -> None:
        """The object and its sidecar, each removed through no link (``_folders``): a folder
        swapped for a link never has what it points to removed."""
        for parts, bucket_at in ((self._parts(bucket, key), 0), ([META_DIR, *self._sidecar_parts(bucket, key)], 1)):
            try:
                with _folders(self.root, parts[:-1]) as chain:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(parts[-1], dir_fd=chain[-1])
                    _prune_empty(chain, parts, bucket_at)
            except FileNotFoundError:  # its folder is gone already
                continue
            except OSError as exc:  # a link on the way, or not a folder: nothing of its is removed
                log.warning("%s/%s: not removed (%s)", bucket, key, exc.strerror or exc)

    def download_url(self, bucket: str, key: str) -> str | None:
        return None

    def incomplete_uploads(self, bucket: str) -> Iterator[IncompleteUpload]:
        """Temporary files of writes whose process died before it committed or aborted them."""
        for path in (self.root / TMP_DIR).glob(f"{_TMP_PREFIX}{bucket}-*"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # committed or aborted just now
            yield IncompleteUpload(bucket, "", path.name, st.st_size, st.st_mtime)

    def abort_upload(self, upload: IncompleteUpload) -> None:
        (self.root / TMP_DIR / upload.upload_id).unlink(missing_ok=True)

    def adopt(self, bucket: str, key: str) -> ObjectInfo | None:
        """Record and announce a file that was put into a bucket folder by hand."""
        info = self.stat(bucket, key)
        st = self.regular(bucket, key)
        if info is not None and st is not None:
            self._publish(info, st)
        return info

    def is_announced(self, bucket: str, key: str) -> bool:
        """True if the current content of this file has been announced already (or never will be:
        it is gone, or not a regular file)."""
        st = self.regular(bucket, key)
        return st is None or self._read_sidecar(bucket, key, st) is not None

    def _read_sidecar(self, bucket: str, key: str, st: os.stat_result) -> ObjectInfo | None:
        try:
            meta = json.loads(self.meta_path(bucket, key).read_text())
        except (OSError, ValueError):  # none yet (or unreadable): the object is told of again
            return None
        if meta.get("size") != st.st_size or meta.get("mtime_ns") != st.st_mtime_ns:
            return None  # the file was replaced by hand since the store wrote it
        return ObjectInfo(bucket, key, st.st_size, meta["etag"], meta["content_type"], meta["metadata"], st.st_mtime)

    def _publish(self, info: ObjectInfo, st: os.stat_result) -> None:
        """Announce the object, then write its sidecar (which says it was announced): an
        announcement that fails leaves it unannounced, to be tried again; one told twice is harmless
        (a job's id comes from its object's eTag)."""
        if self._notify is not None:
            self._notify(
                access_record(
                    info.bucket,
                    info.key,
                    size=info.size,
                    etag=info.etag,
                    content_type=info.content_type,
                    metadata=info.metadata,
                )
            )
        sidecar = self.meta_path(info.bucket, info.key)
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "etag": info.etag,
            "content_type": info.content_type,
            "metadata": info.metadata,
        }
        _atomic_write(sidecar, json.dumps(meta).encode(), self.root / TMP_DIR)


class _LocalWriter:
    def __init__(self, store: LocalStore, bucket: str, key: str, content_type: str, metadata: dict[str, str]):
        self._store, self._bucket, self._key = store, bucket, key
        self._content_type, self._metadata = content_type, metadata
        check_key(key)  # refused before a byte is written
        fd, tmp = tempfile.mkstemp(dir=store.root / TMP_DIR, prefix=f"{_TMP_PREFIX}{bucket}-")
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._md5.update(data)
        self.size += len(data)

    def commit(self) -> ObjectInfo:
        """Put the object in its place, through no link (``_folders``): a folder swapped for a link
        while it was written refuses it (``InvalidInput``), whatever it points to."""
        self._file.close()
        os.chmod(self._tmp, FILE_MODE)
        parts = LocalStore._parts(self._bucket, self._key)
        try:
            with _folders(self._store.root, parts[:-1], create=True) as chain:
                os.replace(self._tmp, parts[-1], dst_dir_fd=chain[-1])
                st = os.stat(parts[-1], dir_fd=chain[-1], follow_symlinks=False)
        except NotADirectoryError as exc:
            self.abort()
            raise InvalidInput(
                f"a folder on the way to {self._key} is a link or a file; nothing is written there"
            ) from exc
        except OSError as exc:
            self.abort()
            if exc.errno == errno.ENAMETOOLONG:
                raise InvalidInput(f"a name in {self._key} is longer than {MAX_NAME_BYTES} bytes") from exc
            if exc.errno != errno.ELOOP:
                raise
            raise InvalidInput(f"a folder on the way to {self._key} is a link; nothing is written through it") from exc
        etag = self._md5.hexdigest()
        info = ObjectInfo(self._bucket, self._key, self.size, etag, self._content_type, self._metadata, st.st_mtime)
        self._store._publish(info, st)
        return info

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)  # in the store's own .tmp folder


@contextmanager
def _folders(root: Path, parts: Sequence[str], *, create: bool = False) -> Iterator[list[int]]:
    """Descriptors of ``root`` and of each folder of ``parts`` below it, each opened relative to the
    one before and never through a link (``O_NOFOLLOW``): what is read, written or removed there
    stays under ``root`` whatever is swapped in meanwhile (a dropper who replaces an inbox folder
    with a link to another job's, or to anywhere, while its job runs). A link on the way, or a
    folder missing (unless ``create``), is ``OSError``."""
    chain = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=chain[-1])
            chain.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=chain[-1]))
        yield chain
    finally:
        for fd in chain:
            os.close(fd)


def _prune_empty(chain: list[int], parts: Sequence[str], bucket_at: int) -> None:
    """Remove the folders of ``parts`` that a deletion left empty, deepest first, up to the
    bucket's own (``parts[bucket_at]``), which stays; S3 has no empty folders. ``chain[d]`` is
    the folder that holds ``parts[d]``."""
    for depth in range(len(parts) - 2, bucket_at, -1):
        try:
            os.rmdir(parts[depth], dir_fd=chain[depth])
        except OSError:  # not empty (or gone): stop here
            return


def _atomic_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="meta-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        os.fchmod(handle.fileno(), FILE_MODE)  # readable as its object is, not mkstemp's 0600
    os.replace(tmp, path)


def _open_regular(root: Path, parts: Sequence[str]) -> BinaryIO:
    """Open ``root``/``parts`` without following a link, at any step, and without blocking (a FIFO
    would wait for a writer), then make sure what was opened is a regular file."""
    with _folders(root, parts[:-1]) as chain:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=chain[-1])
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode) or opened.st_nlink != 1:  # a hard link may reach any file of its disk
        os.close(fd)
        raise IsADirectoryError(f"{'/'.join(parts)} is not a regular file")
    return os.fdopen(fd, "rb")


def _md5_file(root: Path, parts: Sequence[str]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with _open_regular(root, parts) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _guess_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def _may_hold(folder: str, prefix: str, start_after: str) -> bool:
    """Whether keys under ``folder`` (ending in "/") can be under ``prefix`` and after ``start_after``."""
    if not (folder.startswith(prefix) or prefix.startswith(folder)):
        return False
    return not start_after or folder > start_after or start_after.startswith(folder)
