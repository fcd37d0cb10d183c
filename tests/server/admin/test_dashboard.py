"""The dashboard: figures for those with view-llm-stats, an empty state, and a welcome for others."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from llm_manager.manager import LLMManager
from llm_manager.services.accounting import UsageRecord
from tests.server.admin.conftest import Admin


def record(**extra: object) -> UsageRecord:
    values: dict[str, object] = {
        "operation": "chat",
        "configuration_id": None,
        "configuration_slug": "demo-slug",
        "requested_configuration": "demo-slug",
        "application_id": None,
        "provider": "demo",
        "model": "demo-chat",
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "cost": Decimal("0.25"),
        "latency_ms": 200,
    }
    return UsageRecord(**(values | extra))  # type: ignore[arg-type]


def write(admin: Admin, *records: UsageRecord) -> None:
    async def put(llm: LLMManager) -> None:
        for item in records:
            await llm.services.writer.put(item)
        await llm.services.writer.flush()

    admin.gateway.run(put)


def test_empty_dashboard_sends_people_to_the_console(admin: Admin) -> None:
    page = admin.signed_in("operator").get("/admin")
    assert page.status_code == 200
    assert "No usage yet" in page.text
    assert 'href="/admin/console"' in page.text
    assert "chart-4.6.1" not in page.text, "Chart.js loads only where there is a chart"


def test_dashboard_shows_today_the_month_the_chart_and_recent_calls(admin: Admin) -> None:
    earlier = datetime.now(UTC) - timedelta(days=3)
    write(
        admin,
        record(created_at=earlier, latency_ms=1000),
        record(latency_ms=100),
        record(latency_ms=300, status="error", cost=None, unpriced=True),
    )
    page = admin.signed_in("viewer").get("/admin")
    assert page.status_code == 200
    text = page.text
    today, month = text.split('id="period-heading"')
    assert "Requests" in today
    assert re.search(r'class="value">2</div>', today), "two calls today"
    assert re.search(r'class="value">3</div>', month), "three in the last 30 days"
    assert "50.0%" in today, "error rates"
    assert "33.3%" in month, "error rates"
    assert "$0.2500" in today
    assert "$0.5000" in month
    assert "p95" in text
    assert "±9%" in text
    assert 'type="application/json" id="cost-per-day"' in text
    assert 'aria-label="Cost per day, last 30 days (USD)' in text
    assert "chart-4.6.1.umd.min.js" in text
    assert "js/charts.js" in text
    assert len(re.findall(r'href="/admin/usage/[0-9a-f-]{36}"', text)) == 3
    assert "<script>" not in text, "no inline script (CSP)"


def test_recent_activity_is_capped_at_ten_rows(admin: Admin) -> None:
    write(admin, *[record() for _ in range(12)])
    page = admin.signed_in("viewer").get("/admin")
    assert len(re.findall(r'href="/admin/usage/[0-9a-f-]{36}"', page.text)) == 10


def test_user_without_view_llm_stats_gets_a_welcome_not_figures(admin: Admin) -> None:
    write(admin, record())

    async def custom_role(llm: LLMManager) -> None:
        await llm.services.accounts.create_role("tester", permissions=["test-llm-configs"])

    admin.gateway.run(custom_role)
    page = admin.signed_in("tester").get("/admin")
    assert page.status_code == 200
    assert "view-llm-stats" in page.text
    assert 'href="/admin/console"' in page.text
    assert "cost-per-day" not in page.text
    assert "/admin/usage/" not in page.text
