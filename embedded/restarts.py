"""When to start again a service that stopped: the supervisor's processes and ``embedded.light``'s
threads alike."""

from __future__ import annotations

MAX_RESTART_DELAY = 30.0
STABLE_SECONDS = 60.0  # a service that ran this long before it stopped is started again at once


class Backoff:
    """``base`` seconds before each start again, doubled while the service keeps dying young, up to
    ``MAX_RESTART_DELAY``: a service that cannot start (its port taken, Redis away) does not spin."""

    def __init__(self, base: float) -> None:
        self.base = base
        self.failures = 0

    def after(self, code: int | None, lived: float) -> float:
        """The delay before the next start of a service that ended with ``code`` after ``lived`` seconds."""
        crash_looping = code != 0 and lived < STABLE_SECONDS
        self.failures = self.failures + 1 if crash_looping else 0
        return min(MAX_RESTART_DELAY, self.base * 2**self.failures)
