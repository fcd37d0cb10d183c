"""Configurations in the browser: creating one through the form, and a viewer refused an edit."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from llm_manager.manager import LLMManager
from llm_manager.services.configurations import ConfigurationView
from tests.e2e.conftest import ADMIN_EMAIL, VIEWER_EMAIL, Site

pytestmark = pytest.mark.browser


def test_an_admin_creates_a_demo_configuration_and_finds_it_in_the_list(site: Site) -> None:
    page = site.page(signed_in_as=ADMIN_EMAIL)
    page.goto("/admin/configurations")
    page.get_by_role("button", name="New configuration").click()
    expect(page).to_have_url(re.compile(r"/admin/configurations/new$"))
    page.locator("#f-slug").fill("browser-demo")
    page.locator("#f-name").fill("Made in a browser")
    page.locator("#f-provider").select_option("demo")
    page.locator("#f-model").fill("demo-chat")
    page.get_by_role("button", name="Create configuration").click()

    expect(page).to_have_url(re.compile(r"/admin/configurations/browser-demo$"))
    expect(page.get_by_role("status")).to_contain_text("browser-demo created")
    page.goto("/admin/configurations")
    row = page.get_by_role("row").filter(has_text="browser-demo")
    expect(row).to_contain_text("Made in a browser")

    created: ConfigurationView = site.run(lambda llm: llm.configurations.get("browser-demo"))
    assert (created.provider, created.model, created.is_active) == ("demo", "demo-chat", True)


def test_a_form_error_is_shown_next_to_its_field(site: Site) -> None:
    page = site.page(signed_in_as=ADMIN_EMAIL)
    page.goto("/admin/configurations/new")
    page.locator("#f-slug").fill("Not A Slug!")
    page.get_by_role("button", name="Create configuration").click()
    expect(page.locator("#e-slug")).to_be_visible()
    expect(page.locator("#f-slug")).to_have_attribute("aria-invalid", "true")


def test_a_viewer_sees_no_edit_button_and_is_refused_the_edit_page_and_the_edit(site: Site) -> None:
    page = site.page(signed_in_as=VIEWER_EMAIL)
    page.goto("/admin/configurations/demo")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Demo")
    expect(page.get_by_role("button", name="Edit")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)

    response = page.goto("/admin/configurations/demo/edit")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()

    # The server refuses the edit itself, not just the page: post it with the viewer's own CSRF token.
    hx_headers = page.locator("body").get_attribute("hx-headers") or ""
    token = re.search(r'"X-CSRF-Token": "([^"]+)"', hx_headers)
    assert token is not None
    posted = page.request.post(
        "/admin/configurations/demo/edit",
        form={"csrf_token": token.group(1), "name": "Hijacked", "provider": "demo", "model": "demo-chat"},
        max_redirects=0,
    )
    assert posted.status == 403

    async def unchanged(llm: LLMManager) -> ConfigurationView:
        return await llm.configurations.get("demo")

    demo: ConfigurationView = site.run(unchanged)
    assert demo.name == "Demo (offline)"
