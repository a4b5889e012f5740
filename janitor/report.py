"""What one janitor run did: counted by action, with the bytes it freed; logged and exported to
Prometheus (``transcribe_janitor_*`` on ``JANITOR_METRICS_PORT``, served by ``transcribe_common.ops``).
A dry run counts what it would have done, under ``dry_run="true"``."""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

ACTIONS = Counter(
    "transcribe_janitor_actions_total",
    "Things the janitor removed, failed, announced again or recovered, by action.",
    ["action", "dry_run"],
)
BYTES_FREED = Counter("transcribe_janitor_bytes_freed_total", "Bytes the janitor freed.", ["dry_run"])
RUNS = Counter("transcribe_janitor_runs_total", "Janitor runs, by outcome.", ["outcome"])
LAST_RUN = Gauge("transcribe_janitor_last_run_timestamp_seconds", "When the last janitor run ended.")


@dataclass
class Report:
    counts: Tally[str] = field(default_factory=Tally)
    bytes_freed: int = 0

    def count(self, action: str, freed: int = 0) -> None:
        self.counts[action] += 1
        self.bytes_freed += freed

    def summary(self) -> str:
        counted = ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items())) or "nothing to do"
        return f"{counted}; {self.bytes_freed} bytes freed"

    def export(self, dry_run: bool) -> None:
        label = str(dry_run).lower()
        for action, n in self.counts.items():
            ACTIONS.labels(action=action, dry_run=label).inc(n)
        BYTES_FREED.labels(dry_run=label).inc(self.bytes_freed)
        RUNS.labels(outcome="errors" if self.counts["errors"] else "ok").inc()
        LAST_RUN.set(time.time())
