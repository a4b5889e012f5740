"""Memory bounded by design (issue 15, finding 6): a small file that decodes to hours of audio
does not make the worker hold it all. The real stack, the real worker process, its RSS watched."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest

from tests.conftest import running_stack
from tests.helpers import SPEECH, Receiver
from tests.helpers import silence as make_silence
from tests.test_pipeline import upload

HOURS = 3.9
MIB = 2**20


@pytest.mark.timeout(900)
def test_hours_of_silence_in_a_small_file_keep_the_worker_within_600_mib_of_idle(
    tmp_path: Path, redis_server: str, receiver: Receiver
) -> None:
    silence = make_silence(tmp_path / "long-silence.flac", int(HOURS * 3600), "-compression_level", "8")
    assert silence.stat().st_size < 4 * MIB  # a few MiB that decode to 450 MB of 16-bit audio
    redis_url = redis_server.rsplit("/", 1)[0] + "/12"
    env = {"MAX_AUDIO_SECONDS": "14400", "JOB_TIMEOUT": "1800", "FFMPEG_TIMEOUT": "600"}
    with running_stack(tmp_path / "stack", redis_url, receiver, **env) as stack:
        warm = upload(stack, (SPEECH / "upload.mp3").read_bytes(), "warm.mp3", language="en")
        assert receiver.wait_for(warm)["json"]["status"] == "finished"  # the model's own buffers exist now
        worker = stack.service("gpu_worker")
        idle = worker.memory_info().rss
        peak = [idle]
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                try:
                    peak.append(worker.memory_info().rss)
                except psutil.Error:
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            job_id = upload(stack, silence.read_bytes(), "long-silence.flac", language="en")
            payload = receiver.wait_for(job_id, timeout=800)["json"]
        finally:
            done.set()
            watcher.join()
    assert payload["status"] == "finished", payload
    assert payload["duration"] == pytest.approx(HOURS * 3600, abs=1)
    assert payload["warnings"] == ["no speech was found in the audio: the transcript is empty"]
    grew = (max(peak) - idle) / MIB
    print(f"worker RSS: idle {idle / MIB:.0f} MiB, peak {max(peak) / MIB:.0f} MiB, grew {grew:.0f} MiB")  # pytest -s
    assert grew <= 600, f"the worker grew by {grew:.0f} MiB over its idle {idle / MIB:.0f} MiB"
