import socket
from pathlib import Path

from pydantic import Field, field_validator

from transcribe_common.ops import OPS_PORTS
from transcribe_common.settings import JobEndSettings


class WorkerSettings(JobEndSettings):
    model_size: str = Field("small", description="Model name (tiny.en, base, small, ...) or a folder path.")
    model_cache_dir: Path = Field(Path.home() / ".cache" / "transcribe" / "models")
    whisper_device: str = Field("auto", description="auto, cpu or cuda.")
    whisper_device_index: str = Field(
        "0",
        description="Devices the worker's models run on: a GPU index (0), a list (0,1,2,3) or all (every GPU the "
        "process sees); MAX_CONCURRENCY job slots on each. The CPU is one device: all or 0.",
    )
    whisper_compute_type: str = Field("default", description="CTranslate2 compute type, e.g. int8, float16.")
    whisper_cpu_threads: int = Field(0, description="CPU threads for CTranslate2; 0 lets it choose.")
    beam_size: int = Field(5, ge=1, le=10, description="Beam search width; 1 is greedy and fastest.")
    batch_size: int = Field(0, ge=0, le=64, description="Chunks decoded at once (batched pipeline); 0: sequential.")
    models: str = Field(
        "",
        description="Models served, comma-separated names, paths or name=path; the first is the default. "
        "Empty: MODEL_SIZE.",
    )
    worker_name: str = Field(
        default_factory=socket.gethostname,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Unique among running workers and the same across restarts (default, or empty: the host "
        "name), so a restarted worker replaces its old registration at once and recovers the jobs it was running.",
    )

    @field_validator("worker_name", mode="before")
    @classmethod
    def _host_name_when_empty(cls, value: object) -> object:
        """Empty is the host name: compose's replicas of one service each have their own."""
        return socket.gethostname() if value == "" else value

    language_confidence_min: float = Field(
        0.8, ge=0, le=1, description="A detected language less likely than this is reported in the job's warnings."
    )
    max_concurrency: int = Field(
        2,
        ge=1,
        description="Jobs at once on each device of the worker (WHISPER_DEVICE_INDEX), sharing its copy of each model.",
    )
    worker_metrics_port: int = Field(
        OPS_PORTS["WORKER"], ge=0, le=65535, description="Port of the worker's /metrics, /healthz and /readyz; 0: none."
    )
    worker_heartbeat_ttl: int = Field(30, ge=2, description="Seconds after which a silent worker counts as dead.")
    reap_interval: float = Field(10.0, gt=0, description="Seconds between checks for jobs of dead workers.")
    cancel_poll: float = Field(1.0, gt=0, description="Seconds between checks for cancelled running jobs.")
    drain_timeout: float = Field(
        60.0, ge=0, description="On SIGTERM, seconds running jobs get before they are requeued."
    )
    ffmpeg_timeout: int = Field(300, description="Seconds ffmpeg may take to decode one input.")
    download_timeout: float = Field(60.0, description="Seconds without progress before a URL download fails.")
    download_max_seconds: float = Field(1800.0, gt=0, description="Seconds a URL download may take in all.")
    max_download_mb: int = Field(2048, ge=1, description="Largest URL source accepted, in MiB.")
    decode_window_seconds: float = Field(
        1200.0,
        ge=60,
        description="Seconds of decoded audio a job holds in memory at once (about 64 KB a second as float32); "
        "longer audio is transcribed a window at a time, cut at its quietest moment.",
    )
    checkpoint_every: float = Field(
        30.0,
        gt=0,
        description="Seconds of decoding between saves of what a job has decoded: what a job loses when its "
        "worker is killed; a drain saves at once, and the next run goes on from there.",
    )
    shard_min_seconds: float = Field(
        900.0,
        ge=0,
        description="Audio longer than this is split into shards that any worker transcribes, in parallel; 0: never.",
    )
    shard_seconds: float = Field(
        300.0, ge=5, description="About how long each shard is: cut at a pause near each multiple of it."
    )
    max_audio_seconds: int = Field(14400, ge=0, description="Longest audio accepted, in seconds; 0: no cap.")
    max_job_disk_mb: int = Field(
        4096,
        ge=0,
        description="Disk one job's decoded audio may take (16 kHz, 16-bit: 32 KB a second a channel; twice that "
        "when it may be split into shards: in scratch and in the jobs bucket), reckoned from its header before "
        "decoding and held while decoding; 0: no cap.",
    )
    scratch_dir: Path = Field(Path("/tmp/transcribe-scratch"), description="Per-job local scratch folders.")
    subtitle_line_width: int = Field(42, ge=10, description="Characters per subtitle line.")
    subtitle_max_lines: int = Field(2, ge=1, description="Lines per subtitle cue.")
    subtitle_max_seconds: float = Field(7.0, gt=0, description="Longest a subtitle cue stays on screen.")

    @field_validator("whisper_device_index")
    @classmethod
    def _device_list(cls, value: str) -> str:
        parse_device_index(value)
        return value.strip().lower()

    @property
    def device_indexes(self) -> list[int] | None:
        """``WHISPER_DEVICE_INDEX`` as a list of indexes; None for ``all``."""
        return parse_device_index(self.whisper_device_index)


def parse_device_index(spec: str) -> list[int] | None:
    """``"0,1, 3"`` -> ``[0, 1, 3]``; ``"all"`` -> None. Anything else is refused, saying why."""
    if spec.strip().lower() == "all":
        return None
    parts = [part.strip() for part in spec.split(",")]
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"{spec!r} is not a device index, a comma-separated list of them (0,1,2,3) or all")
    indexes = [int(part) for part in parts]
    twice = sorted({index for index in indexes if indexes.count(index) > 1})
    if twice:
        raise ValueError(f"{spec!r} lists device {','.join(map(str, twice))} more than once")
    return indexes
