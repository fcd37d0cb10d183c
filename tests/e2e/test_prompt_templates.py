"""Prompt templates in the browser: create one with a variable, save a second version (adding a
variable row with the editor's script), compare the two, label one `production`, preview a render."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from llm_manager.manager import LLMManager
from llm_manager.services.templates import TemplateDraft, TemplateView
from tests.e2e.conftest import ADMIN_EMAIL, PHONE, Site

pytestmark = pytest.mark.browser


def _create_first_version(page: Page) -> None:
    page.goto("/admin/templates")
    page.get_by_role("button", name="New template").click()
    expect(page).to_have_url(re.compile(r"/admin/templates/new$"))
    page.locator("#f-name").fill("product-blurb")
    page.locator("#f-description").fill("Short product copy")
    page.locator("#f-user").fill("Write one line about {{ topic }}.")
    page.locator("#f-var-0-name").fill("topic")
    page.locator("#f-var-0-required").check()
    page.locator("#f-note").fill("first")
    page.get_by_role("button", name="Create template").click()
    expect(page).to_have_url(re.compile(r"/admin/templates/product-blurb\?version=1$"))
    expect(page.get_by_role("status")).to_contain_text("Saved as version 1")


def test_a_template_is_created_versioned_compared_labelled_and_previewed(site: Site) -> None:
    page = site.page(signed_in_as=ADMIN_EMAIL)
    _create_first_version(page)

    page.get_by_role("button", name="New version").click()
    expect(page.get_by_role("button", name="Save as version 2")).to_be_visible()
    page.locator("#f-user").fill("Write two lines about {{ topic }}, in a {{ tone }} voice.")
    page.get_by_role("button", name="Add variable").click()
    new_row = page.locator("[data-variable-row]").last
    new_row.get_by_label("Name").fill("tone")
    new_row.get_by_label("Default").fill("calm")
    page.locator("#f-note").fill("two lines, with a tone")
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_role("status")).to_contain_text("Saved as version 2")

    page.locator("#f-diff-from").select_option("1")
    page.locator("#f-diff-to").select_option("2")
    page.get_by_role("button", name="Compare").click()
    diff = page.locator("#diff-result")
    expect(diff.locator("del.diff-removed")).to_contain_text(["- Write one line about {{ topic }}."])
    expect(diff.locator("ins.diff-added").first).to_contain_text("+ Write two lines about {{ topic }}")
    expect(diff.get_by_label("Variables").locator("ins")).to_contain_text(["+ tone: string, optional"])

    page.locator("#f-label").fill("production")
    page.locator("#f-label_version").select_option("1")
    page.get_by_role("button", name="Set label").click()
    expect(page.get_by_role("status")).to_contain_text("production now points at version 1")
    expect(page.locator("table.labels")).to_contain_text("production")

    async def labels(llm: LLMManager) -> TemplateView:
        return await llm.templates.get("product-blurb")

    template: TemplateView = site.run(labels)
    assert template.labels == {"latest": 2, "production": 1}

    page.goto("/admin/templates/product-blurb?version=2")
    expect(page.locator("#f-v-tone")).to_have_value("calm")
    page.locator("#f-v-topic").fill("green tea")
    page.get_by_role("button", name="Render").click()
    expect(page.locator('#preview-result [data-rendered="user"]')).to_have_text(
        "Write two lines about green tea, in a calm voice."
    )
    page.locator("#f-v-topic").fill("")
    page.get_by_role("button", name="Render").click()
    expect(page.locator("#preview-result [role=alert]")).to_contain_text("variable 'topic' is required")


def test_removing_a_variable_row_drops_it_from_the_saved_version(site: Site) -> None:
    page = site.page(signed_in_as=ADMIN_EMAIL)
    _create_first_version(page)
    page.get_by_role("button", name="New version").click()
    page.get_by_role("button", name="Add variable").click()
    page.locator("[data-variable-row]").last.get_by_label("Name").fill("unused")
    page.get_by_role("button", name="Remove this variable").last.click()
    expect(page.locator("[data-variable-row]")).to_have_count(2)  # `topic` and the empty row
    page.get_by_role("button", name="Save as version 2").click()
    expect(page.get_by_role("status")).to_contain_text("Saved as version 2")
    expect(page.locator("table.variables tbody tr")).to_have_count(1)


def test_template_pages_fit_a_phone_screen(site: Site) -> None:
    async def setup(llm: LLMManager) -> None:
        variables = [{"name": "topic", "required": True, "description": "What the copy is about"}]
        for user in ("Write one line about {{ topic }}.", "Write two long lines about {{ topic }}, please."):
            await llm.templates.save(
                "product-blurb", TemplateDraft(user=user, variables=variables, note="a note")
            )
        await llm.templates.set_label("product-blurb", "production", 1)
        await llm.chat("demo", template="product-blurb@1", variables={"topic": "tea"})

    site.run(setup)
    page = site.page(signed_in_as=ADMIN_EMAIL, viewport=PHONE)
    too_wide = {}
    for path in (
        "/admin/templates",
        "/admin/templates/new",
        "/admin/templates/product-blurb",
        "/admin/templates/product-blurb/edit",
        "/admin/templates/product-blurb/diff?from=1&to=2",
    ):
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, f"{path}: HTTP {response.status}"
        width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if width > viewport + 1:
            too_wide[path] = width
    assert not too_wide, f"wider than the {PHONE['width']} px screen: {too_wide}"
