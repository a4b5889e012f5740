"""A stand-in for MinIO's bucket notifications, for tests on moto (which has none).

It polls the buckets and, for each new object that ``infra/minio-notify.json``'s rules select,
RPUSHes a record built from a payload MinIO itself wrote (``fixtures/minio_events/put_inbox.json``):
key query-escaped, metadata in Go canonical case, empty fields left out.
"""

from __future__ import annotations

import copy
import json
import threading
import urllib.parse
from pathlib import Path

import redis

from transcribe_common import keys
from transcribe_common.store.s3 import S3Store

ROOT = Path(__file__).parent.parent
TEMPLATE = json.loads((ROOT / "tests" / "fixtures" / "minio_events" / "put_inbox.json").read_text())
RULES = json.loads((ROOT / "infra" / "minio-notify.json").read_text())


def minio_record(bucket: str, key: str, size: int, etag: str, content_type: str, metadata: dict[str, str]) -> str:
    element = copy.deepcopy(TEMPLATE)
    record = element[0]["Event"][0]
    record["s3"]["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    user_metadata = {"content-type": content_type} | {
        "X-Amz-Meta-" + "-".join(p.capitalize() for p in name.split("-")): value for name, value in metadata.items()
    }
    record["s3"]["object"] = {
        "key": urllib.parse.quote_plus(key),
        "size": size,
        "eTag": etag,
        "contentType": content_type,
        "userMetadata": user_metadata,
        "sequencer": record["s3"]["object"]["sequencer"],
    }
    return json.dumps(element, separators=(",", ":"), ensure_ascii=False)


def selected(role: str, key: str) -> bool:
    for rule in RULES[role]["QueueConfigurations"]:
        filters = {f["Name"]: f["Value"] for f in rule.get("Filter", {}).get("Key", {}).get("FilterRules", [])}
        if key.startswith(filters.get("prefix", "")) and key.endswith(filters.get("suffix", "")):
            return True
    return False


class MinioNotifier:
    def __init__(self, store: S3Store, conn: redis.Redis, buckets: dict[str, str]) -> None:
        self.store, self.conn, self.buckets = store, conn, buckets  # role -> bucket
        self.seen: set[tuple[str, str, str]] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> MinioNotifier:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stopping.wait(0.1):
            for role, bucket in self.buckets.items():
                for info in list(self.store.list(bucket)):
                    if (bucket, info.key, info.etag) in self.seen or not selected(role, info.key):
                        continue
                    self.seen.add((bucket, info.key, info.etag))
                    full = self.store.stat(bucket, info.key)
                    if full is not None:
                        record = minio_record(bucket, info.key, full.size, full.etag, full.content_type, full.metadata)
                        self.conn.rpush(keys.EVENTS, record)
