"""Transcript → subtitle and text formats. Pure functions; the tests feed their output to real
subtitle parsers.

Subtitles are not one cue per Whisper segment: segments run to 30 s and hundreds of characters.
``cues`` re-cuts the words into cues of at most ``max_lines`` lines of ``line_width`` characters
and ``max_seconds`` seconds, preferring to end a cue after punctuation. Word times come from the
model when the job asked for word timestamps, else they are spread over the segment in proportion
to their length.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from gpu_worker.transcript import Segment, Transcript, Word


@dataclass(frozen=True)
class CueRules:
    line_width: int = 42  # characters per line, the common broadcast limit
    max_lines: int = 2
    max_seconds: float = 7.0

    @property
    def max_chars(self) -> int:
        return self.line_width * self.max_lines


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str  # lines joined by "\n"
    speaker: str | None = None


def cues(transcript: Transcript, rules: CueRules = CueRules()) -> list[Cue]:
    """The transcript's cues in the order they start (WebVTT requires it; two speakers' segments
    may overlap, and a cue of one may start within a cue of the other)."""
    out: list[Cue] = []
    for segment in transcript.segments:
        out.extend(_segment_cues(_words(segment), rules, segment.speaker))
    return sorted((cue for cue in out if cue.end > cue.start and cue.text), key=lambda cue: cue.start)


def in_order(transcript: Transcript) -> list[Segment]:
    """The segments in the order they start (a transcript joined from shards is so already)."""
    return sorted(transcript.segments, key=lambda segment: segment.start)


def _turns(items: list[tuple[str | None, str]]) -> list[str]:
    """Texts with ``speaker: `` before each that a different speaker says than the one before
    (SRT and txt have no voice tags); texts with no speaker as they are."""
    out, previous = [], None
    for speaker, text in items:
        out.append(f"{speaker}: {text}" if speaker is not None and speaker != previous else text)
        previous = speaker
    return out


def _words(segment: Segment) -> list[Word]:
    if segment.words:
        return segment.words
    tokens = segment.text.split()
    total = sum(len(t) + 1 for t in tokens) or 1
    span, at, words = segment.end - segment.start, segment.start, []
    for token in tokens:
        length = span * (len(token) + 1) / total
        words.append(Word(start=at, end=at + length, word=f" {token}", probability=1.0))
        at += length
    return words


def _segment_cues(words: list[Word], rules: CueRules, speaker: str | None) -> list[Cue]:
    groups: list[list[Word]] = [[]]
    for word in words:
        group = groups[-1]
        text = "".join(w.word for w in [*group, word]).strip()
        too_long = len(text) > rules.max_chars or bool(group and word.end - group[0].start > rules.max_seconds)
        if group and too_long:
            group = _move_tail_after_punctuation(groups)
        group.append(word)
    _no_orphan(groups, rules)
    return [_cue(group, rules, speaker) for group in groups if group]


ORPHAN_WORDS = 2  # a last cue of this many words or fewer takes words from the one before


def _no_orphan(groups: list[list[Word]], rules: CueRules) -> None:
    """A segment's last cue of one or two words ("town.", flashed for a third of a second) takes
    the words before it from the cue before, while that cue keeps as many."""
    if len(groups) < 2 or len(groups[-1]) > ORPHAN_WORDS:
        return
    before, last = groups[-2], groups[-1]
    while len(last) <= ORPHAN_WORDS and len(before) > len(last) + 1:
        moved = [before[-1], *last]
        text = "".join(w.word for w in moved).strip()
        if len(text) > rules.max_chars or moved[-1].end - moved[0].start > rules.max_seconds:
            return
        before.pop()
        last.insert(0, moved[0])


def _move_tail_after_punctuation(groups: list[list[Word]]) -> list[Word]:
    """Start a new cue; if the full one has a sentence end in its second half, cut there instead."""
    full = groups[-1]
    for cut in range(len(full) - 1, len(full) // 2 - 1, -1):
        if full[cut].word.rstrip().endswith((".", "?", "!", ",", ";", ":")) and cut < len(full) - 1:
            groups[-1], tail = full[: cut + 1], full[cut + 1 :]
            groups.append(tail)
            return tail
    groups.append([])
    return groups[-1]


def _cue(words: list[Word], rules: CueRules, speaker: str | None) -> Cue:
    text = "".join(w.word for w in words).strip()
    return Cue(round(words[0].start, 3), round(words[-1].end, 3), _lines(text, rules), speaker)


def _lines(text: str, rules: CueRules) -> str:
    """Two balanced lines rather than a full first line and a stub."""
    if len(text) <= rules.line_width:
        return text
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    fitting = [i for i in spaces if i <= rules.line_width and len(text) - i - 1 <= rules.line_width]
    if fitting:
        split = min(fitting, key=lambda i: abs(len(text) / 2 - i))
        return f"{text[:split]}\n{text[split + 1 :]}"
    return "\n".join(textwrap.wrap(text, rules.line_width))


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(transcript: Transcript, rules: CueRules = CueRules()) -> str:
    found = cues(transcript, rules)
    texts = _turns([(c.speaker, c.text) for c in found])
    blocks = [
        f"{n}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{text}\n"
        for n, (c, text) in enumerate(zip(found, texts, strict=True), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(transcript: Transcript, rules: CueRules = CueRules()) -> str:
    blocks = [
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{_voiced(c)}\n" for c in cues(transcript, rules)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _voiced(cue: Cue) -> str:
    """A cue's text in WebVTT's voice span when its speaker is known: ``<v agent>Hello``."""
    if cue.speaker is None:
        return cue.text
    name = cue.speaker.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<v {name}>{cue.text}"


def to_txt(transcript: Transcript, rules: CueRules = CueRules()) -> str:
    spoken = [(s.speaker, s.text) for s in in_order(transcript) if s.text]
    return "\n".join(_turns(spoken)) + "\n"


def to_tsv(transcript: Transcript, rules: CueRules = CueRules()) -> str:
    """Whisper's tsv: start and end in integer milliseconds, then the text, one segment a row; a
    ``speaker`` column last when the job labelled speakers (multichannel)."""
    spoken = [s for s in in_order(transcript) if s.text]
    labelled = any(s.speaker is not None for s in transcript.segments)
    rows = [
        f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{' '.join(s.text.split())}"
        + (f"\t{s.speaker or ''}" if labelled else "")
        for s in spoken
    ]
    return "\n".join(["start\tend\ttext" + ("\tspeaker" if labelled else ""), *rows]) + "\n"


def to_json(transcript: Transcript, rules: CueRules = CueRules()) -> str:
    return transcript.model_dump_json(indent=2)


RENDERERS: dict[str, Callable[[Transcript, CueRules], str]] = {
    "srt": to_srt,
    "vtt": to_vtt,
    "txt": to_txt,
    "tsv": to_tsv,
    "json": to_json,
}
