"""Transcript → subtitle and text formats. Pure functions; the tests feed their output to real
subtitle parsers."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from gpu_worker.transcript import Segment, Transcript

LINE_WIDTH = 42  # characters per subtitle line, the common broadcast limit


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cue_text(segment: Segment) -> str:
    return "\n".join(textwrap.wrap(segment.text, LINE_WIDTH)) or "…"


def _cues(transcript: Transcript) -> list[Segment]:
    return [s for s in transcript.segments if s.text and s.end > s.start]


def to_srt(transcript: Transcript) -> str:
    blocks = [
        f"{n}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{_cue_text(s)}\n"
        for n, s in enumerate(_cues(transcript), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{_cue_text(s)}\n" for s in _cues(transcript)]
    return "\n".join(["WEBVTT\n", *blocks])


def to_txt(transcript: Transcript) -> str:
    return "\n".join(s.text for s in transcript.segments if s.text) + "\n"


def to_json(transcript: Transcript) -> str:
    return transcript.model_dump_json(indent=2)


RENDERERS: dict[str, Callable[[Transcript], str]] = {"srt": to_srt, "vtt": to_vtt, "txt": to_txt, "json": to_json}
