"""Decoding any audio or video into the 16 kHz mono float samples Whisper takes.

ffmpeg writes raw 16-bit PCM to a file in the job's scratch folder rather than a pipe, so that a
long input never sits twice in memory, and it runs under a hard time limit: a source that never
ends (a live stream, a broken file that makes ffmpeg spin) is killed, not waited for.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from transcribe_common.errors import PermanentError

SAMPLE_RATE = 16_000


def decode(source: Path, scratch: Path, *, timeout: float) -> np.ndarray:
    pcm = scratch / "audio.s16le"
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        *("-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
        *("-i", str(source)),
        *("-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", str(pcm)),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PermanentError(
            f"decoding took longer than FFMPEG_TIMEOUT ({timeout:g} s); is the source endless?"
        ) from exc
    if done.returncode != 0:
        raise PermanentError(f"could not decode the input as audio: {_last_line(done.stderr)}")
    samples = np.fromfile(pcm, dtype=np.int16)
    pcm.unlink()
    if samples.size == 0:
        raise PermanentError("the input contains no audio")
    return samples.astype(np.float32) / 32768.0


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg failed without a message"
