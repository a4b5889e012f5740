"""``transcribe-janitor``: sweep now, then every ``JANITOR_INTERVAL`` seconds."""

import logging
import signal
import threading

from janitor.settings import JanitorSettings
from transcribe_common.jobstate import JobStates
from transcribe_common.runtime import connect_redis, open_store, setup_logging
from transcribe_common.scratch import sweep_scratch

log = logging.getLogger("janitor")


def main() -> None:
    settings = JanitorSettings()
    setup_logging("janitor", settings.log_level)
    conn = connect_redis(settings)
    states = JobStates(conn, open_store(settings, conn), settings.minio_bucket)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    log.info(
        "sweeping %s every %d s (max age %d s)",
        settings.scratch_dir,
        settings.janitor_interval,
        settings.scratch_max_age,
    )
    while not stopping.is_set():
        try:
            report = sweep_scratch(settings.scratch_dir, states, max_age=settings.scratch_max_age)
            log.info(
                "sweep: removed %d folders, freed %d bytes, kept %d running",
                report.removed,
                report.bytes_freed,
                report.kept_running,
            )
        except Exception:
            log.exception("sweep failed; trying again next round")
        stopping.wait(settings.janitor_interval)


if __name__ == "__main__":
    main()
