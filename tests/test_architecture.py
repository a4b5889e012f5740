"""Rules of the design that code review alone would let slip."""

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("transcribe_common", "ingest_api", "event_router", "gpu_worker", "janitor", "embedded")


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
