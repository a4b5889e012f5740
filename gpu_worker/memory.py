"""Giving back what a job used: the one place the worker talks to glibc's allocator.

CTranslate2, numpy, onnxruntime (the VAD) and PyAV allocate through ``malloc``. glibc gives a
thread that allocates while another holds the lock an arena of its own, up to eight per core, and
keeps what is freed in each for reuse instead of returning it to the system. A worker's job slots
and CTranslate2's compute threads each decode, extract features and run the model, so after a long
job every arena holds hundreds of MiB that nothing uses: the worker stayed 694 MiB above its idle
after an 18-minute job (issue 33). So the worker caps the arenas at two (``M_ARENA_MAX``, before
its job threads start; ``MALLOC_ARENA_MAX`` in the environment wins, for a machine where many job
slots would wait on two) and trims every arena once a job ends (``malloc_trim``), which returns the
free pages at their tops and the free whole pages inside them.

Neither call exists outside glibc (musl, macOS): there each does nothing and says so.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  glibc has it; musl's libc.so.6, if any, would not
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


def cap_arenas(most: int = ARENAS) -> bool:
    """At most ``most`` malloc arenas from now on (unless ``MALLOC_ARENA_MAX`` says otherwise, which
    glibc has read already); whether the allocator took it."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    if _LIBC is None:
        log.info("not glibc: malloc arenas left as they are")
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, most))


def give_back() -> bool:
    """Return the memory free in every arena to the system; whether any was."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))
