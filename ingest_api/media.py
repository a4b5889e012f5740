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
    return kind.mime if kind is not None and kind.mime in MEDIA_TYPES else OPAQUE
