"""Issue 31, finding 4 (Redis is open, and Redis access is code execution): the embedded Redis
had no password, and a job queued by hand on ``transcribe`` ran ``os.system`` in the worker; its
``appendonly.aof`` was world-readable. The embedded stack, on a Redis of its own as
``python3 dev.py stack`` runs it: nobody without its password gets an answer, and what it keeps is
its user's only, the password across restarts included."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import redis

from tests.conftest import running_stack
from tests.helpers import Receiver


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_stack_s_own_redis_asks_for_a_password_kept_private(tmp_path: Path, receiver: Receiver) -> None:
    data = tmp_path / "data"
    with running_stack(data, None, receiver) as stack:
        url = stack.redis_url
        password = (data / "redis" / "password").read_text().strip()
        assert len(password) >= 32
        assert url.startswith(f"redis://:{password}@127.0.0.1:")
        assert redis.Redis.from_url(url).ping()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password="a guess").ping()
        assert _mode(data / "stack.env") == 0o600
        kept = [p for p in (data / "redis").rglob("*") if p.is_file()]
        assert {p.name for p in kept} >= {"password", "redis.conf", "redis.log"}
        assert any(p.name.startswith("appendonly") for p in kept), kept
        assert {p.name: _mode(p) for p in kept} == {p.name: 0o600 for p in kept}
        assert _mode(data / "redis") == 0o700
        assert password not in stack.log.read_text()  # the log names the file, never the password
    with running_stack(data, None, receiver) as again:
        assert again.redis_url.startswith(f"redis://:{password}@")  # the same one, from its file
