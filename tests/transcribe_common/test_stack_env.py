"""A service started by hand reads a running embedded stack's ``DATA_DIR/stack.env`` (after the
environment, before ``.env``), and not that of a stack that is gone (issue 18, item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from janitor.settings import JanitorSettings


def _write(folder: Path, pid: int, **values: str) -> None:
    (folder / "data").mkdir(exist_ok=True)
    lines = [f'STACK_PID="{pid}"', *(f'{name}="{value}"' for name, value in values.items())]
    (folder / "data" / "stack.env").write_text("\n".join(lines) + "\n")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("DATA_DIR", "REDIS_URL", "SCRATCH_DIR", "LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_a_running_stacks_file_is_read_below_the_environment(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(folder, os.getpid(), REDIS_URL="redis://127.0.0.1:6390/0", SCRATCH_DIR="/srv/scratch", LOG_FORMAT="text")
    (folder / ".env").write_text("REDIS_URL=redis://from-dotenv:6379/0\nJANITOR_INTERVAL=7\n")
    monkeypatch.setenv("LOG_FORMAT", "json")
    settings = JanitorSettings()
    assert settings.redis_url == "redis://127.0.0.1:6390/0"  # the stack's, over .env
    assert settings.scratch_dir == Path("/srv/scratch")
    assert settings.log_format == "json"  # the environment's, over the stack's
    assert settings.janitor_interval == 7  # .env still counts for what the stack does not say


def test_data_dir_says_where_the_file_is(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = folder / "other"
    elsewhere.mkdir()
    _write(elsewhere, os.getpid(), REDIS_URL="redis://127.0.0.1:6391/0")
    (elsewhere / "data").rename(elsewhere / "state")
    monkeypatch.setenv("DATA_DIR", str(elsewhere / "state"))
    assert JanitorSettings().redis_url == "redis://127.0.0.1:6391/0"


def test_the_file_of_a_stack_that_is_gone_is_not_read(folder: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write(folder, gone.pid, REDIS_URL="redis://127.0.0.1:6392/0")
    assert JanitorSettings().redis_url == "redis://localhost:6379/0"


def test_the_stack_itself_does_not_read_it(folder: Path) -> None:
    from embedded.__main__ import StackSettings

    _write(folder, os.getpid(), REDIS_URL="redis://127.0.0.1:6393/0")
    assert StackSettings().redis_url == ""  # it starts its own Redis, as when no file is there
