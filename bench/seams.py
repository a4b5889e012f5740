"""What a shard loses at its start, and what would give it back: faster-whisper directly, no stack.

    .venv/bin/python bench/seams.py [--shard-seconds 60] [--rotations 0,21] [--lead 30] [--after 0] [--model tiny.en]

``bench/long.py`` finds sharded WER above unsharded (issue 17, item 5). This script says why, on
the lecture fixture cut where the stack cuts it (``gpu_worker.sharding``: VAD, then the longest
pause near each ``--shard-seconds`` mark), every row decoded with the same options (English,
beam 5, VAD, ``--threads`` CPU threads) and scored against the known text:

- ``whole``: the whole file in one call; each 30 s window is prompted with the text decoded
  before it (``condition_on_previous_text``). The unsharded figure.
- ``cold``: each shard on its own, as the stack transcribes it: its first window has no prompt.
- ``lead``: each shard prompted with the tokens of a separate decode of the ``--lead`` seconds
  before its cut (its words dropped): a parallel scheme, at the cost of decoding the lead too.
- ``chain``: each shard prompted with the tokens of the shard before it, decoded first: one
  shard after another, no parallelism. What any parallel scheme can at best recover.

With ``--after``, each shard of every sharded mode is decoded that many seconds past its end,
and the segments whose middle lies past it are dropped (the next shard has them): its last
window is then no shorter than the others, at the cost of decoding the overlap twice.

``whole`` and ``cold`` run once per ``--rotations`` (the lecture started at that paragraph and
wrapped round), so that a gap that is only where the windows happen to fall shows as a spread.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.long import LECTURE, errors, norm, wer
from gpu_worker import sharding
from gpu_worker.audio import SAMPLE_RATE, Decoded, decode_audio

MODES = ("whole", "cold", "lead", "chain")


def lecture(source: Decoded, folder: Path, rotation: int) -> tuple[Decoded, str]:
    """The decoded lecture started a second before paragraph ``rotation`` and wrapped round to its
    start; and its text in that order."""
    paragraphs = json.loads(LECTURE.with_suffix(".json").read_text())
    pcm = source.pcm.read_bytes()
    at = 2 * int(SAMPLE_RATE * max(0.0, paragraphs[rotation]["start"] - 1.0)) if rotation else 0
    path = folder / f"lecture-{rotation}.s16le"
    path.write_bytes(pcm[at:] + pcm[:at])
    text = " ".join(p["text"] for p in paragraphs[rotation:] + paragraphs[:rotation])
    return Decoded(path, source.samples, None), text


def cuts(decoded: Decoded, shard_seconds: float) -> list[tuple[int, int]]:
    """The shards the stack would make, as sample ranges."""
    regions = sharding.speech_regions(decoded)
    edges = [0.0, *sharding.cut_points(regions, decoded.duration, shard_seconds, decoded.window), decoded.duration]
    return [(int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)) for a, b in itertools.pairwise(edges)]


class Decoder:
    def __init__(self, model: str, threads: int) -> None:
        from faster_whisper import WhisperModel

        from gpu_worker.whisper import resolve_model

        self.model = WhisperModel(resolve_model(model, Path("/tmp")), device="cpu", compute_type="int8",
                                  cpu_threads=threads)  # fmt: skip

    def __call__(self, audio: np.ndarray, prompt: list[int] | None = None, until: float = math.inf
                 ) -> tuple[str, list[int]]:  # fmt: skip
        """The text, and every token the decoder emitted (timestamps too, as it prompts itself), of
        the segments whose middle is before ``until`` seconds."""
        segments, _ = self.model.transcribe(audio, language="en", beam_size=5, vad_filter=True,
                                            initial_prompt=prompt or None)  # fmt: skip
        found = [s for s in segments if (s.start + s.end) / 2 < until]
        return " ".join(s.text.strip() for s in found), [t for s in found for t in s.tokens]


def sharded(
    decode: Decoder, decoded: Decoded, shards: Iterable[tuple[int, int]], mode: str, lead: float, after: float
) -> str:
    texts: list[str] = []
    tokens: list[int] | None = None
    for start, end in shards:
        prompt = None
        if start and mode == "lead":
            first = max(0, start - int(lead * SAMPLE_RATE))
            prompt = decode(decoded.window(first, start - first))[1]
        elif mode == "chain":
            prompt = tokens
        last = min(decoded.samples, end + int(after * SAMPLE_RATE))  # a whole file has nothing past its end
        text, tokens = decode(decoded.window(start, last - start), prompt, (end - start) / SAMPLE_RATE)
        texts.append(text)
    return " ".join(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--shard-seconds", type=float, default=60)
    parser.add_argument("--rotations", default="0,21", help="paragraphs to start the lecture at, for whole and cold")
    parser.add_argument("--lead", type=float, default=30, help="seconds before a cut decoded for its prompt")
    parser.add_argument("--after", type=float, default=0, help="seconds decoded past each cut too")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}: choose from {', '.join(MODES)}")
    decode = Decoder(args.model, args.threads)
    rows: dict[str, list[float]] = {}
    past = f", each decoded {args.after:g} s past its end" if args.after else ""
    print(f"the lecture, {args.model}, {args.threads} CPU threads, shards of about {args.shard_seconds:g} s{past}\n")
    print(f"{'rotation':>8}  {'mode':<6}{'shards':>7}{'WER %':>8}{'words':>7}{'s':>6}   commonest errors")
    with tempfile.TemporaryDirectory(prefix="bench-seams-") as tmp:
        rotations = [int(r) for r in args.rotations.split(",")]
        source = decode_audio(LECTURE, Path(tmp), timeout=600)  # as the stack decodes: 16 kHz mono
        for rotation in rotations:
            decoded, reference = lecture(source, Path(tmp), rotation)
            cut = cuts(decoded, args.shard_seconds)
            for mode in modes:
                if rotation != rotations[0] and mode in ("lead", "chain"):
                    continue  # the slow ones, on the first rotation only
                shards = [(0, decoded.samples)] if mode == "whole" else cut
                began = time.perf_counter()
                text = sharded(decode, decoded, shards, mode, args.lead, args.after)
                took = time.perf_counter() - began
                rows.setdefault(mode, []).append(wer(reference, text))
                print(f"{rotation:>8}  {mode:<6}{len(shards):>7}"
                      f"{rows[mode][-1]:>8.2f}{len(norm(text).split()):>7}{took:>6.0f}   "
                      f"{errors(reference, text, 4)}", flush=True)  # fmt: skip
    if "whole" in rows:
        base = float(np.mean(rows["whole"]))
        print(f"\nmean WER above whole ({base:.2f} %), target <= +0.5:")
        for mode, found in rows.items():
            if mode != "whole":
                gap = float(np.mean(found)) - base
                print(f"  {mode:<6}{gap:>+7.2f}  ({len(found)} rotation{'s' if len(found) > 1 else ''})   "
                      f"{'met' if gap <= 0.5 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
