"""Browser tests: the admin UI served on a real port and driven in Debian's Chromium by Playwright.

One Chromium for the whole package (a start costs ~1.7 s), a fresh context (cookies) per person,
a fresh server and SQLite database per test. Every page the tests open is watched: a Content
Security Policy violation or an uncaught script error fails the test that caused it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from llm_manager.manager import LLMManager
from llm_manager.server.app import create_app
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.seed import seed_defaults
from llm_manager.settings import Settings
from llm_manager.testing.live_server import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"
ADMIN_EMAIL = "admin@example.com"
VIEWER_EMAIL = "viewer@example.com"
SLOW_DEMO = "slow-demo"
"""A demo configuration that streams a token every 150 ms: slow enough to press Stop mid-answer."""
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
_CSP = re.compile(r"content security policy", re.IGNORECASE)


@dataclass
class Site:
    """The running admin UI, a way to reach its services, and the browser pages opened on it."""

    base_url: str
    run: Callable[[Callable[[LLMManager], Coroutine[Any, Any, Any]]], Any]
    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """CSP violations and uncaught script errors seen on any page, with the page's URL."""

    def page(self, *, signed_in_as: str | None = None, viewport: ViewportSize | None = None) -> Page:
        """A new person (their own cookies) on a new page; signed in through the form if asked."""
        context = self.browser.new_context(base_url=self.base_url, viewport=viewport or LAPTOP)
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: script error: {error}"))
        if signed_in_as:
            sign_in(page, signed_in_as)
        return page

    def _console(self, page: Page, message: ConsoleMessage) -> None:
        if _CSP.search(message.text):
            self.problems.append(f"{page.url}: {message.text}")

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Sign in through the form, as a person would, and wait for the page it leads to."""
    page.goto("/admin/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/admin/login"))


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the browser tests check pages; the services are tested on both databases."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("LLM_MANAGER_REQUIRE_BROWSER"):
            pytest.fail(f"LLM_MANAGER_REQUIRE_BROWSER is set but {CHROMIUM} is missing")
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


async def _populate(llm: LLMManager) -> None:
    """The accounts and configurations every browser test starts from."""
    await seed_defaults(llm.configurations)
    await llm.configurations.create(
        ConfigurationCreate(
            slug=SLOW_DEMO, name="Slow demo", provider="demo", model="demo-chat", options={"delay_ms": 150}
        )
    )
    await llm.services.accounts.create_user(ADMIN_EMAIL, PASSWORD, name="Ada Admin", roles=["super-admin"])
    await llm.services.accounts.create_user(VIEWER_EMAIL, PASSWORD, name="Vic Viewer", roles=["viewer"])


@pytest.fixture
def site(settings: Settings, browser: Browser) -> Iterator[Site]:
    """The app on a free port in a thread, populated, with Chromium pointed at it."""
    with serve_in_thread(create_app(settings)) as server:
        server.run(_populate, timeout=30)
        site = Site(base_url=server.base_url, run=server.run, browser=browser)
        try:
            yield site
        finally:
            site.close()
    assert not site.problems, "the pages broke their Content Security Policy or threw:\n" + "\n".join(
        site.problems
    )
