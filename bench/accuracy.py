"""Accuracy and speed of the offline models on the committed speech fixtures, side by side.

    .venv/bin/python bench/accuracy.py

Prints, for tiny.en and base (int8, 2 CPU threads, VAD on, language forced to en): the audio
length, the transcription time, its real-time factor and the WER against the fixture's text.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from faster_whisper import WhisperModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu_worker.audio import SAMPLE_RATE, decode
from gpu_worker.whisper import resolve_model
from tests.helpers import SPEECH, speech_text, wer

CLIPS = (("upload.mp3", "upload"), ("url.wav", "url"), ("inbox.mp4", "inbox"))


def main() -> None:
    scratch = Path(tempfile.mkdtemp())
    print(f"{'model':8} {'clip':11} {'audio s':>8} {'load s':>7} {'run s':>6} {'x real time':>11} {'WER':>6}")
    for name in ("tiny.en", "base"):
        started = time.perf_counter()
        model = WhisperModel(resolve_model(name, scratch), device="cpu", compute_type="int8", cpu_threads=2)
        load = time.perf_counter() - started
        for clip, text in CLIPS:
            audio = decode(SPEECH / clip, scratch, timeout=60)
            started = time.perf_counter()
            segments, _ = model.transcribe(audio, language="en", vad_filter=True)
            hypothesis = " ".join(s.text for s in segments)
            run = time.perf_counter() - started
            seconds = audio.size / SAMPLE_RATE
            score = wer(speech_text(text), hypothesis)
            print(f"{name:8} {clip:11} {seconds:8.1f} {load:7.2f} {run:6.2f} {seconds / run:11.1f} {score:6.1%}")


if __name__ == "__main__":
    main()
