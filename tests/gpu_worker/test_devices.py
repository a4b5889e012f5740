"""One worker process on several devices (WHISPER_DEVICE_INDEX): the list is read and checked, it
is resolved against the devices the process sees, the model loads on the list, and the worker
has MAX_CONCURRENCY job slots on each device. This machine has no GPU: the GPU cases are those
CTranslate2 can be asked about without one (how many GPUs it sees)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import ctranslate2
import pytest
import redis
from faster_whisper import WhisperModel
from pydantic import ValidationError

from gpu_worker.job import WorkerContext
from gpu_worker.pool import WorkerPool
from gpu_worker.settings import WorkerSettings, parse_device_index
from gpu_worker.whisper import Placement, place
from tests.conftest import Published
from tests.helpers import wait_until
from transcribe_common import fleet
from transcribe_common.jobstate import JobStates

NO_GPU = ctranslate2.get_cuda_device_count() == 0
ROOT = Path(__file__).parent.parent.parent


@pytest.mark.parametrize(
    ("spec", "indexes"), [("0", [0]), ("3", [3]), ("0,1,2,3", [0, 1, 2, 3]), (" 1, 0 ", [1, 0]), ("all", None)]
)
def test_the_device_list_is_read(spec: str, indexes: list[int] | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPER_DEVICE_INDEX", spec)
    assert WorkerSettings().device_indexes == indexes
    assert parse_device_index(spec.upper()) == indexes


def test_one_device_is_the_default() -> None:
    assert WorkerSettings.model_fields["whisper_device_index"].default == "0"


@pytest.mark.parametrize(
    ("spec", "says"),
    [("gpu0", "not a device index"), ("0,,1", "not a device index"), ("-1", "not a device index"),
     ("", "not a device index"), ("0,1,0", "lists device 0 more than once"), ("any", "not a device index")],
)  # fmt: skip
def test_a_bad_device_list_is_refused_saying_why(spec: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPER_DEVICE_INDEX", spec)
    with pytest.raises(ValidationError, match=says):
        WorkerSettings()


def test_slots_are_the_per_device_concurrency_times_the_devices() -> None:
    assert Placement("cuda", "float16", (0, 1, 2, 3)).slots(2) == 8
    assert Placement("cuda", "float16", (2,)).slots(3) == 3
    assert Placement("cpu", "int8", (0,)).slots(2) == 2


def test_on_the_cpu_all_is_its_one_device_and_other_indexes_are_refused() -> None:
    assert place("cpu", "default", None) == Placement("cpu", "int8", (0,))
    assert place("cpu", "float32", [0]) == Placement("cpu", "float32", (0,))
    with pytest.raises(ValueError, match="the CPU is one device, index 0"):
        place("cpu", "default", [0, 1])


@pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")
def test_without_a_gpu_auto_is_the_cpu_and_cuda_says_what_is_missing() -> None:
    assert place("auto", "default", None) == Placement("cpu", "int8", (0,))
    with pytest.raises(ValueError, match="no GPU is visible"):
        place("cuda", "default", None)
    with pytest.raises(ValueError, match="=0,1,3 names GPU 0,1,3, but this process sees 0 GPUs"):
        place("cuda", "default", [0, 1, 3])


@pytest.mark.skipif(NO_GPU, reason="no GPU here")
def test_on_gpus_all_is_every_visible_one() -> None:
    visible = ctranslate2.get_cuda_device_count()
    assert place("cuda", "default", None) == Placement("cuda", "float16", tuple(range(visible)))
    with pytest.raises(ValueError, match=f"names GPU {visible}"):
        place("cuda", "default", [visible])


def test_the_model_loads_on_a_device_list_with_its_workers_per_device(tiny: dict[str, WhisperModel]) -> None:
    model = tiny["tiny.en"]
    assert model.model.device == "cpu"
    assert model.model.device_index == [0]
    assert model.model.num_workers == 3  # CTranslate2 counts its workers over all the devices


def test_a_pool_on_four_devices_has_and_advertises_four_times_the_slots(
    redis_server: str, redis_conn: redis.Redis, local_store: Published, tiny: dict[str, WhisperModel]
) -> None:
    """The pool's slots follow the placement (said here to be four GPUs; no job runs)."""
    settings = WorkerSettings(redis_url=redis_server, max_concurrency=2, worker_name="four-gpus")
    states = JobStates(redis_conn, local_store.store, settings.minio_bucket)
    four = Placement("cuda", "float16", (0, 1, 2, 3))
    pool = WorkerPool(WorkerContext(settings, redis_conn, local_store.store, states, tiny, four))
    assert len(pool.workers) == 8
    assert len({worker.name for worker in pool.workers}) == 8
    pool.advertise()
    assert fleet.live_slots(redis_conn) == 8


def worker_env(redis_url: str, tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "STORE_BACKEND": "local",
        "STORE_DIR": str(tmp_path / "buckets"),
        "SCRATCH_DIR": str(tmp_path / "scratch"),
        "MODEL_CACHE_DIR": str(tmp_path / "models"),
        "MODEL_SIZE": "tiny.en",
        "WHISPER_DEVICE": "cpu",
        "WHISPER_CPU_THREADS": "1",
        "WORKER_METRICS_PORT": "0",
        "LOG_FORMAT": "text",
        **env,
    }


def test_a_worker_process_on_all_devices_of_the_cpu_serves_its_slots(redis_server: str, tmp_path: Path) -> None:
    redis_url = redis_server.rsplit("/", 1)[0] + "/10"
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    env = worker_env(redis_url, tmp_path, WHISPER_DEVICE_INDEX="all", MAX_CONCURRENCY="3", WORKER_NAME="cpu-all")
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "gpu_worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: fleet.registered(conn, "cpu-all") is not None, timeout=120, interval=0.1)
        record = fleet.registered(conn, "cpu-all")
        assert record is not None
        assert record.slots == 3
        # Said just after the worker registers: waited for, not read at once (a busy machine is slow).
        wait_until(lambda: "3 on each device of cpu:0" in log.read_text(), timeout=120, interval=0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, log.read_text()
    conn.flushdb()


def test_a_worker_asked_for_a_device_it_does_not_have_stops_saying_so(redis_server: str, tmp_path: Path) -> None:
    env = worker_env(redis_server.rsplit("/", 1)[0] + "/10", tmp_path, WHISPER_DEVICE_INDEX="0,1")
    done = subprocess.run(
        [sys.executable, "-m", "gpu_worker"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "WHISPER_DEVICE_INDEX=0,1 with WHISPER_DEVICE=cpu: the CPU is one device" in done.stderr
