"""A headless Chromium driven by Playwright, in its own thread, for trio code.

The gateway runs on trio in the main thread (its signal handling needs that);
Playwright's blocking API runs here, in one dedicated thread that owns every
browser object (Playwright objects must stay on the thread that made them).
Trio code hands it steps: `await browser.page_do(page, step)`.

Debian's `chromium` (/usr/bin/chromium), never a browser Playwright downloads:
the machine is offline. The flags are those it needs to run headless as root
without reaching for the network.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, TypeVar

import trio

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
STEP_TIMEOUT_SECONDS: Final = 60.0  # one step (several page actions) at most
ACTION_TIMEOUT_MS: Final = 10_000  # one Playwright action or expectation at most
VIEWPORT: Final = (1366, 900)  # a laptop screen, in CSS pixels

T = TypeVar("T")


def browser_unavailable() -> str | None:
    """None when Playwright and Debian's Chromium are both here, else what is missing."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


class BrowserThread:
    """One Chromium for many pages; every Playwright call runs on one worker thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="browser")
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def start(self) -> None:
        self._pool.submit(self._launch).result(STEP_TIMEOUT_SECONDS)

    def close(self) -> None:
        try:
            self._pool.submit(self._stop).result(STEP_TIMEOUT_SECONDS)
        finally:
            self._pool.shutdown(wait=True)

    def _launch(self) -> None:
        from playwright.sync_api import sync_playwright  # a test extra: imported when used

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, args=list(CHROMIUM_ARGS)
        )

    def _stop(self) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()

    async def call(self, step: Callable[..., T], *args: object) -> T:
        """Run `step(*args)` on the browser thread; its exception is raised here."""
        future = self._pool.submit(step, *args)
        return await trio.to_thread.run_sync(future.result, STEP_TIMEOUT_SECONDS)

    @asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A page in a fresh context (its own sessionStorage), closed afterwards."""
        context = await self.call(self._new_context)
        try:
            yield await self.call(context.new_page)
        finally:
            await self.call(context.close)

    def _new_context(self) -> BrowserContext:
        assert self._browser is not None, "start() first"
        context = self._browser.new_context(viewport={"width": VIEWPORT[0], "height": VIEWPORT[1]})
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        return context
