"""Schemathesis deep over every operation of the API, against the budget the test suite runs.

    .venv/bin/python bench/fuzz.py [--examples 30,300] [--seed 20261124]

Runs ``tests/fuzzing.py`` (a real API process on a real Redis and a local store; no worker) once per
budget in ``--examples`` (examples an operation), each on a fresh Redis database, and prints the
requests generated, the seconds taken and whether any answered a 5xx. The first budget is the
suite's (``tests/ingest_api/test_schemathesis.py``); the others are the deep runs it stands in for.
Exit 1 if any run found a 5xx.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embedded.redis_server import start_redis, stop_redis
from tests.fuzzing import SEED, fuzz_api


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", default="30,300", help="examples an operation, one run each (comma-separated)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    process, url = start_redis(folder / "redis", appendonly=False)
    failed = False
    print(f"{'examples/op':>11} {'generated':>9} {'seconds':>8} {'requests/s':>10}  5xx")
    try:
        for n, examples in enumerate(int(e) for e in args.examples.split(",")):
            run = folder / f"run-{examples}"
            run.mkdir()
            fuzzed = fuzz_api(url.rsplit("/", 1)[0] + f"/{n % 16}", run, max_examples=examples, seed=args.seed)
            found = "none" if fuzzed.returncode == 0 else "FOUND (report above)"
            if fuzzed.returncode:
                print(fuzzed.output)
                failed = True
            rate = fuzzed.generated / fuzzed.seconds
            print(f"{examples:>11} {fuzzed.generated:>9} {fuzzed.seconds:>8.1f} {rate:>10.1f}  {found}", flush=True)
    finally:
        stop_redis(process)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
