"""Cues never go backwards, in any format, for any input (issue 34, finding 1): hypothesis draws
transcripts of segments that overlap as two speakers do, with and without words (the words' times
as faster-whisper gives them: in order within a segment, possibly of no length), and every
renderer's output is read back by a real parser."""

from __future__ import annotations

import csv
import io

import srt
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_worker.render import RENDERERS, CueRules
from gpu_worker.transcript import Segment, Transcript, Word
from transcribe_common.models import JobOptions

SPEAKERS = st.sampled_from([None, "agent", "customer"])
TEXT = st.lists(st.sampled_from(["yes", "no,", "thank", "you.", "the", "library", "card?", "renewed"]), min_size=1)


@st.composite
def segments(draw: st.DrawFn, index: int) -> Segment:
    start = draw(st.floats(0, 120, allow_nan=False).map(lambda t: round(t, 3)))
    end = round(start + draw(st.floats(0, 40)), 3)
    tokens = draw(TEXT)
    words = None
    if draw(st.booleans()):  # word timestamps: ordered points within the segment
        points = sorted(draw(st.lists(st.floats(start, end), min_size=2 * len(tokens), max_size=2 * len(tokens))))
        words = [
            Word(start=points[2 * n], end=points[2 * n + 1], word=f" {token}", probability=0.9)
            for n, token in enumerate(tokens)
        ]
    return Segment(id=index, start=start, end=end, text=" ".join(tokens), words=words, speaker=draw(SPEAKERS))


@st.composite
def transcripts(draw: st.DrawFn) -> Transcript:
    count = draw(st.integers(0, 12))
    return Transcript(
        language="en",
        language_probability=1.0,
        duration=200.0,
        segments=[draw(segments(n)) for n in range(count)],
        options=JobOptions(language="en"),
        model="tiny.en",
    )


RULES = st.builds(CueRules, line_width=st.integers(10, 60), max_lines=st.integers(1, 3), max_seconds=st.floats(1, 10))


def seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def times(transcript: Transcript, rules: CueRules) -> dict[str, list[tuple[float, float]]]:
    """(start, end) of each cue or row, in the order each format gives them, read by its parser."""

    def render(name: str) -> str:
        return RENDERERS[name](transcript, rules)

    found = {
        "srt": [
            (cue.start.total_seconds(), cue.end.total_seconds())
            for cue in srt.parse(RENDERERS["srt"](transcript, rules))
        ],
        "vtt": [(seconds(cue.start), seconds(cue.end)) for cue in webvtt.from_buffer(io.StringIO(render("vtt")))],
        "tsv": [
            (int(row["start"]) / 1000, int(row["end"]) / 1000)
            for row in csv.DictReader(io.StringIO(render("tsv")), delimiter="\t")
        ],
    }
    return found


@settings(max_examples=300, deadline=None)
@given(transcripts(), RULES)
def test_no_format_goes_backwards_in_time(transcript: Transcript, rules: CueRules) -> None:
    for name, found in times(transcript, rules).items():
        starts = [start for start, _ in found]
        assert starts == sorted(starts), (name, found)
        if name != "tsv":  # a cue of no length is left out; a segment's row stays
            assert all(end > start for start, end in found), (name, found)


@settings(max_examples=200, deadline=None)
@given(transcripts())
def test_txt_reads_in_the_order_things_were_said(transcript: Transcript) -> None:
    lines = [line for line in RENDERERS["txt"](transcript, CueRules()).splitlines() if line]
    said = sorted((s for s in transcript.segments if s.text), key=lambda s: s.start)
    assert len(lines) == len(said)
    for line, segment in zip(lines, said, strict=True):
        assert line.endswith(segment.text)
