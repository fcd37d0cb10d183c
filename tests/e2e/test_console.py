"""The streaming console in a real browser: start, stop mid-answer, and find the run everywhere."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from llm_manager.manager import LLMManager
from llm_manager.services.usage import UsageFilter, UsagePage
from tests.e2e.conftest import ADMIN_EMAIL, SLOW_DEMO, Site

pytestmark = pytest.mark.browser


def _console_runs(site: Site) -> UsagePage:
    async def runs(llm: LLMManager) -> UsagePage:
        return await llm.services.usage.list_page(filters=UsageFilter(operation="console"))

    page: UsagePage = site.run(runs)
    return page


def _start_slow_run(page: Page) -> None:
    page.goto("/admin/console")
    page.get_by_label("Configuration").select_option(SLOW_DEMO)
    page.get_by_role("textbox", name="Prompt").fill("Tell me about the browser tests.")
    page.get_by_role("button", name="Start").click()


def test_stop_keeps_the_partial_answer_and_logs_the_run_as_cancelled(site: Site) -> None:
    page = site.page(signed_in_as=ADMIN_EMAIL)
    _start_slow_run(page)
    response = page.locator("#console-response")
    expect(response).to_contain_text("This is the LLM Manager demo")
    page.get_by_role("button", name="Stop").click()

    expect(page.locator("#stat-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Start")).to_be_enabled()
    partial = response.inner_text()
    assert partial.startswith("This is the LLM Manager demo")
    assert "before adding a real provider" not in partial, "the whole answer arrived: Stop did nothing"
    expect(page.locator("#stat-log")).to_be_visible()

    rows = _console_runs(site).rows
    assert [(row.configuration, row.status) for row in rows] == [(SLOW_DEMO, "cancelled")]
    assert rows[0].completion_tokens >= 1
    assert rows[0].user_id == ADMIN_EMAIL
    runs = page.locator("#console-runs")
    expect(runs.get_by_role("row").filter(has_text=SLOW_DEMO)).to_contain_text("cancelled")


def test_a_finished_run_shows_its_stats_and_appears_on_the_dashboard(site: Site) -> None:
    page = site.page(signed_in_as=ADMIN_EMAIL)
    page.goto("/admin/console")
    page.get_by_label("Configuration").select_option("demo")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#stat-status")).to_have_text("ok")
    expect(page.locator("#console-response")).to_contain_text("before adding a real provider")
    expect(page.locator("#stat-tokens")).to_contain_text(re.compile(r"\d+ \(\d+ in, \d+ out\)"))
    log_id = page.locator("#stat-log").get_attribute("title")
    rows = _console_runs(site).rows
    assert [row.id for row in rows] == [log_id]

    page.goto("/admin")
    recent = page.get_by_role("region", name="Recent activity")
    expect(recent.get_by_role("row").filter(has_text="demo")).to_contain_text("ok")
    page.get_by_role("link", name=re.compile(r"^Details of the call")).first.click()
    expect(page).to_have_url(re.compile(rf"/admin/usage/{log_id}$"))
