"""The memory and time of the whole embedded stack against a bare faster-whisper process, in one run.

    .venv/bin/python bench/footprint.py [--model base|tiny.en|both] [--minutes 18] [--threads 2]
                                        [--settle 15] [--creep-wait 30] [--env NAME=VALUE ...]

``--model both`` runs tiny.en, then base, each against its own bare process. For each model:

1. **Idle.** The embedded stack (``python -m embedded``: its own redis-server on a free port, the
   watcher, router, one worker, webhook sender, janitor and API) on a fresh data folder, with
   ``WHISPER_CPU_THREADS=--threads``, ``LOG_LEVEL=WARNING`` and otherwise its defaults. Every
   service's ``/readyz`` is polled until it answers 200 (what the stack waits for before it prints
   "ready", an INFO line that ``LOG_LEVEL=WARNING`` hides); each background service gets a free
   metrics port for it, as by default it has one: with ``*_METRICS_PORT=0`` (as e2e.py runs)
   only the API's would be asked, before the worker's model is loaded. Then ``--settle`` seconds,
   then the PSS (``/proc/<pid>/smaps_rollup``) summed over the supervisor and every descendant.
   Against it: a bare Python process that imports faster-whisper, loads the same model folder
   (``gpu_worker.whisper.resolve_model``; for base the folder the stack's worker assembled) with
   ``WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=--threads)`` and waits;
   its PSS ``--settle`` seconds after loading.
2. **Peak.** ``--minutes`` of the lecture fixture (``tests.helpers.lecture``, to the end of the
   paragraph that reaches it) as a 48 kHz, 2-channel, 16-bit WAV with the same speech in both
   channels, uploaded (``POST /v1/transcribe``, language en) and polled (``GET /v1/jobs/{id}``)
   until finished, the summed PSS of the stack's tree sampled every 0.2 s from just before the POST
   to finished; against the bare process's PSS, sampled the same way, while it transcribes the
   same file as the worker does (language en, beam 5, VAD, the rest faster-whisper's defaults, so
   ``condition_on_previous_text``; every segment consumed).
   The stereo: a job is split by channel only with ``multichannel=true``; without it the worker's
   ffmpeg mixes the input down to one 16 kHz stream (``gpu_worker.audio.decode_channels``, ``-ac 1``),
   as faster-whisper's own decoder (PyAV, the same libswresample) does in the bare process. With
   equal channels the mix is that channel: each side transcribes one copy of the speech, once.
   What differs is the stack's own design, measured as it runs by default: audio longer than
   ``SHARD_MIN_SECONDS`` (900 s) is cut by a VAD pass into shards of about ``SHARD_SECONDS``
   (300 s), transcribed as jobs of their own on the worker's ``MAX_CONCURRENCY`` (2) slots, two at
   once, sharing one copy of the model; the shards' count is printed. ``--env SHARD_MIN_SECONDS=0``
   measures the stack transcribing the file whole instead. Whole, faster-whisper computes the mel
   features of all the speech at once: for 18 minutes an STFT of 17 M samples that takes about
   0.8 GiB at its peak, which is most of the bare process's peak; a shard's is a quarter of it.
3. **Worker creep.** The worker process's RSS (and PSS) when idle before the job and
   ``--creep-wait`` seconds after it finished; then the same job again, to see whether a second
   one leaves more. Each time the worker's resident memory is split from ``/proc/<pid>/smaps``
   into anonymous mappings (the heap, malloc's arenas, the model's weights: where a leak or
   memory held after a job shows) and file-backed ones (libraries' code and data, read in as first
   used: the VAD's onnxruntime on the first job, say, which stays and does not grow).
4. **Wall time.** Stack: just before the POST to the poll that reads finished (the upload of the
   WAV included, the stack already up). Bare: its ``transcribe`` call and the segments consumed,
   model load excluded, timed in the bare process and reported on stdout as a JSON line.

The stack is stopped (SIGINT to the supervisor, then its remaining tree killed) before the bare
process starts, so that neither shares the cores or the pages of shared libraries with the other.
PSS divides a shared page among every process that maps it, other users' processes included, so
a shared library weighs less while something else on the machine maps it too.

Targets (issue: footprint), for base; the same printed for tiny.en, informational:
- idle summed PSS <= bare + 200 MiB;
- peak summed PSS <= 1.15 x bare's peak;
- the worker's RSS 30 s after the job <= its idle RSS + 100 MiB;
- wall time <= 1.1 x bare.
Exits 0 whatever the figures (a measurement); 1 only if the stack or a job fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import imageio_ffmpeg
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import wait_ready
from embedded.redis_server import free_port
from gpu_worker.whisper import resolve_model
from tests.helpers import lecture

SPEECH = ROOT / "tests" / "fixtures" / "speech"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
MIB = 2**20
SERVICES = ("ROUTER", "WORKER", "JANITOR", "WEBHOOK")  # the background services with a metrics port
SAMPLE_SECONDS = 0.2

# The bare side: faster-whisper and nothing else. It says when it has loaded, transcribes the file
# named on its stdin, says how long that took, and waits to be told to exit (to be measured after).
BARE = textwrap.dedent(
    """
    import json, sys, time
    from faster_whisper import WhisperModel
    folder, threads = sys.argv[1], int(sys.argv[2])
    started = time.perf_counter()
    model = WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=threads)
    print(json.dumps({"loaded": time.perf_counter() - started}), flush=True)
    wav = sys.stdin.readline().strip()
    started = time.perf_counter()
    segments, info = model.transcribe(wav, language="en", beam_size=5, vad_filter=True)
    text = " ".join(segment.text.strip() for segment in segments)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "words": len(text.split()), "duration": info.duration}), flush=True)
    sys.stdin.readline()
    """
)


@dataclass(frozen=True)
class Usage:
    """A process's proportional and resident set sizes, in bytes."""

    pss: int
    rss: int


Shot = dict[int, Usage]  # pid -> its usage at one moment


def usage(pid: int) -> Usage | None:
    """From ``/proc/<pid>/smaps_rollup``; None once the process is gone (or a zombie)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return None
    sizes = {name: int(value.split()[0]) * 1024 for name, value in (line.split(":", 1) for line in lines)}
    if "Pss" not in sizes:
        return None
    return Usage(sizes["Pss"], sizes["Rss"])


def peak_rss(pid: int) -> int:
    """The kernel's high-water mark of the process's RSS (``VmHWM``), in bytes: what a sampler misses."""
    found = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(found.group(1)) * 1024 if found else 0


Kinds = tuple[int, int]  # a process's resident bytes: anonymous, file-backed


def kinds(pid: int) -> Kinds:
    """From ``/proc/<pid>/smaps``: what is resident in anonymous mappings (the heap, malloc's
    arenas, the model's weights) and in file-backed ones (libraries' pages, read as first used)."""
    anonymous = backed = 0
    named = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
            named = len(fields) > 5 and fields[5].startswith("/")
        elif fields and fields[0] == "Rss:":
            if named:
                backed += int(fields[1]) * 1024
            else:
                anonymous += int(fields[1]) * 1024
    return anonymous, backed


def tree(root: psutil.Process) -> list[psutil.Process]:
    """The process and every descendant (redis-server and the services each in a session of their own)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def label(process: psutil.Process) -> str:
    """Its command line, the interpreter's folder left out."""
    try:
        # redis-server rewrites its title as one word, padded with spaces
        words = " ".join(process.cmdline()).split() or [process.name()]
    except psutil.Error:
        return "?"
    text = " ".join([Path(words[0]).name, *words[1:]]).replace(str(ROOT) + "/", "")
    return text if len(text) <= 100 else text[:97] + "..."


class Sampler:
    """The tree's summed PSS every ``SAMPLE_SECONDS`` on a thread of its own: its peak, every
    process's usage at that peak, and each process's own peak PSS."""

    def __init__(self, root: psutil.Process, labels: dict[int, str]) -> None:
        self.root = root
        self.labels = labels
        self.peak = 0
        self.at_peak: Shot = {}
        self.own: Shot = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        shot = snapshot(self.root, self.labels)
        self.samples += 1
        total = sum(u.pss for u in shot.values())
        if total > self.peak:
            self.peak, self.at_peak = total, shot
        for pid, now in shot.items():
            was = self.own.get(pid, Usage(0, 0))
            self.own[pid] = Usage(max(was.pss, now.pss), max(was.rss, now.rss))


def snapshot(root: psutil.Process, labels: dict[int, str]) -> Shot:
    """Every process of the tree's usage, now; each one's command line kept in ``labels``."""
    shot = {}
    for process in tree(root):
        if (now := usage(process.pid)) is not None:
            shot[process.pid] = now
            if process.pid not in labels:
                labels[process.pid] = label(process)
    return shot


class Stack:
    """``python -m embedded`` on a data folder of its own, with its own redis-server."""

    def __init__(self, folder: Path, model: str, threads: int, overrides: dict[str, str]) -> None:
        ports = distinct_ports(1 + len(SERVICES))
        self.url = f"http://127.0.0.1:{ports[0]}"
        self.readyz = [f"http://127.0.0.1:{port}/readyz" for port in ports]
        self.data = folder / "data"
        env = {
            **os.environ,
            "DATA_DIR": str(self.data),
            "EMBEDDED_REDIS_PORT": "0",
            "API_PORT": str(ports[0]),
            "MODEL_SIZE": model,
            "WHISPER_CPU_THREADS": str(threads),
            "LOG_LEVEL": "WARNING",
            **{f"{name}_METRICS_PORT": str(port) for name, port in zip(SERVICES, ports[1:], strict=True)},
            **overrides,
        }
        env.pop("REDIS_URL", None)  # its own Redis, in its tree
        folder.mkdir(parents=True, exist_ok=True)
        self.log: IO[bytes] = (folder / "stack.log").open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "embedded"], env=env, cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        self.root = psutil.Process(self.process.pid)
        self.labels: dict[int, str] = {}
        self.seen: dict[int, psutil.Process] = {}

    def wait_ready(self, timeout: float = 300) -> None:
        """Every ``/readyz`` answers 200 (the worker's once its model is loaded) and a worker is registered."""
        waiting, deadline = list(self.readyz), time.monotonic() + timeout
        while waiting:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the stack did not come up ({', '.join(waiting)}); see {self.log.name}")
            waiting = [url for url in waiting if not answers(url)]
            time.sleep(0.2)
        wait_ready(self.url, self.process)

    def processes(self) -> list[psutil.Process]:
        found = tree(self.root)
        self.seen.update((p.pid, p) for p in found)
        return found

    def worker(self) -> psutil.Process:
        workers = [p for p in self.processes() if "gpu_worker" in p.cmdline()]
        if len(workers) != 1:
            raise SystemExit(f"expected one worker process, found {len(workers)}")
        return workers[0]

    def submit(self, wav: Path) -> tuple[str, float]:
        """The job id, and when its POST began."""
        with httpx.Client(timeout=600) as client, wav.open("rb") as body:
            began = time.perf_counter()
            response = client.post(
                f"{self.url}/v1/transcribe",
                data={"source_type": "upload", "language": "en"},
                files={"file": (wav.name, body, "audio/wav")},
            )
        response.raise_for_status()
        return str(response.json()["job_id"]), began

    def wait(self, job_id: str, timeout: float = 7200) -> tuple[dict[str, Any], float]:
        """The job's view once finished, and when the poll read it; SystemExit if it failed."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=30) as client:
            while True:
                view = dict(client.get(f"{self.url}/v1/jobs/{job_id}").json())
                if view["status"] == "finished":
                    return view, time.perf_counter()
                if view["status"] in ("failed", "cancelled") or time.monotonic() > deadline:
                    raise SystemExit(f"job {job_id}: {view['status']}: {view.get('error')}; see {self.log.name}")
                time.sleep(0.1)

    def words(self, job_id: str) -> int:
        text = httpx.get(f"{self.url}/v1/jobs/{job_id}/result", params={"format": "txt"}, timeout=30).text
        return len(text.split())

    def close(self) -> None:
        """SIGINT to the supervisor, as Ctrl-C; whatever of its tree is left after it, killed."""
        left = [*self.seen.values(), *self.processes()]
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                print("the stack did not stop within 90 s of SIGINT; killing its processes", file=sys.stderr)
        _, alive = psutil.wait_procs(left, timeout=5)
        for process in alive:
            process.kill()
        psutil.wait_procs(alive, timeout=5)
        self.process.poll()
        self.log.close()


def distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class StackRun:
    processes: list[str]  # every command line at idle, in the order of the tree
    idle: Shot
    sampler: Sampler
    seconds: float
    worker_pid: int
    worker_idle: Usage
    worker_after: Usage
    worker_hwm: int
    view: dict[str, Any]
    words: int
    worker_memory: tuple[Kinds, Kinds, Kinds]  # idle, after the job, after a second


@dataclass
class BareRun:
    load: float
    idle: Usage
    peak: int
    seconds: float
    words: int
    hwm: int
    own: Shot = field(default_factory=dict)


def run_stack(folder: Path, model: str, wav: Path, args: argparse.Namespace) -> StackRun:
    stack = Stack(folder, model, args.threads, dict(args.env))
    try:
        stack.wait_ready()
        time.sleep(args.settle)
        idle = snapshot(stack.root, stack.labels)
        worker = stack.worker()
        worker_idle = usage(worker.pid) or Usage(0, 0)
        worker_kinds = kinds(worker.pid)
        with Sampler(stack.root, stack.labels) as sampler:
            job_id, began = stack.submit(wav)
            view, ended = stack.wait(job_id)
        stack.processes()
        words = stack.words(job_id)
        time.sleep(args.creep_wait)
        worker_after = usage(worker.pid) or Usage(0, 0)
        hwm = peak_rss(worker.pid)
        after = kinds(worker.pid)
        stack.wait(stack.submit(wav)[0])  # the same job again: what a second one leaves
        time.sleep(args.creep_wait)
        order = [stack.labels[pid] for pid in idle]
        memory = (worker_kinds, after, kinds(worker.pid))
        return StackRun(
            order, idle, sampler, ended - began, worker.pid, worker_idle, worker_after, hwm, view, words, memory
        )
    finally:
        stack.close()


def run_bare(folder: str, wav: Path, threads: int, settle: float, log: Path) -> BareRun:
    with log.open("wb") as errors:
        process = subprocess.Popen([sys.executable, "-c", BARE, folder, str(threads)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=errors, cwd=ROOT, text=True)  # fmt: skip
        try:
            return bare_steps(process, wav, settle, log)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def bare_steps(process: subprocess.Popen[str], wav: Path, settle: float, log: Path) -> BareRun:
    assert process.stdin is not None

    def said() -> dict[str, Any]:
        line = process.stdout.readline() if process.stdout else ""  # the pipe asked for above
        if not line:
            raise SystemExit(f"the bare process ended early:\n{log.read_text(errors='replace')[-3000:]}")
        return dict(json.loads(line))

    loaded = said()["loaded"]
    time.sleep(settle)
    idle = usage(process.pid) or Usage(0, 0)
    root, labels = psutil.Process(process.pid), {process.pid: "bare faster-whisper"}
    with Sampler(root, labels) as sampler:
        process.stdin.write(f"{wav}\n")
        process.stdin.flush()
        done = said()
    hwm = peak_rss(process.pid)
    process.stdin.write("exit\n")
    process.stdin.flush()
    return BareRun(loaded, idle, sampler.peak, done["seconds"], done["words"], hwm, sampler.own)


def recording(folder: Path, minutes: float) -> tuple[Path, float]:
    """The lecture up to the end of the paragraph that reaches ``minutes``, as a 48 kHz 16-bit WAV
    whose two channels are the same speech (copied, not mixed: sample for sample equal); its length."""
    ends = [p["end"] for p in json.loads((SPEECH / "lecture.json").read_text())]
    reach = min((end for end in ends if end >= minutes * 60), default=ends[-1])
    mono = folder / "lecture.flac"
    lecture(mono, reach)
    wav = folder / f"lecture-{minutes:g}min-48k-stereo.wav"
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-i", str(mono), "-af", "pan=stereo|c0=c0|c1=c0",
                    "-ar", "48000", "-c:a", "pcm_s16le", str(wav)], check=True)  # fmt: skip
    mono.unlink()
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 48000, 2)
        return wav, w.getnframes() / w.getframerate()


def measure(folder: Path, model: str, wav: Path, args: argparse.Namespace) -> tuple[StackRun, BareRun]:
    print(f"{model}: the stack ...", flush=True)
    stack = run_stack(folder / model, model, wav, args)
    location = resolve_model(model, folder / model / "data" / "models")  # base: the folder the worker assembled
    print(f"{model}: bare faster-whisper on {location} ...", flush=True)
    bare = run_bare(location, wav, args.threads, args.settle, folder / f"bare-{model}.log")
    return stack, bare


Row = tuple[str, float, float, float, str, bool]  # measure, stack, bare, ratio, target, met


def rows(stack: StackRun, bare: BareRun) -> list[Row]:
    idle = sum(u.pss for u in stack.idle.values()) / MIB
    peak, bare_peak = stack.sampler.peak / MIB, bare.peak / MIB
    before, after = stack.worker_idle.rss / MIB, stack.worker_after.rss / MIB
    return [
        (f"idle: summed PSS ({len(stack.idle)} processes vs 1), MiB", idle, bare.idle.pss / MIB,
         idle / (bare.idle.pss / MIB), "<= bare + 200 MiB", idle <= bare.idle.pss / MIB + 200),
        ("peak: summed PSS during the job, MiB", peak, bare_peak, peak / bare_peak, "<= 1.15 x bare",
         peak <= 1.15 * bare_peak),
        ("worker RSS: after job (+wait) vs its idle, MiB", after, before, after / before, "<= idle + 100 MiB",
         after <= before + 100),
        ("wall: submit -> finished vs transcribe, s", stack.seconds, bare.seconds, stack.seconds / bare.seconds,
         "<= 1.1 x bare", stack.seconds <= 1.1 * bare.seconds),
    ]  # fmt: skip


def report(model: str, audio: float, stack: StackRun, bare: BareRun, args: argparse.Namespace) -> list[Row]:
    shards = stack.view.get("shards") or {}
    print(f"\n{model}: the embedded stack against bare faster-whisper ({os.cpu_count()} cores, int8, "
          f"{args.threads} CPU threads; {audio / 60:.1f} min of 48 kHz stereo, the same speech in both channels; "
          f"{shards.get('total', 'no')} shards{', ' + fmt_env(args.env) if args.env else ''})\n")  # fmt: skip
    print(f"{'measure':<50}{'stack':>10}{'bare':>10}{'ratio':>8}   {'target':<20}verdict")
    table = rows(stack, bare)
    for measure_, ours, theirs, ratio, target, met in table:
        print(f"{measure_:<50}{ours:>10.1f}{theirs:>10.1f}{ratio:>8.2f}   {target:<20}{'met' if met else 'MISSED'}")
    w_idle, w_after = stack.worker_idle, stack.worker_after
    print(f"{'  worker PSS: after job (+wait) vs its idle, MiB':<50}{w_after.pss / MIB:>10.1f}{w_idle.pss / MIB:>10.1f}"
          f"{w_after.pss / w_idle.pss:>8.2f}")  # fmt: skip
    print(f"{'  peak RSS (VmHWM): worker vs bare, MiB':<50}{stack.worker_hwm / MIB:>10.1f}{bare.hwm / MIB:>10.1f}"
          f"{stack.worker_hwm / bare.hwm:>8.2f}")  # fmt: skip
    (idle_anon, idle_file), (one_anon, one_file), (two_anon, two_file) = stack.worker_memory
    print(f"  worker RSS, anonymous + file-backed (smaps), MiB: idle {idle_anon / MIB:.0f} + {idle_file / MIB:.0f}; "
          f"after the job {one_anon / MIB:.0f} + {one_file / MIB:.0f}; after the same job again "
          f"{two_anon / MIB:.0f} + {two_file / MIB:.0f}")  # fmt: skip
    print(f"{'  words transcribed':<50}{stack.words:>10}{bare.words:>10}{stack.words / max(1, bare.words):>8.2f}")
    print(f"  bare: model loaded in {bare.load:.1f} s; PSS sampled every {SAMPLE_SECONDS:g} s "
          f"({stack.sampler.samples} samples of the stack's tree)")  # fmt: skip
    processes(stack)
    return table


def processes(stack: StackRun) -> None:
    """Where the memory is: each process at idle, at the stack's peak, and at its own peak."""
    print("\n  the stack's processes, MiB: idle PSS / RSS; PSS at the tree's peak; each one's own peak PSS / RSS")
    print(f"  {'pid':>8}{'idle PSS':>10}{'RSS':>8}{'at peak':>9}{'own peak':>10}{'RSS':>8}  command")
    labels = stack.sampler.labels
    for pid in sorted({*stack.idle, *stack.sampler.own}, key=lambda p: (p not in stack.idle, p)):
        (idle_pss, idle_rss), (at_pss, _), (own_pss, own_rss) = (
            mib(shot.get(pid)) for shot in (stack.idle, stack.sampler.at_peak, stack.sampler.own)
        )
        mark = " (the worker)" if pid == stack.worker_pid else ""
        print(f"  {pid:>8}{idle_pss:>10}{idle_rss:>8}{at_pss:>9}{own_pss:>10}{own_rss:>8}  "
              f"{labels.get(pid, '?')}{mark}")  # fmt: skip


def mib(value: Usage | None) -> tuple[str, str]:
    """PSS and RSS in MiB, or dashes where the process was not there."""
    return ("-", "-") if value is None else (f"{value.pss / MIB:.0f}", f"{value.rss / MIB:.0f}")


def fmt_env(pairs: list[tuple[str, str]]) -> str:
    return " ".join(f"{name}={value}" for name, value in pairs)


def pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("base", "tiny.en", "both"), default="base")
    parser.add_argument("--minutes", type=float, default=18, help="of speech, at most the lecture's 20")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settle", type=float, default=15, help="seconds after ready before the idle figures")
    parser.add_argument("--creep-wait", type=float, default=30, help="seconds after the job before the worker's")
    parser.add_argument("--env", type=pair, action="append", default=[], help="NAME=VALUE for the stack")
    args = parser.parse_args()
    models = ["tiny.en", "base"] if args.model == "both" else [args.model]
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench-footprint-", dir=os.environ.get("BENCH_DIR")) as tmp:
        folder = Path(tmp)
        wav, audio = recording(folder, args.minutes)
        for model in models:
            stack, bare = measure(folder, model, wav, args)
            table = report(model, audio, stack, bare, args)
            missed = "".join(f"; MISSED: {row[0].split(':')[0]}" for row in table if not row[5])
            aside = "" if model == "base" else " (the targets are base's: informational)"
            verdicts.append(f"{model}: {sum(met for *_, met in table)} of {len(table)} targets met{missed}{aside}")
    print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
