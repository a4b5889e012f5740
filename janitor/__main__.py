"""``transcribe-janitor``: run now, then every ``JANITOR_INTERVAL`` seconds; ``--once`` runs once and
``--dry-run`` reports without changing anything (also ``JANITOR_DRY_RUN=true``)."""

import argparse
import logging
import signal
import threading

from janitor.reconcile import Limits, Reconciler
from janitor.settings import JanitorSettings
from transcribe_common.jobstate import JobStates
from transcribe_common.runtime import connect_redis, open_store, setup_logging
from transcribe_common.scratch import sweep_scratch

log = logging.getLogger("janitor")


def main() -> None:
    parser = argparse.ArgumentParser(prog="transcribe-janitor", description=__doc__)
    parser.add_argument("--once", action="store_true", help="one run, then exit")
    parser.add_argument("--dry-run", action="store_true", help="report only; remove and announce nothing")
    args = parser.parse_args()
    settings = JanitorSettings()
    setup_logging("janitor", settings.log_level)
    dry_run = args.dry_run or settings.janitor_dry_run
    conn = connect_redis(settings)
    store = open_store(settings, conn)
    states = JobStates(conn, store, settings.minio_bucket)
    limits = Limits(settings.orphan_after, settings.lost_after, settings.result_retention_days, dry_run)
    reconciler = Reconciler(conn, store, settings.minio_bucket, limits)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    log.info("every %d s: scratch %s, jobs bucket %s%s", settings.janitor_interval, settings.scratch_dir,
             settings.minio_bucket, " (dry run)" if dry_run else "")  # fmt: skip
    while not stopping.is_set():
        try:
            if not dry_run:
                report = sweep_scratch(settings.scratch_dir, states, max_age=settings.scratch_max_age)
                log.info("scratch: removed %d folders, freed %d bytes, kept %d running",
                         report.removed, report.bytes_freed, report.kept_running)  # fmt: skip
            log.info("jobs bucket%s: %s", " (dry run)" if dry_run else "", reconciler.run().summary())
        except Exception:
            log.exception("janitor run failed; trying again next round")
        if args.once:
            return
        stopping.wait(settings.janitor_interval)


if __name__ == "__main__":
    main()
