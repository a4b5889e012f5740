"""Rendered transcripts must be accepted by real subtitle parsers."""

import io
import json

import srt
import webvtt

from gpu_worker.render import to_json, to_srt, to_txt, to_vtt
from gpu_worker.transcript import Segment, Transcript
from transcribe_common.models import JobOptions

TRANSCRIPT = Transcript(
    language="en",
    language_probability=0.98,
    duration=3725.5,
    model="tiny.en",
    options=JobOptions(language="en"),
    segments=[
        Segment(id=0, start=0.0, end=2.5, text="Hello there."),
        Segment(id=1, start=2.5, end=2.5, text="A cue of no length is left out."),
        Segment(id=2, start=3661.001, end=3665.25, text="An hour later, a line long enough that it has to wrap."),
    ],
)


def test_srt_parses_with_exact_times_and_wrapped_lines() -> None:
    cues = list(srt.parse(to_srt(TRANSCRIPT)))
    assert [c.index for c in cues] == [1, 2]
    assert cues[1].start.total_seconds() == 3661.001
    assert cues[1].end.total_seconds() == 3665.25
    assert all(len(line) <= 42 for line in cues[1].content.splitlines())
    assert len(cues[1].content.splitlines()) == 2


def test_vtt_parses() -> None:
    captions = list(webvtt.from_buffer(io.StringIO(to_vtt(TRANSCRIPT))))
    assert [c.start for c in captions] == ["00:00:00.000", "01:01:01.001"]
    assert captions[0].text == "Hello there."


def test_txt_and_json_keep_everything() -> None:
    assert to_txt(TRANSCRIPT).splitlines()[0] == "Hello there."
    data = json.loads(to_json(TRANSCRIPT))
    assert data["options"]["language"] == "en"
    assert len(data["segments"]) == 3
