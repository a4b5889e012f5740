"""``transcribe-watcher``: announce files that people copy into the local inbox folder.

It does for the folder what MinIO's notification does for a bucket: each new object becomes an
access-format record on the events list. A copy in progress shows up as ``added`` long before it
is complete, and no event says "closed", so a file is announced only once its size and mtime have
held still for ``SETTLE_SECONDS``. Files the store wrote itself were announced by the store and are
recognised by their sidecar. At start the whole inbox is scanned, so files dropped while the stack
was down are picked up too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from watchfiles import Change, watch

from transcribe_common import keys
from transcribe_common.errors import InvalidInput
from transcribe_common.logs import setup_logging
from transcribe_common.runtime import command_line, connect_redis, stop_on_signals
from transcribe_common.settings import CommonSettings
from transcribe_common.store.local import LocalStore, check_key

log = logging.getLogger(__name__)
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", "~")
POLL_SECONDS = 2.0  # between looks through an inbox that cannot be watched
REWATCH_SECONDS = 60.0  # before the next try to watch it


class WatcherSettings(CommonSettings):
    settle_seconds: float = Field(2.0, gt=0, description="How long a new file must hold still before it is taken.")


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


class InboxWatcher:
    def __init__(self, store: LocalStore, bucket: str, settle_seconds: float) -> None:
        self.store, self.bucket, self.settle_seconds = store, bucket, settle_seconds
        self.folder = store.root / bucket
        self.pending: dict[str, _Seen] = {}
        self.refused: set[Path] = set()

    def run(self, stopping: threading.Event) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        while not stopping.is_set():
            self.scan()
            try:
                self.follow(stopping)
            except RuntimeError as exc:
                # watchfiles cannot watch a tree that holds a name it cannot decode (a folder named
                # in Latin-1, say): it stops at once, and again at each try while the name is there.
                log.warning(
                    "the inbox cannot be watched (%s); looking through it every %g s instead", exc, POLL_SECONDS
                )
                self.poll(stopping, REWATCH_SECONDS)

    def poll(self, stopping: threading.Event, seconds: float) -> None:
        """Scan the inbox every ``POLL_SECONDS`` for ``seconds``."""
        until = time.monotonic() + seconds
        while time.monotonic() < until and not stopping.wait(POLL_SECONDS):
            self.scan()

    def follow(self, stopping: threading.Event) -> None:
        for changes in watch(
            self.folder, stop_event=stopping, debounce=100, step=50, rust_timeout=250, yield_on_timeout=True
        ):
            for change, path in changes:
                if change == Change.deleted:
                    continue
                if Path(path).is_dir() and not Path(path).is_symlink():
                    # Files made in a new folder before its watch was set are never reported: look.
                    self.look_in(Path(path))
                else:
                    self.consider(Path(path))
            self.settle()

    def scan(self) -> None:
        self.look_in(self.folder)
        self.settle()

    def look_in(self, folder: Path) -> None:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                self.consider(Path(dirpath) / name)

    def consider(self, path: Path) -> None:
        try:
            self._consider(path)
        except Exception:  # one file's trouble (a name the store refuses, say) never stops the watch
            log.exception("%s: not taken", path)

    def _consider(self, path: Path) -> None:
        key = self._key(path)
        if key is None or key in self.pending or self.store.is_announced(self.bucket, key):
            return  # is_announced also says so of what is not a regular file: never taken
        st = self.store.regular(self.bucket, key)
        if st is not None:
            self.pending[key] = _Seen(st.st_size, st.st_mtime_ns, time.monotonic())

    def settle(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key, seen in list(self.pending.items()):
            try:
                self._settle(key, seen, now)
            except Exception as exc:  # Redis away, say: tried again once it has held still again
                log.warning("%s/%s: not announced yet (%s); trying again", self.bucket, key, exc)
                self.pending[key] = _Seen(seen.size, seen.mtime_ns, now)

    def _settle(self, key: str, seen: _Seen, now: float) -> None:
        st = self.store.regular(self.bucket, key)
        if st is None:  # gone, or replaced by a link or the like
            del self.pending[key]
            return
        if (st.st_size, st.st_mtime_ns) != (seen.size, seen.mtime_ns):
            self.pending[key] = _Seen(st.st_size, st.st_mtime_ns, now)
        elif now - seen.since >= self.settle_seconds:
            del self.pending[key]
            if not self.store.is_announced(self.bucket, key):
                self.store.adopt(self.bucket, key)
                log.info("announced %s/%s (%d bytes)", self.bucket, key, st.st_size)

    def _key(self, path: Path) -> str | None:
        try:
            rel = path.relative_to(self.folder)
        except ValueError:
            return None
        if path.is_dir() or any(p.startswith(".") for p in rel.parts) or rel.name.endswith(PARTIAL_SUFFIXES):
            return None
        try:
            return check_key(rel.as_posix()).as_posix()
        except InvalidInput as exc:
            if path not in self.refused:  # said once, not at each look
                self.refused.add(path)
                log.warning("%s: skipped (%s)", self.bucket, exc)
            return None


def main() -> None:
    command_line("transcribe-watcher", __doc__)
    settings = WatcherSettings()
    setup_logging("watcher", settings.log_level, settings.log_format)
    serve(settings, stop_on_signals())


def serve(settings: WatcherSettings, stopping: threading.Event) -> int:
    conn = connect_redis(settings, "watcher")
    store = LocalStore(settings.store_dir, notify=lambda record: conn.rpush(keys.EVENTS, record))
    watcher = InboxWatcher(store, settings.minio_inbox_bucket, settings.settle_seconds)
    log.info("watching %s", watcher.folder)
    watcher.run(stopping)
    return 0


if __name__ == "__main__":
    main()
