"""Splitting a long or multichannel recording into shards, and joining their transcripts.

A shard is a stretch of one channel, about ``SHARD_SECONDS`` long, transcribed as an RQ job of its
own by any worker (``gpu_worker.job.ShardRun``). The worker that started the job cuts it:

- It finds the speech with Silero VAD, one window at a time, so that memory holds one window however
  long the recording. A window of digital silence is not even shown to the VAD.
- It cuts in the middle of the longest pause near each ``SHARD_SECONDS`` mark; where nobody pauses
  for long, at the quietest moment there (``transcript.quietest``). A cut never falls in speech
  that VAD heard, so no word is split between two shards.
- A shard with no speech is never transcribed: it is done from the start, with nothing to say.

The join puts each shard's segments and words at the shard's place in the recording, labels them
with their channel's speaker (multichannel), merges them in time order and keeps every channel's
timestamps monotone, so that each format renders as if one worker had transcribed the whole.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps
from pydantic import BaseModel

from gpu_worker.audio import SAMPLE_RATE, Decoded, clock
from gpu_worker.transcript import FRAMES_PER_SECOND, Segment, Transcript, Window, quietest, total_speech
from transcribe_common.models import JobOptions

VAD_WINDOW_SECONDS = 600.0  # audio shown to the VAD at once: 38 MB as float32
VAD_THREADS = max(1, min(4, os.cpu_count() or 1))  # windows in memory at once: at most 4 x 38 MB
SILENT_PEAK = 1e-4  # a window whose loudest sample is below this (-80 dBFS) is digital silence
# Fine-grained, to find the pauses between sentences: faster-whisper's defaults (2 s of silence
# to end a region, 0.4 s of padding) would hide every pause shorter than 2.8 s.
CUT_VAD = VadOptions(min_silence_duration_ms=250, speech_pad_ms=50)
Region = tuple[float, float]  # (start, end) in seconds
Detect = Callable[[np.ndarray], tuple[str, float]]  # samples -> (language, probability)


class Shard(BaseModel):
    index: int
    channel: int  # 0 unless the job is multichannel
    start: float  # seconds into the recording
    end: float
    speech: bool  # VAD heard speech in it: only such shards are transcribed
    # A multichannel job's: the stretches of the shard to decode, each on its own (``turns``), in
    # seconds into the recording; empty: the whole shard.
    turns: list[Region] = []

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def describe(self, total: int) -> str:
        """How a user finds it: ``shard 3 of 12 (0:10:00-0:15:00, channel 2)``."""
        where = f"{clock(self.start)}-{clock(self.end)}"
        return f"shard {self.index + 1} of {total} ({where}{f', channel {self.channel + 1}' if self.channel else ''})"


class ShardPlan(BaseModel):
    """``<job>/attempt-<n>/shards/plan.json``: how an attempt of a job was cut, and what every shard
    must share: the language, detected once for all of them."""

    attempt: int
    model: str  # the model that detected the language: every shard runs on it, on its queue
    language: str
    language_probability: float
    duration: float  # seconds of the recording (of each channel)
    channels: int
    multichannel: bool
    declared: float | None  # what the container declared, for the truncation finding
    shards: list[Shard]

    @property
    def seconds(self) -> float:
        """The audio of all shards: what progress is the share of."""
        return sum(shard.seconds for shard in self.shards) or 1.0


def speech_regions(decoded: Decoded, window_seconds: float = VAD_WINDOW_SECONDS) -> list[Region]:
    """Where VAD hears speech, in seconds, over the whole recording a window at a time, up to
    ``VAD_THREADS`` windows at once (Silero runs on one thread each, and the other workers wait on
    the split). Regions that meet at a window's edge are one: speech carries on across it."""
    size = int(window_seconds * SAMPLE_RATE)

    def heard(start: int) -> list[Region]:
        samples = decoded.window(start, min(size, decoded.samples - start))
        if samples.size == 0 or float(np.abs(samples).max()) < SILENT_PEAK:
            return []
        offset = start / SAMPLE_RATE
        found = get_speech_timestamps(samples, CUT_VAD)
        return [(offset + f["start"] / SAMPLE_RATE, offset + f["end"] / SAMPLE_RATE) for f in found]

    regions: list[Region] = []
    with ThreadPoolExecutor(max_workers=VAD_THREADS) as pool:
        for found in pool.map(heard, range(0, decoded.samples, size)):
            for region in found:
                if regions and region[0] - regions[-1][1] < 0.05:
                    regions[-1] = (regions[-1][0], region[1])
                else:
                    regions.append(region)
    return regions


def cut_points(regions: list[Region], duration: float, shard_seconds: float, window: Window) -> list[float]:
    """Where to cut a recording of ``duration`` seconds into shards of about ``shard_seconds``:
    the middle of the longest pause VAD heard between ``0.5`` and ``1.5`` shards after the last
    cut (the one nearest to one shard's length, of pauses as long); with no pause there, the
    quietest moment in that stretch."""
    cuts: list[float] = []
    last = 0.0
    while duration - last > 1.5 * shard_seconds:
        low, mark, high = last + 0.5 * shard_seconds, last + shard_seconds, last + 1.5 * shard_seconds
        pauses = [
            (end, start)
            for (_, end), (start, _) in itertools.pairwise(regions)
            if start > end and low <= (end + start) / 2 <= high
        ]
        if not regions or regions[0][0] > high:
            cut = mark  # no speech before this mark and the next: any place will do
        elif regions[-1][1] < low:
            break  # no speech after this: the rest is one shard, and silent
        elif pauses:
            end, start = max(pauses, key=lambda p: (round(p[1] - p[0], 1), -abs((p[0] + p[1]) / 2 - mark)))
            cut = (end + start) / 2
        else:
            cut = quietest(window, int(high * SAMPLE_RATE), seconds=high - low) / SAMPLE_RATE
        cuts.append(round(cut, 3))
        last = cut
    return cuts


def shards_of(
    channel: int,
    regions: list[Region],
    duration: float,
    cuts: list[float],
    first_index: int,
    turns: list[Region] | None = None,
) -> list[Shard]:
    edges = [0.0, *cuts, duration]
    return [
        Shard(
            index=first_index + n,
            channel=channel,
            start=start,
            end=end,
            speech=any(r_start < end and r_end > start for r_start, r_end in regions),
            turns=[(max(a, start), min(b, end)) for a, b in turns or [] if a < end and b > start],
        )
        for n, (start, end) in enumerate(itertools.pairwise(edges))
    ]


TURN_PAD = 0.2  # seconds of a turn kept before and after the speech VAD heard, as VAD pads
TURN_MAX = 30.0  # seconds: a longer turn is decoded in pieces cut at its own pauses (one window each)


def turns(own: list[Region], others: list[Region], duration: float, *, speech_only: bool = True) -> list[Region]:
    """A channel's turns on a call: its speech (``own``), joined across its pauses except those in
    which another channel speaks (``others``), padded by ``TURN_PAD`` and no longer than
    ``TURN_MAX``. Decoded each on its own, no segment of this channel spans the other speaker's
    turn, so the joined transcript reads in the order things were said. ``speech_only=False`` (a
    job that asked for no VAD): the turns cover the whole channel, cut in the middle of each such
    pause."""
    if not own:
        return [] if speech_only else [(round(a, 3), round(b, 3)) for a, b in _at_most(0.0, duration, TURN_MAX)]
    longest = TURN_MAX - 2 * TURN_PAD  # padded, a turn is at most TURN_MAX
    joined: list[list[Region]] = [[own[0]]]
    for region in own[1:]:
        gap_start, gap_end = joined[-1][-1][1], region[0]
        spoken = any(start < gap_end and end > gap_start for start, end in others)
        long = region[1] - joined[-1][0][0] > longest
        if spoken or long:
            joined.append([region])
        else:
            joined[-1].append(region)
    spans = [piece for group in joined for piece in _at_most(group[0][0], group[-1][1], longest)]
    if not speech_only:
        cuts = [(a[1] + b[0]) / 2 for a, b in itertools.pairwise(spans)]
        pieces = [piece for a, b in itertools.pairwise([0.0, *cuts, duration]) for piece in _at_most(a, b, TURN_MAX)]
        return [(round(a, 3), round(b, 3)) for a, b in pieces]
    padded: list[Region] = []
    for start, end in spans:
        start = max(start - TURN_PAD, padded[-1][1] if padded else 0.0)
        padded.append((round(start, 3), round(min(end + TURN_PAD, duration), 3)))
    return padded


def _at_most(start: float, end: float, seconds: float) -> list[Region]:
    """``start``-``end`` in pieces no longer than ``seconds`` (speech with no pause that long)."""
    count = max(1, int(np.ceil((end - start) / seconds)))
    step = (end - start) / count
    return [(start + n * step, start + (n + 1) * step) for n in range(count)]


def first_speech(decoded: list[Decoded], regions: list[list[Region]], seconds: float = 30.0) -> np.ndarray | None:
    """The first ``seconds`` of speech heard on any channel, to detect the language on: None if
    there is none."""
    starts = [(found[0][0], n) for n, found in enumerate(regions) if found]
    if not starts:
        return None
    start, channel = min(starts)
    first = int(start * SAMPLE_RATE)
    return decoded[channel].window(first, min(int(seconds * SAMPLE_RATE), decoded[channel].samples - first))


def plan(
    channels: list[Decoded],
    options: JobOptions,
    *,
    attempt: int,
    model: str,
    shard_seconds: float,
    shard_min: float,
    detect: Detect,
) -> ShardPlan:
    """How to cut this attempt's recording (one ``Decoded`` per channel, or one mixed down), with the
    language every shard will use: the job's, or the one detected on the first speech."""
    shards: list[Shard] = []
    regions = [speech_regions(decoded) for decoded in channels]
    for channel, (decoded, found) in enumerate(zip(channels, regions, strict=True)):
        long = shard_min and decoded.duration > shard_min
        cuts = cut_points(found, decoded.duration, shard_seconds, decoded.window) if long else []
        spoken = None
        if options.multichannel:
            others = sorted(region for n, other in enumerate(regions) if n != channel for region in other)
            spoken = turns(found, others, decoded.duration, speech_only=options.vad_filter)
        shards += shards_of(channel, found, decoded.duration, cuts, len(shards), spoken)
    if options.language is not None:
        language, probability = options.language, 1.0  # as faster-whisper reports a language it was given
    else:
        speech = first_speech(channels, regions)
        language, probability = detect(speech if speech is not None else channels[0].window(0, 30 * SAMPLE_RATE))
    if not options.vad_filter:  # the caller wants no speech skipped: every shard is transcribed
        shards = [shard.model_copy(update={"speech": True}) for shard in shards]
    return ShardPlan(
        attempt=attempt,
        model=model,
        language=language,
        language_probability=round(probability, 4),
        duration=channels[0].duration,
        channels=len(channels),
        multichannel=options.multichannel,
        declared=channels[0].declared,
        shards=shards,
    )


def joined(plan: ShardPlan, parts: dict[int, Transcript], options: JobOptions, model: str) -> Transcript:
    """One transcript of the whole recording from its shards' (by index; silent shards have none)."""
    segments: list[Segment] = []
    for shard in plan.shards:
        part = parts.get(shard.index)
        if part is not None:
            speaker = options.speaker(shard.channel) if plan.multichannel else None
            segments.extend(_placed(part.segments, shard, speaker))
    segments.sort(key=lambda segment: (segment.start, segment.end))
    return Transcript(
        language=plan.language,
        language_probability=plan.language_probability,
        duration=round(plan.duration, 3),
        segments=[segment.model_copy(update={"id": n}) for n, segment in enumerate(_monotone(segments))],
        options=options,
        model=model,
        speech_seconds=total_speech([part.speech_seconds for part in parts.values()]),
    )


def _placed(segments: Iterable[Segment], shard: Shard, speaker: str | None) -> list[Segment]:
    """A shard's segments at its place in the recording, and never past its end."""

    def at(seconds: float) -> float:
        return round(min(shard.start + seconds, shard.end), 3)

    placed = []
    for segment in segments:
        words = [
            w.model_copy(update={"start": at(w.start), "end": at(w.end), "speaker": speaker})
            for w in segment.words or []
        ]
        update = {
            "start": at(segment.start),
            "end": at(segment.end),
            "seek": segment.seek + round(shard.start * FRAMES_PER_SECOND),  # at its place too
            "speaker": speaker,
            "words": words or None,
        }
        placed.append(segment.model_copy(update=update))
    return placed


def _monotone(segments: list[Segment]) -> list[Segment]:
    """Each speaker's segments and words start no earlier than the one before ends (decoders run
    over a little at a shard's edge); speakers may overlap one another, as people do."""
    last: dict[str | None, float] = {}
    out = []
    for segment in segments:
        floor = last.get(segment.speaker, 0.0)
        words, at = [], floor
        for word in segment.words or []:
            start = max(word.start, at)
            words.append(word.model_copy(update={"start": start, "end": max(word.end, start)}))
            at = words[-1].end
        start = max(segment.start, floor)
        end = max(segment.end, start, at)
        out.append(segment.model_copy(update={"start": start, "end": end, "words": words or None}))
        last[segment.speaker] = end
    return out


def silent_channels(plan: ShardPlan, options: JobOptions, parts: dict[int, Transcript]) -> list[str]:
    """A finding for each channel of a multichannel job in which nothing was said."""
    if not plan.multichannel:
        return []
    spoken = {shard.channel for shard in plan.shards if (part := parts.get(shard.index)) and part.text}
    return [
        f"no speech was found on channel {channel + 1} ({options.speaker(channel)})"
        for channel in range(plan.channels)
        if channel not in spoken
    ]
