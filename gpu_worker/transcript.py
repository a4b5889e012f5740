"""Running faster-whisper over decoded audio and collecting a typed transcript."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from pydantic import BaseModel

from gpu_worker.audio import SAMPLE_RATE
from transcribe_common.models import JobOptions

Progress = Callable[[float], None]
Clip = tuple[float, float]  # (start, end) in seconds
OnSegment = Callable[["Segment"], None]
PROGRESS_INTERVAL = 1.0  # seconds between progress reports
FRAMES_PER_SECOND = 100  # of Whisper's mel spectrogram: a segment's ``seek`` is in these


class Word(BaseModel):
    start: float
    end: float
    word: str
    probability: float
    speaker: str | None = None  # a multichannel job's: the speaker of the word's channel


class Segment(BaseModel):
    id: int
    start: float
    end: float
    text: str
    words: list[Word] | None = None
    speaker: str | None = None  # a multichannel job's: the speaker of the segment's channel
    # The decoder's own figures for the segment, as Whisper reports them (OpenAI's verbose_json).
    seek: int = 0
    tokens: list[int] = []
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


DECODER_FIGURES = ("seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob")


class Transcript(BaseModel):
    """The full result; the ``json`` output is this model, so a result says how it was made, and
    for which job (``job_id``: a person who finds a transcript beside an inbox drop can find its job)."""

    job_id: str | None = None  # set when the job's results are written; a shard's part has none
    language: str
    language_probability: float
    duration: float
    segments: list[Segment]
    options: JobOptions
    model: str
    warnings: list[str] = []  # gpu_worker.findings: what its reader should know about it
    # Seconds of the audio decoded as speech: what VAD heard (as a whole, or as a channel's turns);
    # None when the job asked for no VAD, and all of it was decoded. Tells "no speech" from "no text".
    speech_seconds: float | None = None

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments).strip()


def transcribe(
    model: WhisperModel,
    audio: np.ndarray,
    options: JobOptions,
    *,
    model_name: str,
    beam_size: int,
    on_progress: Progress,
    on_info: Callable[[str, float, float], None],
    progress_interval: float = PROGRESS_INTERVAL,
    batch_size: int = 0,
    clips: list[Clip] | None = None,
    on_segment: OnSegment | None = None,
) -> Transcript:
    """Transcribe, reporting progress in percent of the audio's duration as segments arrive.
    ``on_info(language, probability, duration)`` is called once the language is known, before any
    segment is decoded (it may raise to stop there). ``batch_size`` > 0 decodes that many chunks at
    once (faster-whisper's BatchedInferencePipeline).

    ``clips`` (seconds into ``audio``, in order, none over 30 s): decode only these stretches, each
    on its own, in place of VAD's speech; no segment spans two of them (a channel's turns on a
    call: ``sharding.turns``)."""
    duration = audio.size / SAMPLE_RATE
    common: dict[str, object] = {
        "language": options.language,
        "task": options.task,
        "beam_size": beam_size,
        "vad_filter": options.vad_filter,
        "initial_prompt": options.initial_prompt,
        "word_timestamps": options.word_timestamps,
    }
    if clips is not None:  # faster-whisper decodes clips in place of VAD's speech, each on its own
        common["vad_filter"] = False
        if batch_size > 0:
            common["clip_timestamps"] = [{"start": start, "end": end} for start, end in clips]
        else:
            common["clip_timestamps"] = [seconds for clip in clips for seconds in clip]
    if batch_size > 0:
        # Batched decoding works on independent chunks: VAD's speech regions, or 30 s windows.
        if not options.vad_filter and clips is None:
            common["clip_timestamps"] = _windows(audio.size)
        pieces, info = BatchedInferencePipeline(model).transcribe(audio, batch_size=batch_size, **common)
    else:
        pieces, info = model.transcribe(audio, **common)
    on_info(info.language, info.language_probability, duration)
    segments: list[Segment] = []
    last_report = 0.0
    energy = frame_energy(audio) if options.vad_filter else None
    for piece in pieces:  # decoding happens as this generator is consumed
        segment = _segment(len(segments), piece)
        segments.append(ended_at_speech(segment, energy) if energy is not None else segment)
        if on_segment is not None:
            on_segment(segments[-1])
        if time.monotonic() - last_report >= progress_interval:
            on_progress(min(99.0, 100.0 * piece.end / duration))
            last_report = time.monotonic()
    if clips is not None:  # what VAD heard, if it was asked to listen (multichannel turns)
        speech: float | None = sum(end - start for start, end in clips) if options.vad_filter else None
    else:
        speech = info.duration_after_vad if options.vad_filter else None
    return Transcript(
        language=info.language,
        language_probability=info.language_probability,
        duration=round(duration, 3),
        segments=segments,
        options=options,
        model=model_name,
        speech_seconds=None if speech is None else round(speech, 3),
    )


def _windows(samples: int, seconds: int = 30) -> list[dict[str, float]]:
    """Consecutive windows over the whole audio, in seconds, as the batched pipeline takes them."""
    total = samples / SAMPLE_RATE
    return [
        {"start": float(start), "end": min(start + seconds, total)} for start in range(0, math.ceil(total), seconds)
    ]


def _segment(index: int, piece: object) -> Segment:
    words = getattr(piece, "words", None)
    return Segment(
        id=index,
        start=round(piece.start, 3),  # type: ignore[attr-defined]
        end=round(piece.end, 3),  # type: ignore[attr-defined]
        text=piece.text.strip(),  # type: ignore[attr-defined]
        words=[Word(start=w.start, end=w.end, word=w.word, probability=w.probability) for w in words]
        if words
        else None,
        **{name: getattr(piece, name) for name in DECODER_FIGURES if getattr(piece, name, None) is not None},
    )


CUT_FRAME = SAMPLE_RATE // 10  # energy is measured over 0.1 s frames
FRAME_SECONDS = CUT_FRAME / SAMPLE_RATE
TRAILING_QUIET_SECONDS = 1.0  # a segment's trailing quiet this long is not its speech
QUIET_DB = 30.0  # a frame this far below the segment's loud frames (its 90th percentile) is quiet
END_PAD_SECONDS = 0.2  # kept after the last loud frame, as VAD pads speech


def frame_energy(audio: np.ndarray) -> np.ndarray:
    """The mean square of each ``CUT_FRAME`` (0.1 s) of ``audio``, without a copy of it."""
    frames = audio[: audio.size // CUT_FRAME * CUT_FRAME].reshape(-1, CUT_FRAME)
    return np.einsum("ij,ij->i", frames, frames) / CUT_FRAME


def ended_at_speech(segment: Segment, energy: np.ndarray) -> Segment:
    """A segment that ends where its speech ends. With VAD, faster-whisper decodes the speech
    joined end to end, and the decoder ends a segment where the next stretch of speech begins;
    mapped back to the recording, that end lies after the pause between them, seconds into
    silence (over the other speaker, on a call's channel). A segment with words ends at its last
    word already (faster-whisper places each word in its own stretch); one without is cut back
    to its last loud frame when at least ``TRAILING_QUIET_SECONDS`` of quiet follow it."""
    if segment.words:
        return segment
    first, last = int(segment.start / FRAME_SECONDS), math.ceil(segment.end / FRAME_SECONDS)
    frames = energy[first:last]
    if frames.size == 0 or (level := float(np.percentile(frames, 90))) <= 0:
        return segment
    loud = np.flatnonzero(frames > level * 10 ** (-QUIET_DB / 10))
    speech_end = (first + int(loud[-1]) + 1) * FRAME_SECONDS
    if segment.end - speech_end < TRAILING_QUIET_SECONDS:
        return segment
    return segment.model_copy(update={"end": round(max(segment.start, speech_end + END_PAD_SECONDS), 3)})


Window = Callable[[int, int], np.ndarray]  # (first sample, count) -> float32 samples
CUT_SEARCH_SECONDS = 30.0  # a window ends at the quietest moment of its last this many seconds


@dataclass(frozen=True)
class Resume:
    """Where an earlier run of a job stopped (``gpu_worker.checkpoint``): the segments it decoded,
    up to ``until`` seconds, and the language it heard."""

    segments: list[Segment]
    until: float
    language: str
    language_probability: float


def transcribe_windows(
    model: WhisperModel,
    window: Window,
    total: int,
    options: JobOptions,
    *,
    window_seconds: float,
    model_name: str,
    beam_size: int,
    on_progress: Progress,
    on_info: Callable[[str, float, float], None],
    batch_size: int = 0,
    clips: list[Clip] | None = None,
    resume: Resume | None = None,
    on_segment: OnSegment | None = None,
    on_language: Callable[[str, float], None] | None = None,
) -> Transcript:
    """``transcribe`` over audio of ``total`` samples read ``window_seconds`` at a time, so that
    memory holds one window whatever the length. Each window ends at the quietest moment near its
    end, not inside a word if it can help it; the language detected in the first window with
    speech is used for all that follow, so that windows do not disagree, and is the one reported
    (``on_info``, once that window is done): a silent first window's guess is no detection. Audio
    of one window or less is transcribed whole, as before.

    ``clips`` (seconds into the audio): decode only these (``transcribe``); a window with none of
    them is not decoded. They need the job's language: there may be no window to detect it on.

    ``resume``: go on from where an earlier run stopped, in the language it heard, after its
    segments. ``on_segment``: each segment as it is decoded, at its place in the whole audio;
    ``on_language``: the language they are in, as soon as it is known (before ``on_info`` while
    windows still detect their own: a window with speech holds it for the rest)."""
    size = int(window_seconds * SAMPLE_RATE)
    assert clips is None or options.language is not None, "clips are decoded in a language given"

    def run(start: int, end: int, asked: JobOptions, progress: Progress, info: Callable[..., None]) -> Transcript:
        inside = None if clips is None else _within(clips, start / SAMPLE_RATE, end / SAMPLE_RATE)
        if inside == []:  # nothing to decode here
            return Transcript(
                language=asked.language or "", language_probability=1.0, duration=round((end - start) / SAMPLE_RATE, 3),
                segments=[], options=asked, model=model_name, speech_seconds=0.0,
            )  # fmt: skip
        return transcribe(
            model, window(start, end - start), asked, model_name=model_name, beam_size=beam_size,
            batch_size=batch_size, on_progress=progress, on_info=info, clips=inside,
            on_segment=_placed(on_segment, start / SAMPLE_RATE),
        )  # fmt: skip

    if total <= size and resume is None:
        return run(0, total, options, on_progress, on_info)
    segments: list[Segment] = list(resume.segments) if resume else []
    heard = (resume.language, resume.language_probability) if resume else None  # holds for every window
    if heard is not None:
        on_info(*heard, total / SAMPLE_RATE)
    first: Transcript | None = None
    speech: list[float | None] = [None] if resume else []  # what the earlier run heard is not known
    start = min(total, round(resume.until * SAMPLE_RATE)) if resume else 0
    while start < total:
        end = total if total - start <= size else quietest(window, start + size)

        def scaled(percent: float, done: int = start, length: int = end - start) -> None:
            on_progress(min(99.0, 100.0 * (done + percent / 100 * length) / total))

        if heard is None:  # each window detects its own, until one has speech to detect it on
            part = run(start, end, options, scaled, _language_of(on_language))
            first = first or part
            if part.segments:
                heard = (part.language, part.language_probability)
                on_info(*heard, total / SAMPLE_RATE)
        else:
            part = run(start, end, options.model_copy(update={"language": heard[0]}), scaled, _ignore)
        segments.extend(_shifted(part.segments, start / SAMPLE_RATE, len(segments)))
        speech.append(part.speech_seconds)
        start = end
    if heard is None:  # no speech at all: what the first window said of it
        assert first is not None
        heard = (first.language, first.language_probability)
        on_info(*heard, total / SAMPLE_RATE)
    return Transcript(
        language=heard[0],
        language_probability=heard[1],
        duration=round(total / SAMPLE_RATE, 3),
        segments=segments,
        options=options,
        model=model_name,
        speech_seconds=total_speech(speech),
    )


def _language_of(on_language: Callable[[str, float], None] | None) -> Callable[[str, float, float], None]:
    """A window's ``on_info`` that tells only ``on_language`` (its segments' language, if it has any)."""
    if on_language is None:
        return _ignore
    return lambda language, probability, _: on_language(language, probability)


def _placed(on_segment: OnSegment | None, offset: float) -> OnSegment | None:
    """``on_segment`` for a window that starts ``offset`` seconds in: each segment at its place."""
    if on_segment is None:
        return None
    return lambda segment: on_segment(_shifted([segment], offset, segment.id)[0])


def total_speech(parts: list[float | None]) -> float | None:
    """The speech of a transcript made of parts: None if any part decoded all its audio."""
    return None if None in parts else round(sum(p for p in parts if p is not None), 3)


def _within(clips: list[Clip], start: float, end: float) -> list[Clip]:
    """The parts of ``clips`` between ``start`` and ``end`` seconds, in seconds from ``start``
    (a part shorter than a 0.1 s frame holds no word)."""
    parts = [(max(a, start) - start, min(b, end) - start) for a, b in clips]
    return [(round(a, 3), round(b, 3)) for a, b in parts if b - a >= FRAME_SECONDS]


def quietest(window: Window, end: int, seconds: float = CUT_SEARCH_SECONDS) -> int:
    """The sample at the quietest 0.1 s in the ``seconds`` before ``end`` (the latest such)."""
    search = min(end, int(seconds * SAMPLE_RATE))
    samples = window(end - search, search)
    energy = np.sqrt(frame_energy(samples).astype(np.float64))
    if energy.size == 0:
        return end
    # The latest of the quietest frames (within -60 dBFS of the quietest): the window stays long.
    quiet = np.flatnonzero(energy <= energy.min() + 1e-3)
    return end - search + int(quiet[-1]) * CUT_FRAME + CUT_FRAME // 2


def _shifted(segments: list[Segment], offset: float, first_id: int) -> list[Segment]:
    shifted = []
    for n, segment in enumerate(segments):
        words = [w.model_copy(update={"start": w.start + offset, "end": w.end + offset}) for w in segment.words or []]
        update = {
            "id": first_id + n,
            "start": round(segment.start + offset, 3),
            "end": round(segment.end + offset, 3),
            "seek": segment.seek + round(offset * FRAMES_PER_SECOND),  # Whisper's seek counts 10 ms frames
        }
        shifted.append(segment.model_copy(update={**update, "words": words or segment.words}))
    return shifted


def _ignore(*_: object) -> None:
    """Later windows' language is the first's: nothing new to report."""
