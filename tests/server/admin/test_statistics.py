"""The statistics page: filters, charts, top tables, exports, and its permission."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from llm_manager.manager import LLMManager
from tests.server.admin.conftest import Admin
from tests.server.admin.test_dashboard import record, write

TODAY = datetime.now(UTC)


def seed(admin: Admin) -> None:
    write(
        admin,
        record(provider="openai", model="gpt-x", cost=Decimal("0.000001234"), latency_ms=100),
        record(provider="openai", model="gpt-x", status="error", latency_ms=400),
        record(provider="anthropic", model="claude-y", prompt_tokens=1000, latency_ms=800),
        record(provider="anthropic", model="claude-y", created_at=TODAY - timedelta(days=40)),
    )


def test_statistics_shows_cards_charts_and_top_tables(admin: Admin) -> None:
    seed(admin)
    page = admin.signed_in("viewer").get("/admin/statistics")
    assert page.status_code == 200
    text = page.text
    assert 'class="value">3</div>' in text, "the default range is the last 30 days"
    for island in ("chart-cost", "chart-tokens", "chart-requests"):
        assert f'type="application/json" id="{island}"' in text
    assert 'role="img" aria-label="Cost per day by provider' in text
    assert "Top models" in text
    assert "Top applications" in text
    assert "claude-y" in text
    assert "gpt-x" in text
    assert "(no application: library calls)" in text
    assert "<script>" not in text


def test_filters_narrow_every_figure(admin: Admin) -> None:
    seed(admin)
    browser = admin.signed_in("viewer")
    page = browser.get("/admin/statistics?provider=openai&model=&application=")
    assert page.status_code == 200
    assert 'class="value">2</div>' in page.text
    assert "50.0%" in page.text
    assert "claude-y</a>" not in page.text
    everything = browser.get(f"/admin/statistics?from={(TODAY - timedelta(days=60)).date().isoformat()}")
    assert 'class="value">4</div>' in everything.text
    none = browser.get("/admin/statistics?application=0&provider=nobody")
    assert "No calls in this range" in none.text


def test_a_bad_date_is_shown_next_to_its_field(admin: Admin) -> None:
    browser = admin.signed_in("viewer")
    page = browser.get("/admin/statistics?from=yesterday")
    assert page.status_code == 422
    assert 'aria-invalid="true"' in page.text
    assert "YYYY-MM-DD" in page.text
    backwards = browser.get("/admin/statistics?from=2026-02-01&to=2026-01-01")
    assert backwards.status_code == 422
    assert "ends before it starts" in backwards.text


def test_csv_exports_rows_and_aggregates_with_exact_money(admin: Admin) -> None:
    seed(admin)
    browser = admin.signed_in("viewer")
    daily = browser.get("/admin/statistics/export.csv?kind=daily&provider=openai")
    assert daily.status_code == 200
    assert daily.headers["content-type"].startswith("text/csv")
    assert daily.headers["content-disposition"].startswith('attachment; filename="llm-statistics-daily-')
    rows = list(csv.DictReader(io.StringIO(daily.text)))
    assert list(rows[0])[:7] == [
        "day",
        "application_id",
        "application",
        "configuration_id",
        "configuration",
        "provider",
        "model",
    ]
    assert [(row["provider"], row["model"], row["requests"], row["errors"]) for row in rows] == [
        ("openai", "gpt-x", "2", "1")
    ]
    assert rows[0]["cost_usd"] == "0.250001234", "money as an exact decimal string"
    models = list(csv.DictReader(io.StringIO(browser.get("/admin/statistics/export.csv?kind=models").text)))
    assert [(row["provider"], row["model"], row["requests"]) for row in models] == [
        ("openai", "gpt-x", "2"),
        ("anthropic", "claude-y", "1"),
    ]
    summary = list(csv.DictReader(io.StringIO(browser.get("/admin/statistics/export.csv?kind=summary").text)))
    assert summary[0]["requests"] == "3"
    assert float(summary[0]["p50_latency_ms"]) > 0


def test_json_export_has_columns_rows_and_filters(admin: Admin) -> None:
    seed(admin)
    browser = admin.signed_in("viewer")
    response = browser.get("/admin/statistics/export.json?kind=applications&provider=anthropic")
    assert response.status_code == 200
    assert response.headers["content-disposition"].endswith('.json"')
    body = response.json()
    assert body["kind"] == "applications"
    assert body["filters"]["provider"] == "anthropic"
    assert body["columns"][:2] == ["application_id", "application"]
    assert body["rows"] == [
        body["rows"][0] | {"application_id": None, "application": None, "requests": 1, "cost_usd": "0.25"}
    ]
    summary = browser.get("/admin/statistics/export.json?kind=summary").json()
    assert summary["rows"][0]["requests"] == 3
    assert summary["rows"][0]["latency_resolution"] == 0.0905
    assert browser.get("/admin/statistics/export.json?kind=nonsense").status_code == 400


def test_statistics_need_view_llm_stats(admin: Admin) -> None:
    async def custom_role(llm: LLMManager) -> None:
        await llm.services.accounts.create_role("tester", permissions=["test-llm-configs"])

    admin.gateway.run(custom_role)
    browser = admin.signed_in("tester")
    for url in (
        "/admin/statistics",
        "/admin/statistics/export.csv?kind=daily",
        "/admin/statistics/export.json?kind=summary",
    ):
        assert browser.get(url).status_code == 403, url
