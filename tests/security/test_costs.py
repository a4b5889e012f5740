"""Issue 31, finding 5 (channels multiply disk and time with no bound): a 7.6 MB 8-channel FLAC of
silence took 3.4 GB of scratch; a 64-channel file became 192 shards and 1.9 GB in the bucket; and
one held both worker slots for 7 min 48 s under JOB_TIMEOUT=120, each shard with a timeout of its
own. On the embedded stack: MAX_CHANNELS refuses at submission what the header shows and fails the
rest in a sentence; MAX_JOB_DISK_MB fails a job whose decoded audio would not fit before a byte is
decoded; and JOB_TIMEOUT bounds the whole job, its shards included."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import httpx
import imageio_ffmpeg

from tests.conftest import Stack
from tests.helpers import Receiver, lecture, silence
from tests.test_pipeline import upload


def channels_wav(path: Path, channels: int, seconds: float = 1.0) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * channels * int(8000 * seconds))
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", *args], check=True)


def test_more_channels_than_max_channels_are_refused_at_submission(stack: Stack, tmp_path: Path) -> None:
    nine = channels_wav(tmp_path / "nine.wav", 9)
    files = {"file": ("nine.wav", nine.read_bytes(), "audio/wav")}
    response = httpx.post(
        f"{stack.url}/v1/transcribe", data={"source_type": "upload", "multichannel": "true"}, files=files
    )
    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": "multichannel: the file has 9 audio channels; MAX_CHANNELS allows 8: "
        "submit it without multichannel to transcribe its mix",
        "field": "multichannel",
    }


def test_more_channels_than_max_channels_in_a_header_the_api_cannot_read_fail_the_job(
    stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    ffmpeg("-i", str(channels_wav(tmp_path / "nine.wav", 9)), "-c:a", "pcm_s16le", str(tmp_path / "nine.mka"))
    job_id = upload(stack, (tmp_path / "nine.mka").read_bytes(), "nine.mka", multichannel="true")
    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "failed"
    assert payload["error"].startswith("multichannel=true, but the input has 9 audio channels; MAX_CHANNELS allows 8")


def test_a_job_whose_decoded_audio_would_pass_max_job_disk_mb_fails_before_decoding(
    stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    """Four channels of five minutes of silence (a few KB of FLAC): 4 x 300 s x 32 KB, twice (in
    scratch and as shards in the bucket) is 73 MiB, past the stack's MAX_JOB_DISK_MB of 64."""
    quiet = silence(tmp_path / "quiet.flac", 300, "-ac", "4", "-compression_level", "8")
    job_id = upload(stack, quiet.read_bytes(), "quiet.flac", multichannel="true")
    payload = receiver.wait_for(job_id)["json"]
    assert payload["status"] == "failed"
    assert payload["error"] == (
        "its decoded audio (5.0 minutes x 4 channel(s) at 16 kHz, kept 2 times,) would take 73 MiB of disk or "
        "more; MAX_JOB_DISK_MB allows a job 64 MiB"
    )
    assert not list((stack.data / "scratch").glob(f"{job_id}*/*.s16le"))


def test_job_timeout_bounds_the_whole_job_not_each_shard(
    timeout_stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    """Eight channels of a minute of speech each: every shard takes well under JOB_TIMEOUT (5 s
    here), all of them together far more. The job fails once the job, not a shard, has had its 5 s."""
    lecture(tmp_path / "minute.wav", 60)
    inputs = [arg for _ in range(8) for arg in ("-i", str(tmp_path / "minute.wav"))]
    ffmpeg(*inputs, "-filter_complex", "amerge=inputs=8", "-c:a", "flac", str(tmp_path / "eight.flac"))
    job_id = upload(timeout_stack, (tmp_path / "eight.flac").read_bytes(), "eight.flac", multichannel="true")
    payload = receiver.wait_for(job_id, timeout=300)["json"]
    assert payload["status"] == "failed", timeout_stack.log_tail()
    assert payload["error"].endswith("the job ran longer than JOB_TIMEOUT (5 s)"), payload["error"]
