"""Schemathesis over every operation of the API (``tests/fuzzing.py``), none of which may answer
a 5xx, within a budget that suits every change: a fixed seed and 30 examples an operation. The
deep run is ``python3 dev.py bench fuzz``."""

from __future__ import annotations

from pathlib import Path

from tests.fuzzing import fuzz_api


def test_schemathesis_finds_no_5xx(redis_server: str, tmp_path: Path) -> None:
    fuzzed = fuzz_api(redis_server.rsplit("/", 1)[0] + "/5", tmp_path, max_examples=30)
    assert fuzzed.returncode == 0, fuzzed.output
    assert fuzzed.generated >= 900, fuzzed.output  # it really ran: every phase, every operation
