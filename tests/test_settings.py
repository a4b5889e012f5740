"""Every setting of every service is listed in .env.example, with the brief's defaults."""

import re
from pathlib import Path

import pytest

from embedded.__main__ import StackSettings
from embedded.watcher import WatcherSettings
from event_router.settings import RouterSettings
from gpu_worker.settings import WorkerSettings
from ingest_api.settings import ApiSettings
from janitor.settings import JanitorSettings
from transcribe_common.setup_store import SetupSettings
from webhook_sender.settings import WebhookSettings

ALL = (
    StackSettings,
    WatcherSettings,
    RouterSettings,
    WorkerSettings,
    ApiSettings,
    JanitorSettings,
    SetupSettings,
    WebhookSettings,
)
ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / ".env.example"


def test_env_example_lists_every_setting() -> None:
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), flags=re.M))
    names = {name.upper() for cls in ALL for name in cls.model_fields}
    compose_only = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "infra" / "compose.yaml").read_text()))
    assert names - listed == set()
    assert listed - names - compose_only - {"COMPOSE_PROFILES"} == set()


def test_the_brief_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    worker = WorkerSettings()
    assert (worker.model_size, worker.max_concurrency, worker.whisper_device) == ("small", 2, "auto")
    assert (worker.whisper_compute_type, worker.job_timeout, worker.ffmpeg_timeout) == ("default", 1800, 300)
    assert worker.webhook_on_error is True
    assert (worker.minio_endpoint, worker.minio_bucket) == ("minio:9000", "transcribe")
    janitor = JanitorSettings()
    assert (janitor.scratch_max_age, janitor.janitor_interval) == (3600, 3600)
