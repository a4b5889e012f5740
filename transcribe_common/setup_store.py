"""``transcribe-setup``: make a MinIO deployment ready for the pipeline. Idempotent; run it at
every deploy (compose runs it as a one-shot service before the others start).

It waits until MinIO answers, creates the jobs and inbox buckets, and applies the bucket
notification rules of ``infra/minio-notify.json``: objects created in the inbox, and manifests
created in the jobs bucket, are announced to MinIO's Redis target (``arn:minio:sqs::PRIMARY:redis``).
That target itself is configured on the MinIO server by environment (see ``infra/compose.yaml``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pydantic import Field

from transcribe_common.logs import setup_logging
from transcribe_common.runtime import command_line, open_s3_store
from transcribe_common.settings import CommonSettings
from transcribe_common.store.s3 import load_notify_file

log = logging.getLogger("setup")


class SetupSettings(CommonSettings):
    minio_notify_config: Path = Field(Path("infra/minio-notify.json"), description="Bucket notification rules.")
    setup_timeout: float = Field(120.0, description="Seconds to wait for MinIO to answer.")


def run(settings: SetupSettings, *, notifications: bool = True) -> None:
    store = open_s3_store(settings)
    store.wait_ready(settings.setup_timeout)
    rules = load_notify_file(settings.minio_notify_config)
    for role, bucket in (("jobs", settings.minio_bucket), ("inbox", settings.minio_inbox_bucket)):
        store.ensure_bucket(bucket)
        if notifications:
            store.set_notifications(bucket, rules[role])
        log.info("bucket %s ready (%s)%s", bucket, role, "" if notifications else ", notifications left as they are")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-notifications", action="store_true", help="only create the buckets")
    args = command_line("transcribe-setup", __doc__, parser)
    settings = SetupSettings()
    setup_logging("setup", settings.log_level, settings.log_format)
    run(settings, notifications=not args.no_notifications)


if __name__ == "__main__":
    main()
