"""Debian's Chromium under Playwright, launched the one way the browser tests use it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from playwright.sync_api import Browser, sync_playwright

from tests.support.tools import need_tool

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@contextlib.contextmanager
def chromium(extra_args: Sequence[str] = ()) -> Iterator[Browser]:
    """A headless Chromium (/usr/bin/chromium, need_tool: fails under CI=true when missing) with
    CHROMIUM_ARGS plus `extra_args` (e.g. --host-resolver-rules); closed on leaving."""
    executable = need_tool("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()
