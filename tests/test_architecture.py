"""Rules of the design that code review alone would let slip."""

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
SERVICES = ("ingest_api", "event_router", "gpu_worker", "janitor", "webhook_sender", "embedded", "transcribe_cli")
PACKAGES = ("transcribe_common", *SERVICES)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def sources() -> list[Path]:
    return [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]


def test_only_the_s3_store_imports_minio() -> None:
    importers = sorted(str(p.relative_to(ROOT)) for p in sources() if "minio" in imports(p))
    assert importers == ["transcribe_common/store/s3.py"]


def test_only_the_queue_adapter_imports_rq() -> None:
    importers = sorted(str(p.relative_to(ROOT)) for p in sources() if "rq" in imports(p))
    assert importers == ["transcribe_common/jobqueue.py"]


def test_only_the_memory_adapter_loads_the_c_library() -> None:
    loaders = sorted(str(p.relative_to(ROOT)) for p in sources() if "CDLL(" in p.read_text())
    assert loaders == ["gpu_worker/memory.py"]


def test_the_api_never_enqueues() -> None:
    for path in (ROOT / "ingest_api").rglob("*.py"):
        tree = ast.parse(path.read_text())
        calls = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not {c for c in calls if c.startswith("enqueue")}, f"{path.name}: the bucket notification starts jobs"
        rq_names = {
            a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "rq" for a in n.names
        }
        assert "Queue" not in rq_names


def test_only_jobstate_writes_a_status() -> None:
    writers = sorted(str(p.relative_to(ROOT)) for p in sources() if "layout.status_key(" in p.read_text())
    assert writers == ["transcribe_common/jobstate.py"]  # the API and the janitor read it through JobStates


LIGHT = ROOT / "embedded" / "light.py"  # the embedded stack's light services on threads of one process


def test_a_service_imports_the_shared_package_and_no_other_service() -> None:
    for service in SERVICES:
        for path in (ROOT / service).rglob("*.py"):
            others = imports(path) & (set(SERVICES) - {service})
            assert path == LIGHT or not others, f"{path.relative_to(ROOT)} imports {', '.join(sorted(others))}"


def test_the_light_process_takes_other_services_by_their_entry_points_and_settings_only() -> None:
    tree = ast.parse(LIGHT.read_text())
    named = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    named |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    services = {name for name in named if name.split(".")[0] in set(SERVICES) - {"embedded"}}
    assert services
    assert {name.partition(".")[2] for name in services} <= {"__main__", "settings"}, services


def test_the_shared_package_imports_no_service() -> None:
    for path in (ROOT / "transcribe_common").rglob("*.py"):
        assert not imports(path) & set(SERVICES), f"{path.relative_to(ROOT)} imports a service"
