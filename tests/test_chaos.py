"""The chaos run of issue 16 (``bench/chaos.py``) as part of the suite: 30 jobs and 12 faults drawn
from one seed, every kind of fault among them (issue 32's too: a worker stopped in its wait on the
queues then killed, a drain cut short by a kill, Redis killed, the worker cut off from Redis), on
the embedded stack over S3 (moto behind a fault-injecting proxy), must end with every job ended
once, with its results, its status.json and its webhook, and nothing left behind.

The run waits on events only (every job ended, every webhook answered, every queue drained, two
more janitor runs), so a busy machine makes it slower, never red. A wait gives up only when what it
waits for has not changed for five minutes; that, its other deadlines (ten minutes for the stack to
come up, twenty to settle) and this test's timeout are last resorts, far past what a healthy run
needs (about two minutes here, idle or with both cores kept busy)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos_faults import KINDS

ROOT = Path(__file__).parent.parent
SEED, JOBS, FAULTS = 29, 30, 12  # a seed whose twelve faults take in every kind


@pytest.mark.timeout(3600)
def test_a_short_seeded_chaos_run_loses_nothing(tmp_path: Path) -> None:
    output = tmp_path / "chaos.txt"
    command = [sys.executable, str(ROOT / "bench" / "chaos.py")]
    with output.open("w") as out:
        done = subprocess.run(
            [*command, "--seed", str(SEED), "--jobs", str(JOBS), "--faults", str(FAULTS)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    lines = output.read_text().splitlines()
    summary = f"{JOBS} jobs, {FAULTS} faults, 0 lost, 0 duplicated, 0 inconsistent"
    assert done.returncode == 0, "\n".join(lines[-100:])
    assert lines[-1] == summary, "\n".join(lines[-100:])
    landed = dict(re.findall(r"\]\s+(\w+): (\d+) landed$", "\n".join(lines), re.MULTILINE))
    assert set(landed) == set(KINDS), landed
    assert [kind for kind, count in landed.items() if count == "0"] == [], landed
