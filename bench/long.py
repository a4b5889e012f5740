"""A long recording split into shards across worker processes, against raw faster-whisper.

    .venv/bin/python bench/long.py [--minutes 20] [--shard-seconds 60] [--model tiny.en]

Every side uses one CPU thread (``WHISPER_CPU_THREADS=1``), so that two worker processes on two
cores are two workers. In one run:

1. **Wall time.** A recording of ``--minutes`` of speech (the lecture fixture: varied paragraphs,
   none repeated within its twenty minutes, so that one misheard word is not misheard thirty
   times over) through the embedded stack, submit to finished, with ``WORKERS=1`` and then
   ``WORKERS=2`` (one slot each, ``SHARD_SECONDS=--shard-seconds``), against raw faster-whisper
   transcribing the same file whole. Target (issue 17): two workers at most 0.6 of one.
2. **Fidelity at the seams.** Each run's WER against the known text, and its word count, next
   to the raw (unsharded) transcript's: every shard boundary is a seam. Target: sharded WER at
   most unsharded + 0.5 points. Raw again without ``condition_on_previous_text`` shows what a
   shard's start loses: the decoder's prompt of what was said before it; the stack again with
   the default 300 s shards shows what the default costs. The commonest errors
   of raw and of the sharded run are printed too: a word lost or doubled at a seam shows as a
   deletion or an insertion.
3. **Scaling model.** Time with N workers = serial part (decode, VAD and cuts, the join) + the
   shards' work / N, both read from the one-worker run; its prediction for N = 1..8, and the
   measured two-worker time against it.
4. **Memory.** Peak RSS of the worker process (one worker) on a 10-minute recording (not split)
   and on a 4-hour one (mostly silence, speech at both ends; split). Target: at most 1.3x.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import wave
from pathlib import Path

import httpx
import imageio_ffmpeg
import jiwer
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e import Stack

SPEECH = ROOT / "tests" / "fixtures" / "speech"
LECTURE = SPEECH / "lecture.opus"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

RAW = textwrap.dedent(
    """
    import json, sys, time
    from faster_whisper import WhisperModel
    from gpu_worker.whisper import resolve_model
    from pathlib import Path
    model = WhisperModel(resolve_model(sys.argv[1], Path("/tmp")), device="cpu", compute_type="int8", cpu_threads=1)
    started = time.perf_counter()
    segments, _ = model.transcribe(sys.argv[2], language="en", beam_size=5, vad_filter=True,
                                   condition_on_previous_text=sys.argv[3] == "condition")
    text = " ".join(s.text.strip() for s in segments)
    print(json.dumps({"seconds": time.perf_counter() - started, "text": text}))
    """
)


def recording(folder: Path, minutes: float) -> tuple[Path, str]:
    """The first ``minutes`` of the lecture fixture (varied speech, a paragraph at a time, with
    2 s pauses), cut after the paragraph that reaches ``minutes`` (the lecture again from its
    start past its end); and its text."""
    paragraphs = json.loads(LECTURE.with_suffix(".json").read_text())
    whole = folder / "lecture.wav"
    if not whole.exists():
        subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-i", str(LECTURE), "-ac", "1", "-ar", "16000",
                        str(whole)], check=True)  # fmt: skip
    with wave.open(str(whole)) as w:
        length = w.getnframes() / w.getframerate()
    texts, laps = [], 0
    while True:
        for paragraph in paragraphs:
            texts.append(paragraph["text"])
            cut = laps * length + paragraph["end"] + 1.0
            if cut >= minutes * 60:
                out = folder / f"speech{minutes:g}.wav"
                subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-stream_loop", str(laps), "-i", str(whole),
                                "-t", f"{cut:.3f}", str(out)], check=True)  # fmt: skip
                return out, " ".join(texts)
        laps += 1


def mostly_silent(folder: Path, speech: Path, hours: float) -> Path:
    """``hours`` of audio: ``speech`` at the start and at the end, silence between."""
    out = folder / f"silent{hours:g}h.flac"
    gap = hours * 3600 - 2 * 60
    subprocess.run(
        [FFMPEG, "-loglevel", "error", "-y", "-i", str(speech), "-f", "lavfi", "-t", f"{gap:g}", "-i",
         "anullsrc=r=16000:cl=mono", "-i", str(speech), "-filter_complex",
         "[0:a]atrim=0:60[a];[2:a]atrim=0:60[c];[a][1:a][c]concat=n=3:v=0:a=1[o]", "-map", "[o]", "-ac", "1",
         "-ar", "16000", str(out)],
        check=True,
    )  # fmt: skip
    return out


def raw_run(model: str, clip: Path, condition: str) -> dict:
    """faster-whisper on the whole file, one thread: ``{"seconds", "text"}``."""
    command = [sys.executable, "-c", RAW, model, str(clip), condition]
    return dict(json.loads(subprocess.run(command, capture_output=True, check=True, cwd=ROOT, text=True).stdout))


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


def wer(reference: str, text: str) -> float:
    return 100 * float(jiwer.wer(norm(reference), norm(text)))


def errors(reference: str, text: str, most: int = 6) -> str:
    """The commonest errors against the text, as ``count x 'said' -> 'heard'``: a word lost or
    doubled at a seam shows as a deletion or an insertion, a word misheard as a substitution."""
    said, heard = norm(reference).split(), norm(text).split()
    found: collections.Counter[str] = collections.Counter()
    for chunk in jiwer.process_words(" ".join(said), " ".join(heard)).alignments[0]:
        if chunk.type != "equal":
            was = " ".join(said[chunk.ref_start_idx : chunk.ref_end_idx])
            now = " ".join(heard[chunk.hyp_start_idx : chunk.hyp_end_idx])
            found[f"{was!r} -> {now!r}"] += 1
    return ", ".join(f"{count} x {what}" for what, count in found.most_common(most)) or "none"


class Run:
    """One job through a fresh embedded stack, with the peak RSS of its worker processes."""

    def __init__(self, folder: Path, model: str, **settings: str) -> None:
        self.stack = Stack(folder, model, 1, **settings)
        self.workers = [c for c in psutil.Process(self.stack.process.pid).children() if "gpu_worker" in c.cmdline()]

    def job(self, clip: Path) -> tuple[float, str, dict]:
        job_id, began, _ = self.stack.submit(clip)
        took = self.stack.wait_for(job_id, {"finished"}, 0.05, timeout=3600) - began
        text = httpx.get(f"{self.stack.url}/v1/jobs/{job_id}/result", params={"format": "txt"}).text
        return took, text, httpx.get(f"{self.stack.url}/v1/jobs/{job_id}").json()

    def peak(self) -> int:
        """The largest peak RSS of the worker processes, in bytes: the kernel's high-water mark
        (``VmHWM``), exact and free, where a sampler would share the cores it measures and miss
        what lasts less than its period. A worker runs its jobs on threads, in its own process."""
        peaks = []
        for worker in self.workers:
            found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{worker.pid}/status").read_text(), re.M)
            if found is None:
                raise SystemExit(f"no VmHWM for worker process {worker.pid}: this benchmark reads Linux's /proc")
            peaks.append(int(found.group(1)) * 1024)
        return max(peaks)

    def close(self) -> None:
        self.stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--shard-seconds", type=float, default=60)
    parser.add_argument("--hours", type=float, default=4)
    args = parser.parse_args()
    sharding = {"SHARD_MIN_SECONDS": "300", "SHARD_SECONDS": f"{args.shard_seconds:g}", "MAX_AUDIO_SECONDS": "0",
                "JOB_TIMEOUT": "7200", "FFMPEG_TIMEOUT": "1800", "LOG_LEVEL": "INFO"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-long-", dir=os.environ.get("BENCH_DIR")) as tmp:
        folder = Path(tmp)
        clip, reference = recording(folder, args.minutes)
        raw, unprompted = (raw_run(args.model, clip, condition) for condition in ("condition", "no"))
        results = {}
        # The two timed runs, then the default shard length (fewer seams) for its WER.
        runs = {"WORKERS=1": {"WORKERS": "1"}, "WORKERS=2": {"WORKERS": "2"},
                "WORKERS=2, SHARD_SECONDS=300": {"WORKERS": "2", "SHARD_SECONDS": "300"}}  # fmt: skip
        for n, (name, overrides) in enumerate(runs.items()):
            run = Run(folder / f"r{n}", args.model, **{**sharding, **overrides})
            try:
                took, text, record = run.job(clip)
                log = (folder / f"r{n}" / "stack.log").read_text(errors="replace")
            finally:
                run.close()
            results[name] = (took, text, record, log)
        memory: dict[str, tuple[int, float, dict | None]] = {}
        for name, path in (
            ("10 min", recording(folder, 10)[0]),
            (f"{args.hours:g} h", mostly_silent(folder, clip, args.hours)),
        ):
            run = Run(folder / f"m{len(memory)}", args.model, WORKERS="1", SHARD_SECONDS="300", **{
                k: v for k, v in sharding.items() if k not in ("SHARD_SECONDS", "SHARD_MIN_SECONDS")})  # fmt: skip
            try:
                took, _, record = run.job(path)
                memory[name] = (run.peak(), took, record.get("shards"))
            finally:
                run.close()
    report(args, raw, unprompted, reference, results, memory)


def report(args: argparse.Namespace, raw: dict, unprompted: dict, reference: str, results: dict, memory: dict) -> None:
    one, two = results["WORKERS=1"][0], results["WORKERS=2"][0]
    print(f"\na {args.minutes:g}-minute recording in shards of about {args.shard_seconds:g} s, {args.model}, "
          f"1 CPU thread each ({os.cpu_count()} cores)\n")  # fmt: skip
    print(f"{'measure':<52}{'value':>12}{'vs':>12}{'ratio':>8}   target")
    print(f"{'raw faster-whisper, whole file, s':<52}{raw['seconds']:>12.1f}")
    print(
        f"{'stack, WORKERS=1: submit -> finished, s':<52}{one:>12.1f}{raw['seconds']:>12.1f}"
        f"{one / raw['seconds']:>8.2f}"
    )
    verdict = "met" if two <= 0.6 * one else "MISSED"
    print(
        f"{'stack, WORKERS=2: submit -> finished, s':<52}{two:>12.1f}{one:>12.1f}{two / one:>8.2f}   <= 0.6: {verdict}"
    )
    raw_wer, words = wer(reference, raw["text"]), len(norm(reference).split())
    print(f"\n{'WER, words (reference: ' + str(words) + ' words)':<52}{'WER %':>12}{'words':>12}")

    def row(label: str, text: str, target: str = "") -> None:
        print(f"{label:<52}{wer(reference, text):>12.2f}{len(norm(text).split()):>12}{target}")

    row("raw, unsharded", raw["text"])
    row("raw, unsharded, no previous text as prompt", unprompted["text"])
    for name, (_, text, record, _) in results.items():
        verdict = "met" if wer(reference, text) <= raw_wer + 0.5 else "MISSED"
        row(f"stack, {name} ({(record.get('shards') or {}).get('total')} shards)", text, f"   <= raw + 0.5: {verdict}")
    print(f"  errors, raw: {errors(reference, raw['text'])}")
    print(f"  errors, WORKERS=1: {errors(reference, results['WORKERS=1'][1])}")
    # Amdahl: the split runs on one worker whatever N is; the rest (the shards, and the small join) is
    # shared out. Both parts are read from the one-worker run, so N=2 is a prediction, not a fit.
    split = split_from_log(results["WORKERS=1"][3])
    parallel = one - split
    print(f"\nscaling model: T(N) = {split:.1f} s serial (fetch, decode, VAD, cuts) + {parallel:.1f} s of shards / N")
    print("  " + ", ".join(f"N={n}: {split + parallel / n:.0f} s" for n in (1, 2, 3, 4, 8)))
    predicted = split + parallel / 2
    print(f"  measured N=2: {two:.1f} s, {two / predicted:.2f}x the prediction ({predicted:.1f} s)")
    small, big = memory["10 min"], memory[f"{args.hours:g} h"]
    verdict = "met" if big[0] <= 1.3 * small[0] else "MISSED"
    print(f"\n{'peak worker RSS, MiB':<52}{'value':>12}{'vs 10 min':>12}{'ratio':>8}")
    print(f"{'10 min of speech (not split), ' + f'{small[1]:.0f} s':<52}{small[0] / 2**20:>12.0f}")
    label = f"{args.hours:g} h, mostly silence ({(big[2] or {}).get('total')} shards), {big[1]:.0f} s"
    print(f"{label:<52}{big[0] / 2**20:>12.0f}{small[0] / 2**20:>12.0f}{big[0] / small[0]:>8.2f}   <= 1.3: {verdict}")


def split_from_log(log: str) -> float:
    """Seconds from the job's start to the queueing of its shards, from the worker's log lines."""
    started = re.search(r"^(\S+ \S+) .*: started \(attempt 1\)", log, re.M)
    split = re.search(r"^(\S+ \S+) .* split into \d+ shards", log, re.M)
    if not (started and split):
        return 0.0

    def at(stamp: str) -> float:
        return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + float(stamp[19:].replace(",", "."))

    return at(split.group(1)) - at(started.group(1))


if __name__ == "__main__":
    main()
