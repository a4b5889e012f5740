"""dev.py's install sets: ``stack`` is the runtime, ``test`` adds the test tools to the same .venv,
and a set is installed again only when pyproject.toml changed or it was never installed (issue 18,
item 6). The installs themselves are measured in bench/README.md ("Install size")."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "VENV", tmp_path)
    return module


def _mark(dev: ModuleType, name: str) -> None:
    stamp, digest = dev._stamp(name)
    stamp.write_text(digest)


def test_the_runtime_set_has_no_test_tools(dev: ModuleType) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    runtime = {pin.split("==")[0] for extra in dev.SETS["stack"].split(",") for pin in extras[extra]}
    assert "test" not in dev.SETS["stack"].split(",")
    assert not runtime & {"playwright", "moto[server]", "schemathesis", "mypy", "pytest", "ruff", "openai"}
    assert set(dev.SETS["stack"].split(",")) < set(dev.SETS["test"].split(","))


def test_a_set_is_installed_once_and_the_test_set_holds_the_stacks(dev: ModuleType) -> None:
    assert not dev._installed("stack")
    assert not dev._installed("test")
    _mark(dev, "stack")
    assert dev._installed("stack")
    assert not dev._installed("test")  # after `dev.py stack`, `dev.py test` installs the test tools
    _mark(dev, "test")
    assert dev._installed("test")


def test_after_a_test_install_the_stack_needs_nothing_more(dev: ModuleType) -> None:
    _mark(dev, "test")
    assert dev._installed("stack")


def test_a_changed_pyproject_installs_again(dev: ModuleType) -> None:
    stamp, _ = dev._stamp("test")
    stamp.write_text("a digest of another pyproject.toml")
    assert not dev._installed("test")
    assert not dev._installed("stack")
