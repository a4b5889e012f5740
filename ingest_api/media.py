"""What an input is served as: a type read from its own first bytes, never the one its uploader
declared (an upload declared ``audio/mpeg, text/html`` with a page in it was served as that page,
in the API's origin, and its script ran there).

The bytes' signature is read by the ``filetype`` library. Only the audio and video types of
``MEDIA_TYPES`` are served as themselves; anything else, text above all, is
``application/octet-stream``. With ``X-Content-Type-Options: nosniff`` and a sandboxing CSP on
``/v1/jobs/{id}/input``, no browser renders an input as a page.
"""

from __future__ import annotations

import filetype

SNIFF_BYTES = 262  # what filetype reads of a file's start
OPAQUE = "application/octet-stream"
MEDIA_TYPES = frozenset(
    {
        "audio/aac",
        "audio/amr",
        "audio/mp4",
        "audio/mpeg",
        "audio/ogg",
        "audio/x-aiff",
        "audio/x-flac",
        "audio/x-wav",
        "video/3gpp",
        "video/mp4",
        "video/mpeg",
        "video/quicktime",
        "video/webm",
        "video/x-flv",
        "video/x-m4v",
        "video/x-matroska",
        "video/x-msvideo",
    }
)
# What an input's own page says of it (Content-Security-Policy): nothing may run or load, but the
# media itself, if a browser is sent to it.
INPUT_POLICY = "default-src 'none'; media-src 'self'; sandbox"


def media_type(head: bytes) -> str:
    """The type to store and serve an input as, from its first ``SNIFF_BYTES`` bytes."""
    kind = filetype.guess(head)
    if kind is None and mpeg_audio_frame(head):
        return "audio/mpeg"
    return kind.mime if kind is not None and kind.mime in MEDIA_TYPES else OPAQUE


def mpeg_audio_frame(head: bytes) -> bool:
    """An MP3 with no ID3 tag starts with a frame header. ``filetype`` knows three of its forms
    (MPEG-1 and -2 layer III, protected or not); this reads the header's fields: frame sync (11
    bits), a version and a layer that exist, a bitrate and a sample rate that are not reserved.
    MPEG-2.5 (8 kHz, 11 kHz: phone recordings) was served as octet-stream."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 0b11
    return version != 0b01 and layer != 0b00 and bitrate != 0b1111 and rate != 0b11
