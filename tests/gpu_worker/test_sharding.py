"""Cutting a long recording into shards and joining their transcripts, on real speech: cuts fall
in pauses, shards are placed back where they came from, speakers stay apart."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
import srt
import webvtt

from gpu_worker import audio, sharding
from gpu_worker.render import to_srt, to_tsv, to_txt, to_vtt
from gpu_worker.transcript import Segment, Transcript, Word
from tests.helpers import interleaved_call, long_speech, silence
from transcribe_common.models import JobOptions


@pytest.fixture(scope="module")
def decoded(tmp_path_factory: pytest.TempPathFactory) -> audio.Decoded:
    folder = tmp_path_factory.mktemp("long")
    return audio.decode_audio(long_speech(folder / "long.wav"), folder, timeout=60)


def test_cuts_fall_in_pauses_never_in_speech(decoded: audio.Decoded) -> None:
    regions = sharding.speech_regions(decoded)
    assert len(regions) >= 6  # the sentences of six recordings, apart
    cuts = sharding.cut_points(regions, decoded.duration, 8.0, decoded.window)
    assert len(cuts) >= 6
    for cut in cuts:
        assert not any(start < cut < end for start, end in regions), (cut, regions)
    edges = [0.0, *cuts, decoded.duration]
    lengths = [b - a for a, b in itertools.pairwise(edges)]
    assert all(0 < length <= 12.0 for length in lengths), lengths  # at most 1.5 shards each


def test_where_nobody_pauses_the_cut_is_at_the_quietest_moment() -> None:
    """One long region of speech (no pause VAD heard): the cut goes where the energy is lowest."""
    import numpy as np

    samples = np.full(16000 * 40, 0.5, dtype=np.float32)
    samples[16000 * 9 : 16000 * 9 + 1600] = 0.001  # a breath at 9 s

    def window(start: int, count: int) -> np.ndarray:
        return samples[start : start + count]

    assert sharding.cut_points([(0.0, 40.0)], 40.0, 8.0, window)[0] == pytest.approx(9.05, abs=0.06)


def test_digital_silence_has_no_speech_and_costs_no_vad(tmp_path: Path) -> None:
    decoded = audio.decode_audio(silence(tmp_path / "quiet.flac", 1300), tmp_path, timeout=60)
    assert sharding.speech_regions(decoded) == []


def part(*segments: tuple[float, float, str]) -> Transcript:
    return Transcript(
        language="en",
        language_probability=1.0,
        duration=10.0,
        options=JobOptions(),
        model="tiny.en",
        segments=[
            Segment(id=n, start=a, end=b, text=text, words=[Word(start=a, end=b, word=f" {text}", probability=0.9)])
            for n, (a, b, text) in enumerate(segments)
        ],
    )


def plan(*shards: tuple[int, float, float], multichannel: bool = False) -> sharding.ShardPlan:
    return sharding.ShardPlan(
        attempt=1,
        model="tiny.en",
        language="en",
        language_probability=1.0,
        duration=max(end for _, _, end in shards),
        channels=max(channel for channel, _, _ in shards) + 1,
        multichannel=multichannel,
        declared=None,
        shards=[
            sharding.Shard(index=n, channel=channel, start=start, end=end, speech=True)
            for n, (channel, start, end) in enumerate(shards)
        ],
    )


def test_a_join_places_each_shard_at_its_start_and_keeps_time_monotone() -> None:
    parts = {0: part((0.0, 4.0, "one"), (4.0, 10.4, "two")), 1: part((0.0, 3.0, "three"), (3.5, 9.0, "four"))}
    joined = sharding.joined(plan((0, 0.0, 10.0), (0, 10.0, 20.0)), parts, JobOptions(), "tiny.en")
    assert [(s.id, s.start, s.end, s.text) for s in joined.segments] == [
        (0, 0.0, 4.0, "one"),
        (1, 4.0, 10.0, "two"),  # past its shard's end: held to it
        (2, 10.0, 13.0, "three"),
        (3, 13.5, 19.0, "four"),
    ]
    assert joined.segments[2].words is not None
    assert joined.segments[2].words[0].start == 10.0
    assert joined.duration == 20.0
    cues = list(srt.parse(to_srt(joined)))
    assert [c.start for c in cues] == sorted(c.start for c in cues)


def test_channels_are_merged_in_time_order_each_with_its_speaker() -> None:
    options = JobOptions(multichannel=True, speaker_labels=["agent", "customer"])
    parts = {0: part((0.0, 2.0, "Hello."), (5.0, 6.0, "Sure.")), 1: part((2.5, 4.5, "Hi, I need help."))}
    joined = sharding.joined(plan((0, 0.0, 10.0), (1, 0.0, 10.0), multichannel=True), parts, options, "tiny.en")
    assert [(s.speaker, s.text) for s in joined.segments] == [
        ("agent", "Hello."),
        ("customer", "Hi, I need help."),
        ("agent", "Sure."),
    ]
    assert all(w.speaker == s.speaker for s in joined.segments for w in s.words or [])
    captions = list(webvtt.from_buffer(io.StringIO(to_vtt(joined))))
    assert [(c.voice, c.text) for c in captions] == [
        ("agent", "Hello."),
        ("customer", "Hi, I need help."),
        ("agent", "Sure."),
    ]
    assert [c.content for c in srt.parse(to_srt(joined))][:2] == ["agent: Hello.", "customer: Hi, I need help."]
    assert to_txt(joined).splitlines() == ["agent: Hello.", "customer: Hi, I need help.", "agent: Sure."]
    assert to_tsv(joined).splitlines()[:2] == ["start\tend\ttext\tspeaker", "0\t2000\tHello.\tagent"]


def test_a_silent_channel_is_named_and_the_default_speakers_are_by_number() -> None:
    options = JobOptions(multichannel=True)
    parts = {0: part((0.0, 2.0, "Hello."))}
    shards = plan((0, 0.0, 10.0), (1, 0.0, 10.0), multichannel=True)
    joined = sharding.joined(shards, parts, options, "tiny.en")
    assert joined.segments[0].speaker == "channel 1"
    assert sharding.silent_channels(shards, options, parts) == ["no speech was found on channel 2 (channel 2)"]


def test_a_transcript_without_speakers_renders_as_before() -> None:
    joined = sharding.joined(plan((0, 0.0, 10.0)), {0: part((0.0, 2.0, "Hello."))}, JobOptions(), "tiny.en")
    assert to_tsv(joined).splitlines() == ["start\tend\ttext", "0\t2000\tHello."]
    assert "<v" not in to_vtt(joined)
    assert to_txt(joined) == "Hello.\n"


def test_a_channel_s_turns_end_where_the_other_channel_speaks(tmp_path: Path) -> None:
    """Issue 34, finding 1, on the real call: the customer's two lines, with the agent's 10 s turn
    between them, are two turns; the agent's two lines, with nobody else speaking in the pause
    between them, are one. Without VAD the turns cover the channel, cut inside the other's turn."""
    said = interleaved_call(tmp_path / "call.wav")
    agent, customer = audio.decode_channels(tmp_path / "call.wav", tmp_path, timeout=60, split=True)
    heard = {name: sharding.speech_regions(side) for name, side in (("agent", agent), ("customer", customer))}
    duration = customer.duration
    turns = sharding.turns(heard["customer"], heard["agent"], duration)
    assert len(turns) == 2, (turns, heard)
    agent_turn = (said[1]["start"], said[2]["end"])
    for start, end in turns:  # neither reaches into the agent's turn
        assert end <= agent_turn[0] + 0.5 or start >= agent_turn[1] - 0.5, (turns, said)
    assert len(sharding.turns(heard["agent"], heard["customer"], duration)) == 1
    whole = sharding.turns(heard["customer"], heard["agent"], duration, speech_only=False)
    assert whole[0][0] == 0.0
    assert whole[-1][1] == pytest.approx(duration)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(whole))
    assert len(whole) == 2
    assert agent_turn[0] < whole[0][1] < agent_turn[1]


def test_turns_are_never_longer_than_a_window_and_never_overlap() -> None:
    own = [(0.0, 50.0), (50.5, 51.0), (60.0, 61.0)]
    others = [(55.0, 58.0)]
    turns = sharding.turns(own, others, 70.0)
    assert all(end - start <= sharding.TURN_MAX for start, end in turns), turns  # one window each, padding too
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(turns)), turns
    assert turns[-1] == (59.8, 61.2)
    assert sharding.turns([], others, 70.0) == []
    assert sharding.turns([], others, 70.0, speech_only=False) == [(0.0, 23.333), (23.333, 46.667), (46.667, 70.0)]
    assert sharding.turns([(1.0, 61.0)], [], 70.0)[0] == (0.8, 21.2)  # 60 s of speech: three of 20, each padded
