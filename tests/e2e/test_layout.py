"""Every main page at phone width: nothing wider than the screen (tables scroll in their own box)."""

from __future__ import annotations

import pytest

from llm_manager.manager import LLMManager
from llm_manager.types import ChatResult
from tests.e2e.conftest import ADMIN_EMAIL, PHONE, Site

pytestmark = pytest.mark.browser

MAIN_PAGES = (
    "/admin",
    "/admin/configurations",
    "/admin/configurations/new",
    "/admin/configurations/demo",
    "/admin/configurations/demo/edit",
    "/admin/console",
    "/admin/conversations",
    "/admin/templates",
    "/admin/usage",
    "/admin/statistics",
    "/admin/budgets",
    "/admin/applications",
    "/admin/keys",
    "/admin/users",
    "/admin/roles",
    "/admin/activity",
    "/admin/account",
)


def test_main_pages_fit_a_phone_screen(site: Site) -> None:
    async def call(llm: LLMManager) -> ChatResult:
        return await llm.chat("demo", "Something for the tables to show.")

    site.run(call)
    page = site.page(signed_in_as=ADMIN_EMAIL, viewport=PHONE)
    too_wide = {}
    for path in MAIN_PAGES:
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, f"{path}: HTTP {response.status}"
        width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if width > viewport + 1:
            too_wide[path] = width
    assert not too_wide, f"wider than the {PHONE['width']} px screen: {too_wide}"


def test_the_sign_in_page_fits_a_phone_screen(site: Site) -> None:
    page = site.page(viewport=PHONE)
    page.goto("/admin/login")
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport + 1
