"""Slowing down guessing: an address that gives ``AUTH_FAILURES_MAX`` wrong API keys within a
minute gets 429 for each further wrong key until its minute is over. A right key is never refused:
refusing right keys too let anyone lock every tenant behind one address out (and with a believed
``X-Forwarded-For``, any address), while a key of 20 or more characters is not found by guessing.

Counted in the API process, with no round trip on the way of a request; with several API
replicas, an address gets that many guesses a minute from each. The table is bounded: when it
is full, the oldest addresses are forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict

WINDOW = 60.0
MAX_ADDRESSES = 100_000


class FailureWindow:
    def __init__(self, most: int, window: float = WINDOW, addresses: int = MAX_ADDRESSES) -> None:
        self.most, self.window, self.addresses = most, window, addresses
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address -> (window start, failures)

    def refused_for(self, address: str, now: float | None = None) -> float:
        """Seconds until ``address`` may try again; 0 if it may now."""
        now = time.monotonic() if now is None else now
        start, failures = self._seen.get(address, (now, 0))
        if now - start >= self.window:
            self._seen.pop(address, None)
            return 0.0
        return self.window - (now - start) if failures >= self.most else 0.0

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        start, failures = self._seen.pop(address, (now, 0))
        if now - start >= self.window:
            start, failures = now, 0
        self._seen[address] = (start, failures + 1)
        while len(self._seen) > self.addresses:
            self._seen.popitem(last=False)
