"""Statistics export from the browser: a real download of the CSV."""

from __future__ import annotations

import csv
import io

import pytest

from llm_manager.manager import LLMManager
from llm_manager.types import ChatResult
from tests.e2e.conftest import ADMIN_EMAIL, Site

pytestmark = pytest.mark.browser


def test_the_daily_rows_download_as_csv(site: Site) -> None:
    async def call(llm: LLMManager) -> ChatResult:
        return await llm.chat("demo", "Count me in the statistics.")

    site.run(call)
    page = site.page(signed_in_as=ADMIN_EMAIL)
    page.goto("/admin/statistics")
    page.get_by_text("Export", exact=True).click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Daily rows (CSV)").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    text = download.path().read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows, text
    assert {"day", "configuration", "provider", "model", "requests", "total_tokens"} <= set(rows[0])
    demo = [row for row in rows if row["configuration"] == "demo"]
    assert len(demo) == 1
    assert (demo[0]["provider"], demo[0]["model"], demo[0]["requests"]) == ("demo", "demo-chat", "1")
