"""Real servers on loopback for the tests: a webhook receiver and a static file server."""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jiwer

SPEECH = Path(__file__).parent / "fixtures" / "speech"


def speech_text(name: str) -> str:
    return (SPEECH / f"{name}.txt").read_text()


def wer(reference: str, hypothesis: str) -> float:
    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())

    return float(jiwer.wer(norm(reference), norm(hypothesis)))


class Receiver:
    """Records every POST it gets: the path, headers and JSON body."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.calls.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "json": json.loads(body)}
                    )
                    receiver.lock.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_job(self, job_id: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["json"].get("job_id") == job_id]

    def wait_for(self, job_id: str, timeout: float = 90.0) -> dict:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not (calls := [c for c in self.calls if c["json"].get("job_id") == job_id]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no webhook for job {job_id} within {timeout} s")
                self.lock.wait(remaining)
            return calls[0]

    def close(self) -> None:
        self.server.shutdown()


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


class TrickyServer:
    """Sources that misbehave on purpose. ``/flaky/<n>/<file>`` answers 503 to the first n requests
    for that path, then serves the fixture; ``/missing`` is 404; ``/slow`` trickles a byte every
    half second, forever. ``hits`` counts the requests per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                if self.path.startswith("/flaky/"):
                    _, _, failures, name = self.path.split("/", 3)
                    if server.hits[self.path] <= int(failures):
                        self._send(503, b"try later")
                    else:
                        self._send(200, (SPEECH / name).read_bytes())
                elif self.path == "/slow":
                    self.send_response(200)
                    self.send_header("content-length", "100000000")
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(b"\0")
                            self.wfile.flush()
                            time.sleep(0.5)
                    except OSError:
                        return
                else:
                    self._send(404, b"no such file")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
