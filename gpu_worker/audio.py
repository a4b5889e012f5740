"""Decoding any audio or video into the 16 kHz mono float samples Whisper takes.

ffmpeg writes raw 16-bit PCM to a file in the job's scratch folder rather than a pipe, and the
worker reads it back a window at a time (``Decoded.window``), so that a long input never sits in
memory whole; ffmpeg runs under a hard time limit: a source that never ends (a live stream, a
broken file that makes ffmpeg spin) is killed, not waited for.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from transcribe_common.errors import PermanentError

SAMPLE_RATE = 16_000
BYTES_PER_SECOND = 2 * SAMPLE_RATE  # decoded: 16-bit samples, one stream
# The container's own duration, on the format's line (two spaces in): not a tag's value, which ffmpeg
# prints further in, so a tag saying "Duration: 00:00:01.00" cannot pass for it.
_DURATION = re.compile(r"^  Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", re.M)
_AUDIO_STREAM = re.compile(r"Stream #\d+:\d+.*: Audio: [^\n]*?, \d+ Hz, ([^,\n]+)")
# Channel layouts by name, as ffmpeg prints them on the stream's line ("N channels" otherwise).
_LAYOUTS = {
    "mono": 1, "stereo": 2, "downmix": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3, "4.0": 4, "quad": 4,
    "quad(side)": 4, "3.1": 4, "5.0": 5, "5.0(side)": 5, "4.1": 5, "5.1": 6, "5.1(side)": 6, "6.0": 6,
    "6.0(front)": 6, "hexagonal": 6, "6.1": 7, "6.1(back)": 7, "6.1(front)": 7, "7.0": 7, "7.0(front)": 7,
    "7.1": 8, "7.1(wide)": 8, "7.1(wide-side)": 8, "octagonal": 8,
}  # fmt: skip
_FOLDERS = re.compile(r"(?<![\w:/])/(?:[^/\s]+/)+")
_CONTEXTS = re.compile(r"^(?:\[[^\]]* @ 0x[0-9a-f]+\] )+")  # "[aist#0:0/aac @ 0x55…] ": where in ffmpeg it was said
# What ffmpeg says after the reason, of its own threads and totals: never the reason itself.
_BOOKKEEPING = re.compile(r"^(?:Terminating thread with|Task finished with|Last message repeated|Conversion failed)")

# ffmpeg reads the input file and nothing else: no network or other protocols, and only
# demuxers of real media files — never playlists (hls, concat) that would pull in other files or
# URLs named inside a user's upload.
DEMUXERS = (
    "mov,matroska,mp3,wav,flac,ogg,aac,avi,asf,mpegts,mpeg,flv,amr,amrnb,amrwb,aiff,caf,w64,au,wv,ape,"
    "ac3,eac3,dts,truehd,mxf,dv,rm,tta,mpc,mpc8,gsm,voc,xwma,loas,latm"
)
INPUT_GUARD = ("-protocol_whitelist", "file", "-format_whitelist", DEMUXERS)


@dataclass(frozen=True)
class Media:
    """What ffmpeg's header dump says of an input: its declared duration and its channels."""

    declared: float | None
    channels: int | None  # None: a layout this service cannot name


@dataclass(frozen=True)
class Decoded:
    """Decoded audio, on disk: 16 kHz mono 16-bit PCM in the job's scratch, read a window at a time
    so that no input, however long, sits in memory whole."""

    pcm: Path
    samples: int
    declared: float | None  # the duration the container declares, if any: more than decoded means truncated

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    def chunks(self, start: int, count: int, size: int = 1 << 20) -> Iterator[bytes]:
        """Samples ``[start, start + count)`` as raw bytes, a little at a time (a shard's audio)."""
        with self.pcm.open("rb") as pcm:
            pcm.seek(2 * start)
            left = 2 * count
            while left > 0 and (chunk := pcm.read(min(size, left))):
                left -= len(chunk)
                yield chunk

    def window(self, start: int, count: int) -> np.ndarray:
        """Samples ``[start, start + count)`` as the float32 Whisper takes."""
        raw = np.fromfile(self.pcm, dtype=np.int16, count=count, offset=2 * start)
        return raw.astype(np.float32) / 32768.0


def decode(source: Path, scratch: Path, *, timeout: float, max_seconds: float = 0) -> np.ndarray:
    """All of the input's audio in memory: for short inputs (tests, benchmarks)."""
    decoded = decode_audio(source, scratch, timeout=timeout, max_seconds=max_seconds)
    samples = decoded.window(0, decoded.samples)
    decoded.pcm.unlink()
    return samples


def decode_audio(source: Path, scratch: Path, *, timeout: float, max_seconds: float = 0) -> Decoded:
    """The input's audio, once ``probe`` has found it is media with sound. ``max_seconds`` (0: no
    cap) is checked against the duration the container declares before decoding, so a small file
    that declares hours fails in milliseconds, and again against what was decoded, for containers
    that declare none."""
    return decode_channels(source, scratch, timeout=timeout, split=False, bounds=Bounds(seconds=max_seconds))[0]


@dataclass(frozen=True)
class Bounds:
    """What one input may cost: seconds of audio (``MAX_AUDIO_SECONDS``), channels split apart
    (``MAX_CHANNELS``) and bytes of disk (``MAX_JOB_DISK_MB``) for its decoded audio, of which a job
    keeps ``copies`` (two when it may be split into shards: in scratch, and in the jobs bucket); 0:
    no bound."""

    seconds: float = 0
    channels: int = 0
    disk_bytes: int = 0
    copies: int = 1


def decode_channels(
    source: Path, scratch: Path, *, timeout: float, split: bool = True, bounds: Bounds | None = None
) -> list[Decoded]:
    """Each audio channel on its own (``split``), or all mixed down to one, decoded in one run of
    ffmpeg into files in ``scratch``. A channel split of a mono input is refused: it has no
    channels to tell apart. What the input would cost is checked against ``bounds`` from its
    header before a byte is decoded, and the decode is cut off where it would pass them."""
    bounds = bounds or Bounds()
    media = inspect(source, timeout=timeout)
    streams, max_seconds = _within(media, split, bounds)
    cap = ("-t", f"{max_seconds + 1:g}") if max_seconds else ()
    pcms, outputs = [], []
    for channel in range(media.channels or 1) if split else [None]:
        pcm = scratch / ("audio.s16le" if channel is None else f"audio.c{channel}.s16le")
        pan = ("-af", f"pan=mono|c0=c{channel}") if channel is not None else ()
        outputs += ["-map", "0:a:0", *pan, "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", str(pcm)]
        pcms.append(pcm)
    # The cap before the input: it limits what is read, so it holds for every channel's output.
    _ffmpeg(*INPUT_GUARD, *cap, "-i", str(source), *outputs, timeout=timeout, decoded=pcms[0])
    count = pcms[0].stat().st_size // 2
    if count == 0:
        raise PermanentError("the input contains no audio")
    if max_seconds and count / SAMPLE_RATE > max_seconds:
        if bounds.seconds and count / SAMPLE_RATE > bounds.seconds:
            raise PermanentError(_too_long(count / SAMPLE_RATE, bounds.seconds))
        raise PermanentError(_too_big(count / SAMPLE_RATE, streams, bounds))
    return [Decoded(pcm, pcm.stat().st_size // 2, media.declared) for pcm in pcms]


def _within(media: Media, split: bool, bounds: Bounds) -> tuple[int, float]:
    """The streams to decode, and the seconds of each that stay within ``bounds`` (0: no cap);
    refused at once where the header says the input passes them."""
    if bounds.seconds and media.declared is not None and media.declared > bounds.seconds:
        raise PermanentError(_too_long(media.declared, bounds.seconds))
    if split and media.channels is None:
        raise PermanentError("multichannel=true, but the input's channel layout is not one this service can split")
    if split and media.channels == 1:
        raise PermanentError("multichannel=true, but the input has one audio channel; submit it without multichannel")
    if split and bounds.channels and (media.channels or 0) > bounds.channels:
        raise PermanentError(_too_many_channels(media.channels or 0, bounds.channels))
    streams = (media.channels or 1) if split else 1
    if not bounds.disk_bytes:
        return streams, bounds.seconds
    fits = bounds.disk_bytes / (bounds.copies * streams * BYTES_PER_SECOND)  # seconds of each stream
    if media.declared is not None and media.declared > fits:
        raise PermanentError(_too_big(media.declared, streams, bounds))
    return streams, min(bounds.seconds, fits) if bounds.seconds else fits


def probe(source: Path, *, timeout: float) -> float | None:
    """The duration the container declares, if any (``inspect``)."""
    return inspect(source, timeout=timeout).declared


def inspect(source: Path, *, timeout: float) -> Media:
    """Refuse what is not media with an audio stream, with a reason a user can act on; what the
    container declares of it. Read from ffmpeg's header dump (no ffprobe ships)."""
    if source.is_file() and source.stat().st_size == 0:
        raise PermanentError("the input is empty (0 bytes)")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", *INPUT_GUARD, "-i", str(source)]
    header = _run(command, timeout).stderr
    text = header.decode(errors="replace")
    if "Input #0" not in text:
        raise PermanentError(f"the input is not an audio or video file this service can read: {unreadable(header)}")
    stream = _AUDIO_STREAM.search(text)
    if stream is None:
        if "Audio: " in text:  # a stream the demuxer names but whose layout is not on its line
            return Media(_declared(text), None)
        raise PermanentError("the input has no audio stream")
    layout = stream.group(1).strip()
    counted = re.fullmatch(r"(\d+) channels", layout)
    return Media(_declared(text), int(counted.group(1)) if counted else _LAYOUTS.get(layout))


# ffmpeg's reasons for not opening an input, as a person reads them.
UNREADABLE = {
    "Invalid data found when processing input": "its bytes are in no media format it knows",
    "End of file": "it ends before a media header does (cut short, or not media)",
    "Invalid argument": "its format is not an accepted media format; playlists and the like are refused",
}


def unreadable(header: bytes) -> str:
    """Why ffmpeg could not open an input, without its own prefix ("Error opening input files: ")."""
    reason = _last_line(header)
    reason = re.sub(r"^Error opening input files?(?: [^:]*)?: ", "", reason)
    for said, meant in UNREADABLE.items():  # a demuxer outside DEMUXERS ends in "Invalid argument"
        if reason.endswith(said):
            return meant
    return reason


def _declared(header: str) -> float | None:
    match = _DURATION.search(header)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _ffmpeg(*args: str, timeout: float, decoded: Path | None = None) -> None:
    done = _run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], timeout
    )
    if done.returncode != 0:
        where = ""
        if decoded is not None and decoded.is_file() and decoded.stat().st_size:
            # Decoding stopped part way: say where, so that a user can look at the file there.
            where = f" after {clock(decoded.stat().st_size / 2 / SAMPLE_RATE)} of audio"
        reason = _last_line(done.stderr)
        if reason.startswith("Decode error rate"):  # ffmpeg's -max_error_rate: most frames failed
            reason = f"most of what follows is damaged ({reason})"
        raise PermanentError(f"could not decode the input as audio{where}: {reason}")


def clock(seconds: float) -> str:
    """``h:mm:ss``, as people read a position in a recording."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PermanentError(
            f"decoding took longer than FFMPEG_TIMEOUT ({timeout:g} s); is the source endless?"
        ) from exc


def _too_many_channels(channels: int, limit: int) -> str:
    return (
        f"multichannel=true, but the input has {channels} audio channels; MAX_CHANNELS allows {limit}: "
        "submit it without multichannel to transcribe its mix"
    )


def _too_big(seconds: float, streams: int, bounds: Bounds) -> str:
    need = seconds * streams * BYTES_PER_SECOND * bounds.copies / 2**20
    kept = f", kept {bounds.copies} times," if bounds.copies > 1 else ""
    return (
        f"its decoded audio ({seconds / 60:.1f} minutes x {streams} channel(s) at 16 kHz{kept}) would take "
        f"{need:,.0f} MiB of disk or more; MAX_JOB_DISK_MB allows a job {bounds.disk_bytes // 2**20:,} MiB"
    )


def _too_long(seconds: float, limit: float) -> str:
    return f"the audio is {seconds / 60:.1f} minutes long; MAX_AUDIO_SECONDS allows {limit:g} s"


def _last_line(stderr: bytes) -> str:
    """ffmpeg's last word on why, without the folders of the files it names (the server's scratch
    paths) or the addresses of its parts."""
    lines = [_CONTEXTS.sub("", line.strip()) for line in stderr.decode(errors="replace").splitlines()]
    reasons = [line for line in lines if line and not _BOOKKEEPING.match(line)]
    return _FOLDERS.sub("", reasons[-1]) if reasons else "ffmpeg failed without a message"
