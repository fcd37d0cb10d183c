"""Admin pages: statistics over a date range, with charts, top tables and CSV / JSON export.

Everything is read from the rollups (`usage_daily` and the latency histogram) through
`StatsService`, so a month of a busy deployment costs a few small GROUP BYs. Filters are GET
parameters, so a view can be bookmarked and its export links carry the same filters.
Money goes out as exact decimal strings; charts get floats, which is all a chart can show.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from llm_manager.errors import InvalidInputError
from llm_manager.server.admin._pages import PageRenderer, field_errors, money, number
from llm_manager.server.admin._session import Needs
from llm_manager.server.deps import Manager
from llm_manager.services.latency import RESOLUTION
from llm_manager.services.stats import MAX_GROUPS, StatsFilter, StatsReport, StatsService, StatsTotals
from llm_manager.services.web_sessions import SessionUser

router = APIRouter()
ViewsStats = Annotated[SessionUser, Depends(Needs("view-llm-stats"))]
ExportKind = Literal["daily", "summary", "models", "applications"]
DEFAULT_DAYS = 30
TOTAL_COLUMNS = (
    "requests",
    "errors",
    "cancelled",
    "error_rate",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cost_usd",
    "unpriced_requests",
    "estimated_requests",
    "avg_latency_ms",
    "avg_ttft_ms",
)
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "daily": (
        "day",
        "application_id",
        "application",
        "configuration_id",
        "configuration",
        "provider",
        "model",
    ),
    "summary": ("from", "to"),
    "models": ("provider", "model"),
    "applications": ("application_id", "application"),
}
LATENCY_COLUMNS = ("p50_latency_ms", "p95_latency_ms", "latency_resolution")
Cell = str | int | float | None


@dataclass(frozen=True)
class StatisticsQuery:
    """The page's GET parameters as typed; empty strings mean "any" (a filter form sends them)."""

    date_from: Annotated[str, Query(alias="from")] = ""
    date_to: Annotated[str, Query(alias="to")] = ""
    application: str = ""
    configuration: str = ""
    provider: str = ""
    model: str = ""

    def to_filter(self, today: date) -> StatsFilter:
        last = _day(self.date_to, "to") or today
        first = _day(self.date_from, "from") or last - timedelta(days=DEFAULT_DAYS - 1)
        return StatsFilter(
            date_from=first,
            date_to=last,
            application_id=_row_id(self.application, "application"),
            configuration_id=_row_id(self.configuration, "configuration"),
            provider=self.provider.strip() or None,
            model=self.model.strip() or None,
        )


Filters = Annotated[StatisticsQuery, Depends()]


@router.get("/admin/statistics")
async def statistics_page(
    request: Request, user: ViewsStats, llm: Manager, pages: PageRenderer, query: Filters
) -> Response:
    today = datetime.now(UTC).date()
    errors: dict[str, str] = {}
    try:
        filters = query.to_filter(today)
        report = await llm.services.stats.report(filters)
    except InvalidInputError as invalid:
        errors = field_errors(invalid, default="from")
        report = await llm.services.stats.report(StatisticsQuery().to_filter(today))
    return pages.render(
        request, "statistics.html", _page_context(report, errors), status_code=422 if errors else 200
    )


@router.get("/admin/statistics/export.csv")
async def export_csv(user: ViewsStats, llm: Manager, query: Filters, kind: ExportKind = "daily") -> Response:
    filters = query.to_filter(datetime.now(UTC).date())
    columns, rows = await export_table(llm.services.stats, kind, filters)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows([row.get(column) for column in columns] for row in rows)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_file_name(kind, filters)}.csv"'},
    )


@router.get("/admin/statistics/export.json")
async def export_json(user: ViewsStats, llm: Manager, query: Filters, kind: ExportKind = "daily") -> Response:
    filters = query.to_filter(datetime.now(UTC).date())
    columns, rows = await export_table(llm.services.stats, kind, filters)
    body = {"kind": kind, "filters": _filter_dict(filters), "columns": list(columns), "rows": rows}
    return JSONResponse(
        body, headers={"Content-Disposition": f'attachment; filename="{_file_name(kind, filters)}.json"'}
    )


async def export_table(
    stats: StatsService, kind: ExportKind, filters: StatsFilter
) -> tuple[tuple[str, ...], list[dict[str, Cell]]]:
    """The rows of one export: the rollup rows (`daily`) or an aggregate, with its column order."""
    columns = KEY_COLUMNS[kind] + TOTAL_COLUMNS
    if kind == "daily":
        daily = await stats.daily_rows(filters)
        return columns, [
            _keys(row, KEY_COLUMNS[kind], day=row.day.isoformat()) | _cells(row) for row in daily
        ]
    if kind == "models":
        models = await stats.top_models(filters, limit=MAX_GROUPS)
        return columns, [_keys(row, KEY_COLUMNS[kind]) | _cells(row) for row in models]
    if kind == "applications":
        groups = await stats.by("application", filters, limit=MAX_GROUPS)
        return columns, [
            _keys(group, KEY_COLUMNS[kind], application_id=group.id, application=group.key) | _cells(group)
            for group in groups
        ]
    totals = await stats.summary(filters)
    latency = await stats.latency(filters)
    period: dict[str, Cell] = {"from": _iso(filters.date_from), "to": _iso(filters.date_to)}
    spread: dict[str, Cell] = {
        "p50_latency_ms": _rounded(latency.p50_ms),
        "p95_latency_ms": _rounded(latency.p95_ms),
        "latency_resolution": round(RESOLUTION, 4),
    }
    return columns + LATENCY_COLUMNS, [period | _cells(totals) | spread]


def cost_series(label: str, costs: Sequence[Decimal]) -> dict[str, Any]:
    """A chart series of money: floats to draw, exact text for the table beside the chart."""
    return {"label": label, "data": [float(cost) for cost in costs], "text": [money(cost) for cost in costs]}


def count_series(label: str, counts: Sequence[int]) -> dict[str, Any]:
    return {"label": label, "data": list(counts), "text": [number(count) for count in counts]}


def _page_context(report: StatsReport, errors: dict[str, str]) -> dict[str, Any]:
    filters = report.filters
    params = {key: value for key, value in _filter_dict(filters).items() if value not in (None, "")}
    return {
        "report": report,
        "form": params,
        "errors": errors,
        "export_params": params,
        "resolution": round(RESOLUTION * 100),
        "charts": _charts(report),
    }


def _charts(report: StatsReport) -> dict[str, dict[str, Any]]:
    days = [group.key or "" for group in report.days]
    providers = sorted({group.key or "" for group in report.cost_by_provider})
    cost: dict[tuple[str, str], Decimal] = {
        (group.day.isoformat(), group.key or ""): group.cost for group in report.cost_by_provider
    }
    models = report.by_model
    return {
        "cost": {
            "type": "bar",
            "stacked": True,
            "money": True,
            "labels": days,
            "series": [
                cost_series(provider, [cost.get((day, provider), Decimal(0)) for day in days])
                for provider in providers
            ],
        },
        "tokens": {
            "type": "bar",
            "stacked": True,
            "axis": "Model",
            "labels": [group.key or "" for group in models],
            "series": [
                count_series("Input tokens", [group.prompt_tokens for group in models]),
                count_series("Output tokens", [group.completion_tokens for group in models]),
            ],
        },
        "requests": {
            "type": "line",
            "labels": days,
            "series": [
                count_series("Requests", [group.requests for group in report.days]),
                count_series("Errors", [group.errors for group in report.days]),
            ],
        },
    }


def _cells(totals: StatsTotals) -> dict[str, Cell]:
    return {
        "requests": totals.requests,
        "errors": totals.errors,
        "cancelled": totals.cancelled,
        "error_rate": round(totals.error_rate, 4),
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "total_tokens": totals.total_tokens,
        "cached_tokens": totals.cached_tokens,
        "cost_usd": format(totals.cost, "f"),
        "unpriced_requests": totals.unpriced_requests,
        "estimated_requests": totals.estimated_requests,
        "avg_latency_ms": _rounded(totals.avg_latency_ms),
        "avg_ttft_ms": _rounded(totals.avg_ttft_ms),
    }


def _keys(row: object, names: Sequence[str], **overrides: Cell) -> dict[str, Cell]:
    return {name: overrides[name] if name in overrides else getattr(row, name) for name in names}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _filter_dict(filters: StatsFilter) -> dict[str, Cell]:
    return {
        "from": _iso(filters.date_from),
        "to": _iso(filters.date_to),
        "application": filters.application_id,
        "configuration": filters.configuration_id,
        "provider": filters.provider,
        "model": filters.model,
    }


def _file_name(kind: str, filters: StatsFilter) -> str:
    return f"llm-statistics-{kind}-{_iso(filters.date_from)}-to-{_iso(filters.date_to)}"


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _day(text: str, field: str) -> date | None:
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError(f"{field}: a date as YYYY-MM-DD", field=field) from None


def _row_id(text: str, field: str) -> int | None:
    """An application or configuration id from a menu; 0 means "none" (calls without one)."""
    if not text.strip():
        return None
    if not text.strip().isdigit():
        raise InvalidInputError(f"{field}: choose one from the list", field=field)
    return int(text)


__all__ = ["cost_series", "count_series", "export_table", "router"]
