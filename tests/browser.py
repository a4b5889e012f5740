"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, for the tests of what a
browser shows: the page, and /docs. ``needs_chromium`` skips a module where Chromium is not
installed; ``launched`` is the ``browser`` fixture of tests/conftest.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; dev.py test does it as root)"
)
# As the machine notes say: no background networking (the machine has no network), no sandbox (root).
FLAGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launched() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, chromium_sandbox=False)
        yield browser
        browser.close()
