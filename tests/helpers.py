"""Real servers on loopback for the tests: a webhook receiver and a static file server."""

from __future__ import annotations

import base64
import functools
import json
import random
import re
import subprocess
import threading
import time
import urllib.parse
import wave
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import imageio_ffmpeg
import jiwer
from standardwebhooks import Webhook, WebhookVerificationError

SPEECH = Path(__file__).parent / "fixtures" / "speech"
# The Standard Webhooks secret the test stacks sign with and the receiver verifies with.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"test-secret-0123456789abcdef0123").decode()


# What no error a caller reads may show: a bucket name with a key, a key of a job's folder, a path
# on the server (its data folder, its scratch space, its installed code).
LEAKS = re.compile(
    r"transcribe(?:-inbox)?/"
    r"|[0-9a-f]{32}/(?:manifest\.json|status\.json|input/|result\.)"
    r"|(?<![\w.:/-])/(?:tmp|work|root|home|var|usr|opt|srv|data)/"
)


def leaks(text: str) -> list[str]:
    return LEAKS.findall(text)


def silence(path: Path, seconds: float, *extra: str, rate: int = 8000) -> Path:
    """Silence made with ffmpeg: a small file (FLAC, say) that decodes to as long as asked."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i"]
    subprocess.run([*command, f"anullsrc=r={rate}:cl=mono", "-t", f"{seconds:g}", *extra, str(path)], check=True)
    return path


def damaged(path: Path, seconds: float, good: float) -> Path:
    """An AAC recording of ``seconds`` whose audio after about ``good`` seconds is noise bytes (its
    index intact): ffmpeg decodes the start, then gives up when most frames fail to decode."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i"]
    tone = [f"sine=f=440:d={seconds:g}", "-c:a", "aac", "-movflags", "+faststart", str(path)]
    subprocess.run([*command, *tone], check=True)
    data = bytearray(path.read_bytes())
    start = int(len(data) * good / seconds)  # faststart: the index first, then the audio at a steady rate
    data[start:-16] = random.Random(17).randbytes(len(data) - 16 - start)
    path.write_bytes(bytes(data))
    return path


LONG_PARTS = ("url", "upload", "inbox")  # the long recording's pieces, in order


def long_speech(path: Path, repeats: int = 2, pause: float = 1.5) -> Path:
    """A long recording made of the speech fixtures, each followed by ``pause`` seconds of
    silence, ``repeats`` times over (about 40 s each time); its text is ``long_text(repeats)``."""
    files = [SPEECH / f"{name}.{ext}" for name, ext in zip(LONG_PARTS, ("wav", "mp3", "mp4"), strict=True)]
    inputs = [arg for _ in range(repeats) for file in files for arg in ("-i", str(file))]
    count = len(inputs) // 2
    padded = "".join(f"[{n}:a]aresample=16000,apad=pad_dur={pause:g}[a{n}];" for n in range(count))
    joined = "".join(f"[a{n}]" for n in range(count)) + f"concat=n={count}:v=0:a=1[out]"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", *inputs]
    subprocess.run([*command, "-filter_complex", padded + joined, "-map", "[out]", "-ac", "1", str(path)], check=True)
    return path


def interleaved_call(path: Path) -> list[dict[str, object]]:
    """A stereo WAV at ``path`` made from ``call.mp3``'s turns: the customer's first line, the
    agent's first two back to back (about 10 s), the customer's second; each on its channel, 19 s
    in all (one shard). The customer's channel is silent for the agent's whole turn, inside one
    30 s window: decoded as one, tiny.en made its two lines one segment across the agent's turn
    (issue 34). Returns the turns as ``call.json`` gives them: speaker, start, end, text."""
    import numpy as np

    rate, gap = 16000, 0.6
    said = json.loads((SPEECH / "call.json").read_text())

    def channel(n: int) -> np.ndarray:
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(SPEECH / "call.mp3")]
        command += ["-af", f"pan=mono|c0=c{n}", "-ar", str(rate), "-f", "s16le", "-"]
        return np.frombuffer(subprocess.run(command, capture_output=True, check=True).stdout, np.int16)

    sides = {"agent": channel(0), "customer": channel(1)}
    order = [said[1], said[0], said[2], said[3]]  # customer, agent x2, customer
    left, right, turns, at = [], [], [], 0.0
    for n, turn in enumerate(order):
        if (n and turn["speaker"] != order[n - 1]["speaker"]) or n in (2, 3):
            pause = np.zeros(int(gap * rate), np.int16)
            left.append(pause), right.append(pause)
            at += gap
        voice = sides[turn["speaker"]][int(turn["start"] * rate) : int((turn["end"] + 0.1) * rate)]
        quiet = np.zeros(voice.size, np.int16)
        left.append(voice if turn["speaker"] == "agent" else quiet)
        right.append(voice if turn["speaker"] == "customer" else quiet)
        turns.append({**turn, "start": round(at, 3), "end": round(at + voice.size / rate, 3)})
        at += voice.size / rate
    stereo = np.column_stack([np.concatenate(left), np.concatenate(right)])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(stereo.tobytes())
    return turns


def long_text(repeats: int = 2) -> str:
    return " ".join(speech_text(name) for _ in range(repeats) for name in LONG_PARTS)


def lecture(path: Path, seconds: float) -> str:
    """The lecture fixture's first paragraphs, as many as end within ``seconds``, written to
    ``path`` (its extension says how) with the second of silence after the last; their text. Varied
    speech of a known text and any length: tiny.en decodes it at ten times real time, where a clip
    read over and over makes it repeat itself and fall back to slower decoding."""
    paragraphs = [p for p in json.loads((SPEECH / "lecture.json").read_text()) if p["end"] <= seconds]
    assert paragraphs, f"the lecture's first paragraph is longer than {seconds} s"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(SPEECH / "lecture.opus")]
    subprocess.run([*command, "-t", f"{paragraphs[-1]['end'] + 1:.3f}", "-ac", "1", str(path)], check=True)
    return " ".join(p["text"] for p in paragraphs)


def speech_text(name: str) -> str:
    return (SPEECH / f"{name}.txt").read_text()


def wer(reference: str, hypothesis: str) -> float:
    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())

    return float(jiwer.wer(norm(reference), norm(hypothesis)))


class Receiver:
    """A webhook consumer built on the ``standardwebhooks`` library, as a user would write one:
    every POST is verified with ``secret`` and refused with 401 if the signature is wrong. It
    records each call (path, headers, body, JSON, whether it verified, when) and answers 204, or
    what ``script`` told it to answer for that path, call by call."""

    def __init__(self, secret: str, port: int = 0) -> None:
        self.calls: list[dict] = []
        self.scripts: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.holds: dict[str, threading.Event] = {}
        self.lock = threading.Condition()
        self.webhook = Webhook(secret)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    receiver.webhook.verify(body, {k.lower(): v for k, v in self.headers.items()})
                    verified = True
                except WebhookVerificationError:
                    verified = False
                with receiver.lock:
                    script = receiver.scripts.get(self.path, [])
                    status, headers = script.pop(0) if script else (204, {})
                    receiver.calls.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                            "json": json.loads(body),
                            "verified": verified,
                            "at": time.monotonic(),
                            "answered": status if verified else 401,
                        }
                    )
                    receiver.lock.notify_all()
                    hold = receiver.holds.pop(self.path, None)
                if hold is not None:
                    hold.wait()
                self.send_response(status if verified else 401)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def script(self, path: str, *answers: int | tuple[int, dict[str, str]]) -> str:
        """Answer the next calls to ``path`` with these statuses (and headers); then 204. The URL."""
        with self.lock:
            self.scripts[path] = [a if isinstance(a, tuple) else (a, {}) for a in answers]
        return f"{self.url}{path}"

    def hold(self, path: str) -> threading.Event:
        """Keep the next call to ``path`` unanswered (recorded, though) until the event is set."""
        with self.lock:
            self.holds[path] = held = threading.Event()
        return held

    def on_path(self, path: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["path"] == path]

    def for_job(self, job_id: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["json"].get("job_id") == job_id]

    def wait_for(self, job_id: str, timeout: float = 300.0) -> dict:  # the stack's JOB_TIMEOUT: a job ends by then
        deadline = time.monotonic() + timeout
        with self.lock:
            while not (calls := [c for c in self.calls if c["json"].get("job_id") == job_id]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no webhook for job {job_id} within {timeout} s")
                self.lock.wait(remaining)
            assert calls[0]["verified"], "the standardwebhooks library refused the webhook's signature"
            shown = json.dumps([calls[0]["json"].get("error"), calls[0]["json"].get("warnings")])
            assert not leaks(shown), f"the webhook of job {job_id} names a bucket, key or path: {shown}"
            return calls[0]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FileServer:
    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietFiles, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _TrickyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        hits = self.server.hits  # type: ignore[attr-defined]
        hits[self.path] = hits.get(self.path, 0) + 1
        route = self.path.split("?", 1)[0].split("/", 2)[1]
        try:
            getattr(self, f"_{route}", self._missing)()
        except OSError:
            return  # the client hung up on an endless answer

    def _flaky(self) -> None:
        _, _, failures, name = self.path.split("/", 3)
        if self.server.hits[self.path] <= int(failures):
            self._send(503, b"try later")
        else:
            self._send(200, (SPEECH / name).read_bytes())

    def _redirect(self) -> None:
        self._head(302, location=urllib.parse.unquote(self.path.split("to=", 1)[1]), content_length="0")

    def _big(self) -> None:
        self._head(200, content_length=str(64 * 2**20))

    def _endless(self) -> None:
        self._head(200)  # no length: only counting the bytes can stop this
        while True:
            self.wfile.write(b"\0" * 65536)

    def _slow(self) -> None:
        self._head(200)
        while True:
            self.wfile.write(b"\0")
            self.wfile.flush()
            time.sleep(0.5)

    def _silent(self) -> None:
        self._head(200, content_length="1000")  # then nothing, for longer than any test waits
        self.wfile.flush()
        time.sleep(300)

    def _missing(self) -> None:
        self._send(404, b"no such file")

    def _head(self, status: int, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def _send(self, status: int, body: bytes) -> None:
        self._head(status, content_length=str(len(body)))
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class TrickyServer:
    """Sources that misbehave on purpose. ``/flaky/<n>/<file>`` answers 503 to the first n requests
    for that path, then serves the fixture; ``/missing`` is 404; ``/slow`` trickles a byte every
    half second, forever; ``/silent`` sends its headers and then nothing; ``/redirect?to=<url>``
    redirects; ``/big`` declares 64 MiB; ``/endless`` streams zeros without a length, forever.
    ``hits`` counts the requests per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _TrickyHandler)
        self.server.hits = self.hits  # type: ignore[attr-defined]
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


class GatedServer:
    """Serves a fixture's first half at once, then a byte at a time while the gate is shut, and
    the rest once ``open()`` is called: a job that stays in its fetch for as long as a test needs,
    and that its worker can still interrupt (it never blocks long in one read). ``asked`` is set
    once a request has come."""

    def __init__(self, name: str) -> None:
        self.data = (SPEECH / name).read_bytes()
        self.gate = threading.Event()
        self.asked = threading.Event()
        gated = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gated.asked.set()
                half = len(gated.data) // 2
                self.send_response(200)
                self.send_header("content-length", str(len(gated.data)))
                self.end_headers()
                try:
                    self.wfile.write(gated.data[:half])
                    self.wfile.flush()
                    while not gated.gate.wait(0.2) and half < len(gated.data) - 1:
                        self.wfile.write(gated.data[half : half + 1])
                        self.wfile.flush()
                        half += 1
                    gated.gate.wait()
                    self.wfile.write(gated.data[half:])
                except OSError:
                    return  # the worker gave up on it

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{name}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def open(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
