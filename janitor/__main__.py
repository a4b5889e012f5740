"""``transcribe-janitor``: run now, then every ``JANITOR_INTERVAL`` seconds; ``--once`` runs once and
``--dry-run`` reports without changing anything (also ``JANITOR_DRY_RUN=true``).

Started by hand from the folder a running embedded stack runs in, it acts on that stack (its
``data/stack.env``, ``transcribe_common.settings``). A command that cannot do its work (Redis or
the store away for ``--once`` or ``--replay-dead``, a setting that does not validate) says why in
one line and exits 1; a ``--once`` run that counted errors exits 1 too.
"""

import argparse
import logging
import sys
import threading

import redis
from pydantic import ValidationError

from janitor.reconcile import Janitor, Limits
from janitor.report import Report
from janitor.settings import JanitorSettings
from transcribe_common import deadletters
from transcribe_common.ending import Ending
from transcribe_common.errors import PipelineError
from transcribe_common.jobqueue import worker_alive
from transcribe_common.jobstate import JobStates
from transcribe_common.logs import redact, setup_logging
from transcribe_common.ops import Heartbeat, redis_and_store, serve_ops
from transcribe_common.runtime import command_line, connect_redis, open_store, stop_on_signals
from transcribe_common.scratch import sweep_scratch

log = logging.getLogger("janitor")
FAILURES = (redis.RedisError, PipelineError, OSError)  # what a run meets when a service is away


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--once", action="store_true", help="one run, then exit")
    parser.add_argument("--dry-run", action="store_true", help="report only; remove and announce nothing")
    parser.add_argument(
        "--replay-dead", action="store_true", help="put every dead letter back on the events list, then exit"
    )
    args = command_line("transcribe-janitor", __doc__, parser)
    try:
        settings = JanitorSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        parser.exit(1, f"transcribe-janitor: {'_'.join(map(str, first['loc'])).upper()}: {first['msg']}\n")
    setup_logging("janitor", settings.log_level, settings.log_format)
    # --replay-dead stops on Ctrl-C as any command does.
    stopping = threading.Event() if args.replay_dead else stop_on_signals()
    try:
        sys.exit(serve(args, settings, stopping))
    except FAILURES as exc:
        log.debug("the janitor stopped", exc_info=True)
        parser.exit(1, f"transcribe-janitor: {describe(exc, settings)}\n")


def describe(exc: BaseException, settings: JanitorSettings) -> str:
    if isinstance(exc, redis.ConnectionError):
        return f"cannot reach Redis at {redact(settings.redis_url)} (REDIS_URL; is the stack running?): {exc}"
    return f"{type(exc).__name__}: {exc}"


def serve(args: argparse.Namespace, settings: JanitorSettings, stopping: threading.Event) -> int:
    """What the command line asks: one run, the dead letters replayed, or a run each
    ``JANITOR_INTERVAL`` until ``stopping`` is set."""
    dry_run = args.dry_run or settings.janitor_dry_run
    conn = connect_redis(settings, "janitor")
    if args.replay_dead:
        print(f"{deadletters.replay(conn, everything=True)} dead letters replayed")
        return 0
    if args.once:
        conn.ping()  # a one-off run with no Redis can do nothing: say so, rather than count an error
    store = open_store(settings, conn)
    states = JobStates.for_settings(conn, store, settings)
    janitor = Janitor(Ending(conn, states, store, settings), Limits.from_settings(settings, dry_run))
    # Alive while runs end: a run over a large bucket may take a while, hence the hour at least.
    heartbeat = Heartbeat(stuck_after=max(3 * settings.janitor_interval, 3600))
    if not args.once:
        probes = redis_and_store(conn, store, settings.minio_bucket)
        serve_ops("janitor", settings.metrics_host, settings.janitor_metrics_port, heartbeat, probes)
    log.info("every %d s: scratch %s, buckets %s and %s, INBOX_AFTER=%s%s", settings.janitor_interval,
             settings.scratch_dir, settings.minio_bucket, settings.minio_inbox_bucket, settings.inbox_after,
             " (dry run)" if dry_run else "")  # fmt: skip
    while True:  # one run at least: a --once stopped half way still ends its run, and says how it went
        report = one_run(janitor, once=args.once)
        if not dry_run:
            sweep_scratch_into(report, settings, states, conn)
        log.info("run%s: %s", " (dry run)" if dry_run else "", report.summary())
        report.export(dry_run)
        heartbeat.beat()
        if args.once:
            return 1 if report.counts["errors"] else 0
        if stopping.wait(settings.janitor_interval):
            return 0


def serve_every(settings: JanitorSettings, stopping: threading.Event) -> int:
    """The janitor as a service, as with no options (``embedded.light`` runs it so)."""
    return serve(argparse.Namespace(once=False, dry_run=False, replay_dead=False), settings, stopping)


def one_run(janitor: Janitor, *, once: bool) -> Report:
    try:
        return janitor.run()
    except FAILURES as exc:  # Redis or the store away for the whole run: the next one tries again
        if once:
            raise
        log.error("janitor run failed (%s); trying again next round", exc)
    except Exception:
        if once:
            raise
        log.exception("janitor run failed; trying again next round")
    report = Report()
    report.count("errors")
    return report


def sweep_scratch_into(report: Report, settings: JanitorSettings, states: JobStates, conn: redis.Redis) -> None:
    """The workers' scratch folders on this machine: those of jobs that ended or that no live
    worker runs, older than ``SCRATCH_MAX_AGE``."""
    try:
        alive = lambda worker: worker_alive(conn, worker)  # noqa: E731
        swept = sweep_scratch(settings.scratch_dir, states, max_age=settings.scratch_max_age, alive=alive)
    except Exception:
        log.exception("scratch sweep failed; trying again next round")
        report.count("errors")
        return
    report.counts["scratch_removed"] += swept.removed
    report.bytes_freed += swept.bytes_freed


if __name__ == "__main__":
    main()
