"""Headless Chromium from Debian's package, driven by Playwright for Python.

Playwright normally runs a browser build it downloads (`playwright install`); that download is
not possible here and not wanted, so it launches the system's /usr/bin/chromium instead, with
everything that would reach the network switched off. A missing Chromium fails the test that
needs it (`make test` installs it, like sshd); it is never a skip.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run")


def chromium_path() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        pytest.fail("Chromium is not installed: `make test` installs it (apt package chromium)",
                    pytrace=False)
    return path


@dataclass
class PageLog:
    """What the page said and asked for while it was open."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextmanager
def open_page(viewport: tuple[int, int] = (1280, 800)) -> Iterator[tuple[Any, PageLog]]:
    from playwright.sync_api import sync_playwright

    log = PageLog()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=list(ARGS))
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.on("console", lambda m: log.errors.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: log.errors.append(f"page error: {e}"))
            page.on("request", lambda r: log.requests.append(r.url))
            yield page, log
        finally:
            browser.close()
