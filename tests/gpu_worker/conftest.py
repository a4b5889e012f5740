from __future__ import annotations

import pytest
from faster_whisper import WhisperModel

from gpu_worker.whisper import load_models, place


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, WhisperModel]:
    """The real tiny.en, on the CPU with three workers, for tests that build a worker in-process."""
    placement = place("cpu", "default", None)
    cache = tmp_path_factory.mktemp("models")
    return load_models({"tiny.en": "tiny.en"}, cache, placement=placement, cpu_threads=1, concurrency=3)
