"""Rendered transcripts must be accepted by real parsers, and subtitles cut into readable cues."""

import csv
import io
import itertools
import json

import pytest
import srt
import webvtt

from gpu_worker.render import CueRules, cues, to_json, to_srt, to_tsv, to_txt, to_vtt
from gpu_worker.transcript import Segment, Transcript, Word
from transcribe_common.models import JobOptions

LONG_TEXT = (
    "This is a long stretch of speech that Whisper returned as one segment, as it often does, "
    "and it would fill the screen if it were shown as one cue. So it has to be cut into several "
    "cues of two short lines each. Nobody reads a paragraph at the bottom of a video, after all."
)


def transcript(*segments: Segment, **options: object) -> Transcript:
    return Transcript(
        language="en",
        language_probability=0.98,
        duration=3725.5,
        model="tiny.en",
        options=JobOptions(language="en", **options),  # type: ignore[arg-type]
        segments=list(segments),
    )


SHORT = transcript(
    Segment(id=0, start=0.0, end=2.5, text="Hello there."),
    Segment(id=1, start=2.5, end=2.5, text="A cue of no length is left out."),
    Segment(id=2, start=3661.001, end=3665.25, text="An hour later, a line long enough that it has to wrap."),
)


def test_srt_parses_with_exact_times_and_balanced_lines() -> None:
    parsed = list(srt.parse(to_srt(SHORT)))
    assert [c.index for c in parsed] == [1, 2]
    assert parsed[1].start.total_seconds() == 3661.001
    assert parsed[1].end.total_seconds() == 3665.25
    assert parsed[1].content.splitlines() == ["An hour later, a line long", "enough that it has to wrap."]


def test_vtt_parses() -> None:
    captions = list(webvtt.from_buffer(io.StringIO(to_vtt(SHORT))))
    assert [c.start for c in captions] == ["00:00:00.000", "01:01:01.001"]
    assert captions[0].text == "Hello there."


@pytest.mark.parametrize("rules", [CueRules(), CueRules(line_width=32, max_lines=1, max_seconds=3.0)])
def test_a_long_segment_is_cut_into_cues_within_the_limits(rules: CueRules) -> None:
    long = transcript(Segment(id=0, start=10.0, end=40.0, text=LONG_TEXT))
    cut = cues(long, rules)
    assert len(cut) > 3
    assert cut[0].start == 10.0
    assert cut[-1].end == 40.0
    assert all(a.end == pytest.approx(b.start) for a, b in itertools.pairwise(cut))  # no gaps, no overlaps
    for cue in cut:
        lines = cue.text.splitlines()
        assert len(lines) <= rules.max_lines
        assert all(len(line) <= rules.line_width for line in lines)
        assert cue.end - cue.start <= rules.max_seconds + 1e-6
    assert " ".join(c.text.replace("\n", " ") for c in cut) == LONG_TEXT


def test_word_times_set_the_cue_edges_and_sentences_end_cues() -> None:
    spoken = "One sentence ends here. And then another one begins and goes on for a while longer"
    words = [
        Word(start=0.0 + i * 0.5, end=0.4 + i * 0.5, word=f" {w}", probability=0.9)
        for i, w in enumerate(spoken.split())
    ]
    segment = Segment(id=0, start=0.0, end=words[-1].end, text="".join(w.word for w in words).strip(), words=words)
    cut = cues(transcript(segment, word_timestamps=True), CueRules(line_width=20, max_lines=2, max_seconds=30))
    assert cut[0].text.replace("\n", " ") == "One sentence ends here."
    assert (cut[0].start, cut[0].end) == (0.0, 1.9)
    assert cut[1].start == 2.0


def test_tsv_reads_back_as_rows_in_milliseconds() -> None:
    rows = list(csv.reader(io.StringIO(to_tsv(SHORT)), delimiter="\t"))
    assert rows[0] == ["start", "end", "text"]
    assert rows[1] == ["0", "2500", "Hello there."]
    assert rows[-1][:2] == ["3661001", "3665250"]


def test_txt_and_json_keep_everything() -> None:
    assert to_txt(SHORT).splitlines()[0] == "Hello there."
    data = json.loads(to_json(SHORT))
    assert data["options"]["language"] == "en"
    assert len(data["segments"]) == 3


def test_output_takes_one_format_or_several() -> None:
    assert JobOptions(output="vtt").output == ["vtt"]  # type: ignore[arg-type]
    assert JobOptions(output="srt, tsv,srt").output == ["srt", "tsv"]  # type: ignore[arg-type]
    assert JobOptions(output=["json", "txt"]).main_output == "json"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="srt"):
        JobOptions(output=["srt", "docx"])  # type: ignore[arg-type]


def test_a_segment_s_last_cue_is_not_one_word_flashed_alone() -> None:
    """A new user's upload.srt ended on a 0.375 s cue of one word, 'town.'."""
    text = "Every morning the baker opens his shop and sells fresh bread to the people of the town."
    words, at = [], 0.0
    for token in text.split():
        words.append(Word(start=at, end=at + 0.375, word=f" {token}", probability=0.9))
        at += 0.375
    found = cues(transcript(Segment(id=0, start=0.0, end=at, text=text, words=words)), CueRules(max_seconds=6.0))
    assert len(found) == 2
    assert len(found[-1].text.split()) >= 3, found
    assert " ".join(c.text.replace("\n", " ") for c in found) == text  # every word once, in order
