"""Fixtures for the console's browser tests: Debian's headless Chromium driven by Playwright,
against a manager (and workers) started for each test. Playwright never downloads a browser:
the tests use ``/usr/bin/chromium`` and fail when it is not installed (`make test` installs it)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import playwright.async_api as playwright_api
import pytest
import pytest_asyncio

from tests.support import ADMIN_PASSWORD, ADMIN_USER, REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
TIMEOUT_MS = 15_000  # for every expect/wait; conditions, never fixed sleeps
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# What the browser tests share: Playwright's assertions, a schedule that does not fire during a
# test (a job that runs only when asked to), the class Bootstrap gives an invalid input, and a
# name that would run script were the console to insert it as HTML.
expect = playwright_api.expect
NEVER = "0 0 1 1 *"
INVALID = re.compile(r"\bis-invalid\b")
XSS_NAME = "<img src=x onerror=alert(1)>"
# Chrome logs every 4xx/5xx answer as a console error; the tests provoke some on purpose.
_EXPECTED_CONSOLE = re.compile(r"^Failed to load resource: the server responded with a status of 4")


@dataclass
class Console:
    """One logged-in browser tab, with what it reported: dialogs (alert, confirm...),
    console errors (CSP violations among them) and uncaught page errors."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_quiet(self) -> None:
        assert self.dialogs == [], f"the page opened dialogs: {self.dialogs}"
        assert self.errors == [], f"the page reported errors: {self.errors}"


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        # A failure, not a skip: `make test` installs it, and a skip would hide the console.
        pytest.fail(f"{CHROMIUM} is not installed (make test-tools installs chromium)")
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_console(
    browser: Any,
    base: str,
    username: str = ADMIN_USER,
    password: str = ADMIN_PASSWORD,
    viewport: dict[str, int] = DESKTOP,
    path: str = "/",
    view: str = "jobs",
    **context_options: Any,
) -> Console:
    """A fresh browser context that opens the console (at ``path``: "/#log=..." for a
    notification's link), is sent to the login page, logs in and, unless the path names what
    to show, goes to ``view`` (the console opens on the dashboard) and waits for it (the jobs
    table, for jobs)."""
    # Reduced motion: Bootstrap's CSS then skips its fades, so dialogs settle at once.
    context = await browser.new_context(
        viewport=viewport, reduced_motion="reduce", **context_options
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    console = Console(page)

    async def on_dialog(dialog: Any) -> None:
        console.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def on_console(message: Any) -> None:
        if message.type == "error" and not _EXPECTED_CONSOLE.match(message.text):
            console.errors.append(f"console: {message.text}")

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: console.errors.append(f"pageerror: {exc}"))
    expect = playwright_api.expect
    await page.goto(base + path)
    # The redirect keeps the address's fragment, and logging in goes back to it.
    fragment = path.partition("#")[2]
    kept = re.escape("#" + fragment) if fragment else ""
    await expect(page).to_have_url(re.compile(r"/login\.html" + kept + "$"))
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await expect(page.locator("#whoami")).to_contain_text(username)
    if not fragment:
        await expect(page.locator("#pane-dashboard")).to_be_visible()
        if view != "dashboard":
            await page.click(f"#tab-{view}")
        if view == "jobs":
            await expect(page.locator("#jobs-body tr").first).to_be_visible()
    return console


async def dialog_ready(page: Any, dialog: str, focused: str | None = None) -> None:
    """Wait until a Bootstrap dialog is fully shown: Bootstrap ignores a close while the dialog
    is still opening, and moves the focus when it is done (to the dialog, then the console
    moves it to ``focused``), which would send typing meant for another field there."""
    expect = playwright_api.expect
    await expect(page.locator(dialog)).to_be_visible()
    await expect(page.locator(focused or dialog)).to_be_focused()


def job_row(page: Any, name: str) -> Any:
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return page.locator(f'#jobs-body tr.job-row[data-job="{quoted}"]')


async def new_job(page: Any, **fields: str) -> None:
    """Open the "New job" dialog and type the given fields (by input id suffix)."""
    await page.click("#btn-new-job")
    await dialog_ready(page, "#job-modal", "#job-name")
    for name, value in fields.items():
        await page.fill(f"#job-{name}", value)


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
