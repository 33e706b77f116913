"""Browser fixtures for the console tests: Debian's Chromium driven by Playwright (never a downloaded browser).

The oversight fixtures (`operator`, `governed`, `run_agent`) are re-exported from the oversight tests, so console
tests create governed sandboxes the same way: as an operator, so the admin in the browser may approve.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

from tests.conftest import REPO, Controller
from tests.controller.oversight.conftest import governed, operator, run_agent

__all__ = ["governed", "operator", "run_agent"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = REPO / "test-artifacts" / "console"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing; run the tests with ./scripts/test, which installs Debian's chromium")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Console:
    """A browser tab on the console, with the errors its page raised and the Content-Security-Policy violations
    the browser reported (a test fails on any of either)."""

    def __init__(self, browser: Browser, controller: Controller, viewport: dict[str, int]) -> None:
        self.controller = controller
        self.context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        self.context.set_default_timeout(20_000)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", self._csp_violation)

    def _csp_violation(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.errors.append(f"CSP: {message.text}")

    def open(self, route: str = "") -> Page:
        self.page.goto(f"{self.controller.url}/{route}")
        return self.page

    def login(self, route: str = "#/fleet", token: str | None = None) -> Page:
        page = self.open(route)
        page.get_by_label("API token").fill(token or self.controller.admin_token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#topbar")).to_be_visible()
        return page

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.wait_for_timeout(300)  # let the last animation frame and transitions settle
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def console(browser: Browser, controller: Controller) -> Iterator[Callable[..., Console]]:
    """Open console tabs (desktop-sized unless told); they are closed after the test, which fails on page errors."""
    opened: list[Console] = []

    def make(viewport: dict[str, int] | None = None) -> Console:
        tab = Console(browser, controller, viewport or DESKTOP)
        opened.append(tab)
        return tab

    yield make
    errors = [e for tab in opened for e in tab.errors]
    for tab in opened:
        tab.close()
    assert not errors, f"the console raised errors: {errors}"
