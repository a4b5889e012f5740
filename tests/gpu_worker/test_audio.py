import os
import re
import subprocess
import time
from pathlib import Path

import imageio_ffmpeg
import pytest

from gpu_worker import audio
from gpu_worker.audio import SAMPLE_RATE, decode, probe
from tests.helpers import SPEECH, damaged, silence
from transcribe_common.errors import PermanentError


def test_mp3_and_video_decode_to_16k_mono(tmp_path: Path) -> None:
    assert decode(SPEECH / "upload.mp3", tmp_path, timeout=30).size / SAMPLE_RATE == pytest.approx(12.75, abs=0.1)
    assert decode(SPEECH / "inbox.mp4", tmp_path, timeout=30).size / SAMPLE_RATE == pytest.approx(11.6, abs=0.1)
    assert list(tmp_path.iterdir()) == []  # the PCM file does not outlive the decode


def test_text_is_refused_with_ffmpegs_reason(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp3"
    fake.write_text("not audio at all\n" * 50)
    with pytest.raises(PermanentError) as refused:
        decode(fake, tmp_path, timeout=30)
    said = str(refused.value)
    assert said == (
        "the input is not an audio or video file this service can read: its bytes are in no media format it knows"
    )
    assert "Error opening" not in said  # ffmpeg's own words (issue 34, finding 7)


def test_ffmpeg_s_reasons_read_as_sentences() -> None:
    assert audio.unreadable(b"Error opening input files: End of file\n") == (
        "it ends before a media header does (cut short, or not media)"
    )
    assert audio.unreadable(b"[in#0 @ 0x55] Error opening input file x.m3u: Invalid argument\n").startswith(
        "its format is not an accepted media format"
    )
    assert audio.unreadable(b"Error opening input files: Permission denied\n") == "Permission denied"


def test_an_empty_file_is_refused_before_ffmpeg(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(PermanentError, match=r"the input is empty \(0 bytes\)"):
        probe(tmp_path / "empty.wav", timeout=30)


def test_a_playlist_cannot_pull_in_other_files_or_urls(tmp_path: Path) -> None:
    """An HLS playlist names segments: here a local file the service must not read and a URL it
    must not fetch. ffmpeg may open neither; the upload is refused as not media."""
    playlist = tmp_path / "talk.m3u8"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:12\n#EXTINF:12,\n{SPEECH / 'url.wav'}\n"
        "#EXTINF:12,\nhttp://169.254.169.254/latest/meta-data\n#EXT-X-ENDLIST\n"
    )
    with pytest.raises(PermanentError, match="playlists and the like are refused"):
        decode(playlist, tmp_path, timeout=30)


def test_a_video_without_sound_is_refused(tmp_path: Path) -> None:
    silent_film = tmp_path / "film.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    source = ("-f", "lavfi", "-i", "testsrc=size=64x48:rate=5")
    subprocess.run([ffmpeg, "-loglevel", "error", *source, "-t", "1", str(silent_film)], check=True)
    with pytest.raises(PermanentError, match="no audio stream"):
        decode(silent_film, tmp_path, timeout=30)


def test_a_source_that_never_ends_is_killed_at_the_timeout(tmp_path: Path) -> None:
    endless = tmp_path / "stream.mp3"
    os.mkfifo(endless)  # nobody ever writes: ffmpeg waits forever
    with pytest.raises(PermanentError, match="FFMPEG_TIMEOUT"):
        decode(endless, tmp_path, timeout=1)


def long_silence(tmp_path: Path, seconds: int) -> Path:
    """A small FLAC that decodes to a long stretch of silence."""
    return silence(tmp_path / "silence.flac", seconds)


def test_hours_of_audio_in_a_small_file_fail_before_decoding(tmp_path: Path) -> None:
    source = long_silence(tmp_path, 2 * 3600)
    assert source.stat().st_size < 2_000_000
    started = time.monotonic()
    with pytest.raises(PermanentError, match=r"120.0 minutes long; MAX_AUDIO_SECONDS allows 600 s"):
        decode(source, tmp_path, timeout=30, max_seconds=600)
    assert time.monotonic() - started < 2.0
    assert not (tmp_path / "audio.s16le").exists()


def test_the_declared_duration_is_the_containers_not_a_tags(tmp_path: Path) -> None:
    """A tag whose value reads like ffmpeg's duration line does not pass for it."""
    lying = silence(
        tmp_path / "tagged.flac", 120, "-metadata", "comment=Duration: 00:00:01.00", "-metadata",
        "title=  Duration: 00:00:01.00",
    )  # fmt: skip
    assert probe(lying, timeout=30) == pytest.approx(120, abs=0.1)


def test_channels_are_counted_and_split(tmp_path: Path) -> None:
    call = SPEECH / "call.mp3"
    assert audio.inspect(call, timeout=30).channels == 2
    left, right = audio.decode_channels(call, tmp_path, timeout=60)
    assert left.samples == right.samples > 16000 * 20
    with pytest.raises(PermanentError, match="one audio channel"):
        audio.decode_channels(SPEECH / "upload.mp3", tmp_path, timeout=60)


def test_a_recording_that_cannot_be_decoded_past_a_point_fails_saying_where(tmp_path: Path) -> None:
    source = damaged(tmp_path / "damaged.m4a", 60, good=15)
    with pytest.raises(PermanentError) as caught:
        audio.decode_channels(source, tmp_path, timeout=60, split=False)
    where = re.search(r"could not decode the input as audio after 0:00:(\d\d) of audio: (.*)", str(caught.value))
    assert where, caught.value
    assert 10 <= int(where.group(1)) <= 16, caught.value
    # ffmpeg's reason, not its thread bookkeeping or the addresses of its decoder
    assert "decode error rate" in where.group(2).lower(), caught.value
    assert "0x" not in where.group(2), caught.value
