"""Started work goes first (issue 32): a long job's completion under a steady load of short jobs,
against the same job alone, on the embedded stack.

    .venv/bin/python bench/priority.py [--minutes 4] [--shard-seconds 30] [--every 1.5] [--model tiny.en]

One worker with one slot (``MAX_CONCURRENCY=1``), so that the queues' order is all that decides
what runs next. The long job is the lecture's first ``--minutes`` (split into shards of about
``--shard-seconds``, ``SHARD_MIN_SECONDS`` below its length). First it runs alone; then again,
while a short clip is submitted every ``--every`` seconds, from its submission to its end. A worker
takes the shards of a split job before any new job, so under load the long job waits only for the
short job running when it was split, and a shard's worth of short jobs at most: its time under
load stays near its time alone (target: at most 1.5 times). Before, every short job submitted
while its shards waited went first, and under a load that never lets up it never ended.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import SPEECH, Stack
from tests.helpers import lecture

TARGET = 1.5


def run_long(stack: Stack, clip: Path) -> float:
    job_id, began, _ = stack.submit(clip)
    return stack.wait_for(job_id, {"finished"}, 0.05, timeout=3600) - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--shard-seconds", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=1.5, help="seconds between two short jobs under load")
    parser.add_argument("--model", default="tiny.en")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-priority-") as tmp:
        folder = Path(tmp)
        clip = folder / "long.mp3"
        lecture(clip, args.minutes * 60)
        settings = {"SHARD_MIN_SECONDS": str(args.shard_seconds * 2), "SHARD_SECONDS": str(args.shard_seconds)}
        stack = Stack(folder, args.model, 2, **settings)
        try:
            stack.idle()
            alone = run_long(stack, clip)
            stack.idle()
            stop, shorts = threading.Event(), []

            def load() -> None:
                while not stop.wait(args.every):
                    shorts.append(stack.submit(SPEECH / "upload.mp3")[0])

            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            time.sleep(args.every * 2)  # the load is steady before the long job comes
            loaded = run_long(stack, clip)
            stop.set()
            loader.join()
            done = sum(stack.status(job_id) == "finished" for job_id in shorts)
        finally:
            stack.close()
    ratio = loaded / alone
    verdict = "met" if ratio <= TARGET else "MISSED"
    print(f"\na {args.minutes:g}-minute job in shards of ~{args.shard_seconds:g} s, one slot, {args.model}\n")
    print(f"{'measure':<52}{'seconds':>10}")
    print(f"{'alone: submit -> finished':<52}{alone:>10.1f}")
    print(f"{f'with a short job every {args.every:g} s: submit -> finished':<52}{loaded:>10.1f}")
    print(f"{'under load / alone':<52}{ratio:>10.2f}   <= {TARGET}: {verdict}")
    print(f"{'short jobs submitted meanwhile (finished by the end)':<52}{len(shorts):>10} ({done})")


if __name__ == "__main__":
    main()
