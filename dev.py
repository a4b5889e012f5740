#!/usr/bin/env python3
"""The two set-up commands, on a machine with nothing but Python 3.11+ and git:

    python3 dev.py stack    # run the whole pipeline embedded (API on http://127.0.0.1:8000)
    python3 dev.py test     # run the test suite

and, for the benchmarks in bench/, ``python3 dev.py bench NAME`` (router, ingest, e2e, worker, long, seams,
fuzz, priority, load, accuracy).

Each makes ``.venv`` on first use and installs the project into it, again whenever
``pyproject.toml`` changes. ``stack`` installs the runtime only (the extras in ``SETS["stack"]``);
``test`` and ``bench`` add the test tools (Playwright, moto, schemathesis, mypy, ...) to the same
``.venv``. A stamp per set (``.venv/.installed-<set>``) says what is in it. Further arguments go
to the command (``python3 dev.py test -k upload``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
# What each command needs installed: the runtime (the worker, the offline models, rq-dashboard for
# operators), and for the tests and benchmarks the test tools on top.
SETS = {"stack": "worker,models,dashboard", "test": "worker,models,dashboard,test"}


def _stamp(name: str) -> tuple[Path, str]:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + SETS[name].encode()).hexdigest()
    return VENV / f".installed-{name}", digest


def _installed(name: str) -> bool:
    """This set, or one that holds it, was installed from this very pyproject.toml."""
    wanted = set(SETS[name].split(","))
    for other, extras in SETS.items():
        stamp, digest = _stamp(other)
        if wanted <= set(extras.split(",")) and stamp.exists() and stamp.read_text() == digest:
            return True
    return False


def ensure_venv(name: str) -> Path:
    python = BIN / "python"
    if not python.exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    if not _installed(name):
        print(f"installing the project and its pinned dependencies ({SETS[name]}) into .venv", flush=True)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[{SETS[name]}]"], check=True, cwd=ROOT)
        stamp, digest = _stamp(name)
        stamp.write_text(digest)
    return python


def ensure_chromium() -> None:
    """The browser test drives Debian's Chromium. As root on Debian or Ubuntu, install it when it is
    missing; elsewhere that test is skipped with a note saying how to install it."""
    if shutil.which("chromium") or shutil.which("chromium-browser") or os.name == "nt" or os.geteuid() != 0:
        return
    if not shutil.which("apt-get"):
        return
    print("installing Debian's chromium for the browser test (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    install = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, check=False)
    if update.returncode or install.returncode:
        print("chromium could not be installed; the browser test will be skipped", flush=True)


def main() -> int:
    commands = {"stack": ["-m", "embedded"], "test": ["-m", "pytest"]}
    if len(sys.argv) > 2 and sys.argv[1] == "bench" and (ROOT / "bench" / f"{sys.argv[2]}.py").is_file():
        commands["bench"] = [str(ROOT / "bench" / f"{sys.argv.pop(2)}.py")]
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    python = ensure_venv("stack" if sys.argv[1] == "stack" else "test")
    if sys.argv[1] == "test":
        ensure_chromium()
    os.chdir(ROOT)
    args = [str(python), *commands[sys.argv[1]], *sys.argv[2:]]
    if os.name == "nt":
        return subprocess.call(args)
    os.execv(args[0], args)  # noqa: S606 -- replace this process: Ctrl-C and exit codes pass straight through


if __name__ == "__main__":
    sys.exit(main())
