"""infra/compose.yaml against the Compose Specification's JSON schema (as vendored by
check-jsonschema), and the contracts it must keep with the code."""

from __future__ import annotations

import importlib.resources
import json
import re
import socket
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from gpu_worker.settings import WorkerSettings
from transcribe_common import keys
from transcribe_common.store.s3 import load_notify_file, notification_config

ROOT = Path(__file__).parent.parent.parent
COMPOSE_TEXT = (ROOT / "infra" / "compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
APP_SERVICES = ("setup", "ingest-api", "event-router", "webhook-sender", "janitor", "gpu-worker", "cpu-worker")


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []


def test_redis_keeps_an_append_only_file_and_reports_health() -> None:
    redis = SERVICES["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_redis_asks_for_the_password_every_service_and_minio_are_given() -> None:
    """Issue 31: compose's Redis had no password, and Redis access is code execution."""
    password = "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
    redis = SERVICES["redis"]
    assert redis["command"][redis["command"].index("--requirepass") + 1] == password
    assert redis["environment"]["REDISCLI_AUTH"] == password  # its health check's redis-cli
    assert SERVICES["minio"]["environment"]["MINIO_NOTIFY_REDIS_PASSWORD_PRIMARY"] == password
    for name in APP_SERVICES:
        assert SERVICES[name]["environment"]["REDIS_PASSWORD"] == password, name


def test_minio_is_pinned_overridable_and_notifies_redis_in_access_format() -> None:
    minio = SERVICES["minio"]
    assert minio["image"] == "${MINIO_IMAGE:-quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z}"
    env = minio["environment"]
    assert env["MINIO_NOTIFY_REDIS_ENABLE_PRIMARY"] == "on"
    assert env["MINIO_NOTIFY_REDIS_FORMAT_PRIMARY"] == "access"
    assert env["MINIO_NOTIFY_REDIS_KEY_PRIMARY"] == keys.EVENTS
    assert env["MINIO_NOTIFY_REDIS_QUEUE_DIR_PRIMARY"].startswith("/data/")  # absolute, and on the volume
    assert "healthcheck" in minio


@pytest.mark.parametrize("name", APP_SERVICES)
def test_services_start_in_order_and_run_our_entry_points(name: str) -> None:
    service = SERVICES[name]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert service["command"][0] in scripts
    depends = service["depends_on"]
    if name == "setup":
        assert depends == {"minio": {"condition": "service_healthy"}}
        assert service["restart"] == "no"
        return
    assert depends["setup"] == {"condition": "service_completed_successfully"}
    assert depends["redis"] == {"condition": "service_healthy"}
    assert "healthcheck" in service
    assert service["environment"]["STORE_BACKEND"] == "s3"


def test_the_gpu_worker_is_one_process_on_every_gpu_and_the_cpu_variant_is_a_profile() -> None:
    gpu, cpu = SERVICES["gpu-worker"], SERVICES["cpu-worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["capabilities"], device["count"]) == ("nvidia", ["gpu"], "all")
    assert gpu["environment"]["WHISPER_DEVICE_INDEX"] == "${WHISPER_DEVICE_INDEX:-all}"
    # Replicas with a GPU reservation would all get the same GPU (NVIDIA/nvidia-container-toolkit#521).
    assert "replicas" not in gpu["deploy"]
    assert cpu["deploy"]["replicas"] == "${WORKER_REPLICAS:-1}"
    assert (gpu["profiles"], cpu["profiles"]) == (["gpu"], ["cpu"])
    assert (gpu["environment"]["WHISPER_DEVICE"], cpu["environment"]["WHISPER_DEVICE"]) == ("cuda", "cpu")
    assert {"scratch:/scratch", "models:/models"} <= set(gpu["volumes"])
    assert "scratch:/scratch" in SERVICES["janitor"]["volumes"]  # the janitor sweeps the workers' scratch


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_TEXT))
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    assert used - documented == set()


def test_every_package_is_copied_into_both_images() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):
        text = (ROOT / "infra" / dockerfile).read_text()
        for package in packages["include"]:
            assert f"COPY {package.rstrip('*')} " in text, f"{dockerfile} misses {package}"
        assert "COPY infra/minio-notify.json" in text


def test_notification_rules_translate_to_minio_configuration() -> None:
    rules = load_notify_file(ROOT / "infra" / "minio-notify.json")
    assert set(rules) == {"jobs", "inbox"}
    jobs = notification_config(rules["jobs"]).toxml(None)
    inbox = notification_config(rules["inbox"]).toxml(None)
    for element in (jobs, inbox):
        text = "".join(element.itertext())
        assert "arn:minio:sqs::PRIMARY:redis" in text
        assert "s3:ObjectCreated:Put" in text
        assert "s3:ObjectCreated:Copy" not in text
    assert "/manifest.json" in "".join(jobs.itertext())
    assert "suffix" not in "".join(inbox.itertext())


OPS_PORTS = {"ingest-api": 8000, "event-router": 9101, "gpu-worker": 9102, "cpu-worker": 9102, "janitor": 9103}
OPS_PORTS["webhook-sender"] = 9104


@pytest.mark.parametrize(("name", "port"), OPS_PORTS.items())
def test_health_checks_ask_each_service_on_its_own_port(name: str, port: int) -> None:
    from event_router.settings import RouterSettings
    from gpu_worker.settings import WorkerSettings
    from janitor.settings import JanitorSettings
    from webhook_sender.settings import WebhookSettings

    defaults = {
        9101: RouterSettings().router_metrics_port,
        9102: WorkerSettings().worker_metrics_port,
        9103: JanitorSettings().janitor_metrics_port,
        9104: WebhookSettings().webhook_metrics_port,
    }
    assert defaults.get(port, port) == port  # the port the service listens on by default
    service = SERVICES[name]
    assert f"http://127.0.0.1:{port}/healthz" in service["healthcheck"]["test"][-1]
    if name != "ingest-api":
        assert service["expose"] == [str(port)]  # for Prometheus, on the compose network only


def test_each_cpu_worker_replica_names_itself_whatever_env_says() -> None:
    """Issue 32: a WORKER_NAME in .env reached every replica, and the second restart-looped
    ("another worker named ... is alive"). Empty is the container's host name, unique per replica."""
    assert SERVICES["cpu-worker"]["environment"]["WORKER_NAME"] == ""
    assert WorkerSettings(_env_file=None, worker_name="").worker_name == socket.gethostname()  # type: ignore[call-arg]
