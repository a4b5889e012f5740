"""The README's commands for operating the embedded stack, run as the README writes them, from a
folder laid out like the repository (``.venv`` and ``data/`` side by side) where a live embedded
stack runs (issue 18, item 5). The stack starts its own Redis; the port the README names for it is
taken here, so the stack must take another and say so, and print the ``rq`` commands for that one.

The README's addresses are its defaults (API 8000, ops ports 9101-9104, Redis 6379, dashboard
9181); each is replaced by this stack's. Every other character of a command is run as written.
A command of those sections that this test does not know fails it, and so does one it expects
that the README no longer has: the two are kept in step.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from embedded.redis_server import free_port
from tests.helpers import SPEECH, wait_until
from transcribe_common import keys
from transcribe_common.ops import OPS_PORTS
from transcribe_common.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEFAULT_PORTS = {"8000": "API", **{str(port): name for name, port in OPS_PORTS.items()}}


# Every page a user reads: the README and docs/, but for the production pages, whose commands run
# docker compose and kubectl (tests/infra checks what they deploy).
PAGES = [README, *sorted(p for p in (ROOT / "docs").glob("*.md") if p.stem not in ("production", "kubernetes"))]


def readme_commands() -> list[str]:
    """Command lines of the pages' sh blocks that operate a running embedded stack: its tools in
    ``.venv/bin`` and the ``curl``s that read it. Those that submit (``-F``, ``-d``) or name an
    example job (``3f0c…``) belong to other tests."""
    text = "\n".join(page.read_text() for page in PAGES)
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.M | re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    commands = [re.split(r"\s+#\s", line, maxsplit=1)[0].strip() for line in lines if line and line[0] != "#"]
    return [c for c in commands if c.startswith((".venv/bin/", "curl ")) and not re.search(r" -[Fd] |…|\\$", c)]


@dataclass
class LiveStack:
    folder: Path
    env: dict[str, str]
    ports: dict[str, str]
    redis_port: str
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def localise(self, command: str) -> str:
        """The README's default addresses, made this stack's."""
        command = re.sub(r"@(localhost|127\.0\.0\.1):6379/", f"@127.0.0.1:{self.redis_port}/", command)
        command = command.replace("-p 9181", f"-p {self.extra['dashboard']}")
        return re.sub(
            r"\b(localhost|127\.0\.0\.1):(\d{4})\b",
            lambda m: f"{m[1]}:{self.ports[DEFAULT_PORTS[m[2]]]}" if m[2] in DEFAULT_PORTS else m[0],
            command,
        )


def _clean_environment() -> dict[str, str]:
    """This process's environment without any of the services' settings: the commands find the
    stack the way a person's shell would, through ``data/stack.env``."""
    names = {name.upper() for name in CommonSettings.model_fields} | {"DATA_DIR", "API_PORT", "API_HOST"}
    names |= {f"{service}_METRICS_PORT" for service in OPS_PORTS}
    return {name: value for name, value in os.environ.items() if name not in names}


@pytest.fixture(scope="module")
def taken_port() -> Iterator[int]:
    """A loopback port something already listens on, to stand for a Redis already on 6379."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, taken_port: int) -> Iterator[LiveStack]:
    folder = tmp_path_factory.mktemp("checkout")
    (folder / ".venv").symlink_to(Path(sys.executable).parents[1], target_is_directory=True)
    ports = {"API": str(free_port()), **{service: str(free_port()) for service in OPS_PORTS}}
    env = _clean_environment()
    stack_env = {
        **env,
        "MODEL_SIZE": "tiny.en",
        "WHISPER_CPU_THREADS": "2",
        "EMBEDDED_REDIS_PORT": str(taken_port),
        "API_PORT": ports["API"],
        **{f"{service}_METRICS_PORT": ports[service] for service in OPS_PORTS},
    }
    log = folder / "stack.log"
    with log.open("wb") as out:
        # The venv's python by the checkout's own .venv path, as dev.py runs it.
        command = [str(folder / ".venv" / "bin" / "python"), "-m", "embedded"]
        process = subprocess.Popen(command, cwd=folder, env=stack_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: b"ready: API on" in log.read_bytes() or process.poll() is not None, timeout=300)
        assert process.poll() is None, log.read_text()
        redis_port = re.search(r"redis-server on 127.0.0.1:(\d+)", log.read_text())[1]  # type: ignore[index]
        stack = LiveStack(folder, env, ports, redis_port, log, {"dashboard": str(free_port())})
        stack.extra["job"] = _finished_job(stack)
        yield stack
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)
    assert not (folder / "data" / "stack.env").exists()  # removed when the stack stops


def _finished_job(stack: LiveStack) -> str:
    """One job through the stack, so that the metrics the README greps for exist."""
    api = f"http://127.0.0.1:{stack.ports['API']}"
    files = {"file": ("upload.mp3", (SPEECH / "upload.mp3").read_bytes(), "audio/mpeg")}
    job_id = httpx.post(f"{api}/v1/transcribe", data={"source_type": "upload"}, files=files).json()["job_id"]
    status = lambda: httpx.get(f"{api}/v1/jobs/{job_id}").json()["status"]  # noqa: E731
    wait_until(lambda: status() in ("finished", "failed"), timeout=120)
    assert status() == "finished"
    return str(job_id)


def _shell(stack: LiveStack, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=stack.folder, env=stack.env, capture_output=True, text=True, timeout=timeout
    )


def _served(stack: LiveStack, command: str, url: str, check: Callable[[httpx.Response], bool]) -> str:
    """A command that serves until stopped: started as written, asked once it answers, stopped."""
    log = stack.folder / "served.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=stack.folder, env=stack.env, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: _answer(url, check) or process.poll() is not None, timeout=60, interval=0.2)
        assert process.poll() is None, log.read_text()
        return log.read_text()
    finally:
        process.terminate()
        process.wait(30)


def _answer(url: str, check: Callable[[httpx.Response], bool]) -> bool:
    try:
        return check(httpx.get(url, timeout=5))
    except httpx.HTTPError:
        return False


def _rq_info(stack: LiveStack, command: str) -> None:
    done = _shell(stack, command)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^{re.escape(keys.QUEUE)}\s+\|", done.stdout, re.M), done.stdout
    assert re.search(r"\b\d+ workers\b", done.stdout), done.stdout


def _rq_info_interval(stack: LiveStack, command: str) -> None:
    """Refreshes until stopped: it must print the queues, and still be running. (Unbuffered: a
    person's terminal shows each refresh at once, a file would get them only at exit.)"""
    out = stack.folder / "interval.log"
    env = {**stack.env, "PYTHONUNBUFFERED": "1"}
    with out.open("wb") as sink:
        process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=stack.folder, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        queue = re.compile(rf"^{re.escape(keys.QUEUE)}\s+\|", re.M)
        wait_until(lambda: queue.search(out.read_text(errors="replace")) or process.poll() is not None)
        assert process.poll() is None, out.read_text()
    finally:
        process.terminate()
        process.wait(30)


def _dashboard(stack: LiveStack, command: str) -> None:
    """It serves its page, and the page's data names our queue."""
    base = f"http://127.0.0.1:{stack.extra['dashboard']}"

    def serves(response: httpx.Response) -> bool:
        page = httpx.get(f"{base}/", follow_redirects=True, timeout=5)
        ours = response.status_code == 200 and keys.QUEUE in response.text
        return ours and "<title>RQ dashboard</title>" in page.text

    _served(stack, command, f"{base}/0/data/queues.json", serves)


def _janitor_dry_run(stack: LiveStack, command: str) -> None:
    done = _shell(stack, command, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "Traceback" not in said, said
    assert re.search(r"INFO +janitor +janitor: run \(dry run\): ", said), said  # the README's text lines
    assert f"scratch {stack.folder / 'data' / 'scratch'}," in said, said  # the stack's, not /tmp's


def _grep(expected: str) -> Callable[[LiveStack, str], None]:
    def check(stack: LiveStack, command: str) -> None:
        done = _shell(stack, command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert re.search(expected, done.stdout, re.M), done.stdout

    return check


def _json(check: Callable[[dict[str, object]], bool]) -> Callable[[LiveStack, str], None]:
    def run(stack: LiveStack, command: str) -> None:
        done = _shell(stack, command)
        assert done.returncode == 0, (command, done.stderr)
        assert check(json.loads(done.stdout)), done.stdout

    return run


EXPECTED: dict[str, Callable[[LiveStack, str], None]] = {
    "curl http://127.0.0.1:8000/v1/stats": _json(lambda body: int(str(body["finished"])) >= 1),
    "curl http://127.0.0.1:8000/v1/models": _json(lambda body: "tiny.en" in str(body["models"])),
    "curl 'http://127.0.0.1:8000/v1/jobs?status=finished&limit=20'": _json(
        lambda body: bool(body["jobs"]) and {job["status"] for job in body["jobs"]} == {"finished"}
    ),
    "curl http://127.0.0.1:8000/healthz": _json(lambda body: body["status"] == "ok"),
    "curl -s http://127.0.0.1:9101/readyz": _json(lambda body: body["status"] == "ready"),
    "curl -s http://127.0.0.1:9102/metrics | grep realtime_factor_sum": _grep(
        r'^transcribe_worker_realtime_factor_sum\{model="tiny.en"\} [0-9.]+$'
    ),
    '.venv/bin/rq info --url "redis://:$(cat data/redis/password)@127.0.0.1:6379/0"': _rq_info,
    '.venv/bin/rq info --url "redis://:$(cat data/redis/password)@127.0.0.1:6379/0" --interval 1': _rq_info_interval,
    '.venv/bin/rq-dashboard --redis-url "redis://:$(cat data/redis/password)@127.0.0.1:6379/0" -b 127.0.0.1 -p 9181': (
        _dashboard
    ),
    ".venv/bin/transcribe-janitor --once --dry-run": _janitor_dry_run,
    "curl -s localhost:9103/metrics | grep transcribe_janitor": _grep(r"^transcribe_janitor_runs_total\{"),
}


def test_the_readme_and_this_test_name_the_same_commands() -> None:
    assert sorted(readme_commands()) == sorted(EXPECTED)


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_a_readme_command_works_as_written(live: LiveStack, command: str) -> None:
    EXPECTED[command](live, live.localise(command))


def test_the_stack_took_another_port_and_said_so(live: LiveStack, taken_port: int) -> None:
    text = live.text()
    assert re.search(rf"port {taken_port} is taken \(another Redis\?\); the embedded Redis listens on (\d+)", text)
    assert live.redis_port != str(taken_port)


def test_the_rq_commands_the_stack_prints_work_as_printed(live: LiveStack) -> None:
    text = live.text()
    url = f'"redis://:$(cat data/redis/password)@127.0.0.1:{live.redis_port}/0"'
    info = re.search(r"RQ's queues and workers: (.+)$", text, re.M)[1]  # type: ignore[index]
    assert info == f".venv/bin/rq info --url {url}"
    _rq_info(live, info)
    found = re.search(r"RQ's web view: (.+ -p (\d+)) \(then http://127.0.0.1:(\d+)\)$", text, re.M)
    assert found is not None, text
    web, port, shown = found.groups()
    assert port == shown  # 9181 when it is free; another when, say, a first stack's dashboard has it
    assert web == f".venv/bin/rq-dashboard --redis-url {url} -b 127.0.0.1 -p {port}"
    _dashboard(live, web.replace(f"-p {port}", f"-p {live.extra['dashboard']}"))


def test_the_janitor_with_no_stack_says_why_in_one_line_and_fails(tmp_path: Path) -> None:
    janitor = Path(sys.executable).parent / "transcribe-janitor"
    env = {**_clean_environment(), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = subprocess.run([str(janitor), "--once", "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("transcribe-janitor: cannot reach Redis at redis://127.0.0.1:"), lines


def test_the_second_stack_line_names_settings_that_exist_and_every_port() -> None:
    """The README's line for a second stack on one machine (issue 34, finding 8): each name in it
    is a setting of the stack, and it moves every port the stack listens on."""
    from embedded.__main__ import StackSettings

    [line] = [line for line in README.read_text().splitlines() if line.startswith("DATA_DIR=")]
    assert line.endswith(" python3 dev.py stack")
    given = dict(pair.split("=", 1) for pair in line.split()[:-3])
    known = {name.upper() for name in StackSettings.model_fields} | {f"{s}_METRICS_PORT" for s in OPS_PORTS}
    assert set(given) <= known, set(given) - known
    assert {f"{s}_METRICS_PORT" for s in OPS_PORTS} | {"API_PORT", "EMBEDDED_REDIS_PORT", "DATA_DIR"} <= set(given)
    ports = [given[name] for name in given if name.endswith("PORT")]
    assert len(set(ports)) == len(ports)
    assert not set(ports) & {"8000", "6379", *map(str, OPS_PORTS.values())}  # none of the first stack's


def _block(heading: str) -> list[str]:
    """The command lines of the sh block under ``heading`` in the README, comments cut."""
    section = README.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```sh\n(.*?)^```", section, flags=re.M | re.S)[1]  # type: ignore[index]
    lines = [re.split(r"\s+#\s", line, maxsplit=1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_readme_s_one_request_works_as_written(live: LiveStack) -> None:
    """Submit, follow, fetch: the README's three curls, run from a folder holding meeting.mp3,
    the example job id replaced by the one the first answered."""
    (live.folder / "meeting.mp3").write_bytes((SPEECH / "upload.mp3").read_bytes())
    submit, status, result = [live.localise(line) for line in _block("One request")]
    accepted = json.loads(_shell(live, submit).stdout)
    job_id = accepted["job_id"]
    assert accepted["links"]["result"] == f"/v1/jobs/{job_id}/result"
    follow = lambda: json.loads(_shell(live, status.replace("3f0c…", job_id)).stdout)  # noqa: E731
    wait_until(lambda: follow()["status"] in ("finished", "failed"), timeout=120, interval=0.5)
    assert follow()["status"] == "finished"
    srt = _shell(live, result.replace("3f0c…", job_id)).stdout
    assert srt.startswith("1\n00:00:")


def test_the_readme_s_inbox_works_as_written(live: LiveStack) -> None:
    (live.folder / "weekly sync.mp4").write_bytes((SPEECH / "inbox.mp4").read_bytes())
    *copy, look = _block("The inbox")
    for line in copy:
        done = _shell(live, line)
        assert done.returncode == 0, done.stderr
    wait_until(lambda: "weekly sync.srt" in _shell(live, look).stdout, timeout=120, interval=0.5)


def test_the_readme_s_command_lines_work_as_written(live: LiveStack) -> None:
    """The README's ``transcribe`` lines, with ``.venv/bin`` on the PATH as an activated venv has
    it; but the one that submits a URL of example.com (no network here: tests/test_cli.py submits
    URLs from a server of its own)."""
    (live.folder / "meeting.mp3").write_bytes((SPEECH / "upload.mp3").read_bytes())
    (live.folder / "call.wav").write_bytes((SPEECH / "call.mp3").read_bytes())
    env = {**live.env, "PATH": f"{live.folder / '.venv' / 'bin'}:{live.env.get('PATH', '')}",
           "TRANSCRIBE_URL": f"http://127.0.0.1:{live.ports['API']}"}  # fmt: skip
    job_id = live.extra["job"]
    for line in _block("The command line"):
        if "https://" in line:
            continue
        done = subprocess.run(["bash", "-c", line.replace("3f0c…", job_id)], cwd=live.folder, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, (line, done.stderr)
    assert (live.folder / "meeting.srt").read_text().startswith("1\n")
    assert (live.folder / "call.vtt").read_text().startswith("WEBVTT")
    assert (live.folder / "meeting.vtt").read_text().startswith("WEBVTT")
