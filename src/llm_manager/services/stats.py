"""Usage statistics: totals and breakdowns, read only from the `usage_daily` rollup.

The rollup is written in the same transaction as the usage rows, so it is as current as the log
while costing one row per day × application × configuration × provider × model × user instead of
one per call; nothing here scans `usage_logs`. Every aggregate is a SQL `GROUP BY`; money is
summed as the integer nano-dollars it is stored as, so totals are exact on SQLite and PostgreSQL
and come back as `Decimal`.

Days are UTC calendar days, and a date range includes both ends. Latency percentiles come from the
histogram rollup `usage_latency_daily` (`services/latency.py`), filtered the same way.

`dashboard()` and `report()` gather what the admin pages show in one call each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import BigInteger, ColumnElement, Label, Row, Select, func, select, type_coerce

from llm_manager.db.base import nanos_to_usd
from llm_manager.db.session import Database
from llm_manager.db.tables import (
    USAGE_DAILY_COUNTERS,
    Application,
    LLMConfiguration,
    UsageDaily,
    UsageLatencyDaily,
)
from llm_manager.errors import InvalidInputError
from llm_manager.services.latency import LatencyPercentiles, percentiles

Dimension = Literal["provider", "model", "application", "configuration", "day"]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
ModelOrder = Literal["requests", "tokens", "cost"]
SplitDimension = Literal["provider", "model", "application", "configuration"]
_Rollup = type[UsageDaily] | type[UsageLatencyDaily]
MAX_GROUPS = 1000
MAX_DAILY_ROWS = 100_000
MAX_RANGE_DAYS = 3660
DASHBOARD_DAYS = 30
TOP = 10


@dataclass(frozen=True, kw_only=True)
class StatsFilter:
    """Which rollup rows count. Names and slugs are matched in SQL, so an unknown one counts nothing."""

    date_from: date | None = None
    date_to: date | None = None
    application_id: int | None = None
    application: str | None = None
    """An application name; combined with `application_id` both must match."""
    configuration_id: int | None = None
    configuration: str | None = None
    """A configuration slug (of a configuration that still exists)."""
    provider: str | None = None
    model: str | None = None


@dataclass(frozen=True, kw_only=True)
class StatsTotals:
    """Sums over some calls; averages are derived so they stay correct when totals are combined."""

    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal = Decimal(0)
    """USD of the priced calls; `unpriced_requests` says how many calls it leaves out."""
    unpriced_requests: int = 0
    estimated_requests: int = 0
    latency_ms_sum: int = 0
    ttft_ms_sum: int = 0
    ttft_count: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.requests if self.requests else None

    @property
    def avg_ttft_ms(self) -> float | None:
        return self.ttft_ms_sum / self.ttft_count if self.ttft_count else None


@dataclass(frozen=True, kw_only=True)
class StatsGroup(StatsTotals):
    """Totals for one value of a dimension.

    `key` is what a person reads: the provider, model, application name, configuration slug or
    ISO day. For applications and configurations `id` is the row id; `key` is None when the calls
    had none (library calls without an application) or the row has since been deleted.
    """

    key: str | None
    id: int | None = None


@dataclass(frozen=True, kw_only=True)
class ModelStats(StatsTotals):
    provider: str
    model: str


@dataclass(frozen=True, kw_only=True)
class DailyGroup(StatsTotals):
    """Totals for one day and one value of a dimension (`key`/`id` as in `StatsGroup`)."""

    day: date
    key: str | None
    id: int | None = None


@dataclass(frozen=True, kw_only=True)
class DailyRow(StatsTotals):
    """The rollup at its own grain (less the user): one day × application × configuration ×
    provider × model. Names are None for "none" and for rows deleted since."""

    day: date
    application_id: int | None
    application: str | None
    configuration_id: int | None
    configuration: str | None
    provider: str
    model: str


@dataclass(frozen=True, kw_only=True)
class Dashboard:
    """Today and the last `DASHBOARD_DAYS` days (today included), with cost per day for the chart."""

    today: date
    first_day: date
    day_totals: StatsTotals
    day_latency: LatencyPercentiles
    period_totals: StatsTotals
    period_latency: LatencyPercentiles
    cost_per_day: list[tuple[date, Decimal]]


@dataclass(frozen=True, kw_only=True)
class FilterOptions:
    """The values seen in a date range, for the filter menus: `(id, label)` and plain names."""

    applications: list[tuple[int, str]] = field(default_factory=list)
    configurations: list[tuple[int, str]] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class StatsReport:
    """Everything the statistics page shows for one date range and set of filters."""

    filters: StatsFilter
    summary: StatsTotals
    latency: LatencyPercentiles
    days: list[StatsGroup]
    """Every day of the range in order, days without calls included (zeros)."""
    cost_by_provider: list[DailyGroup]
    by_model: list[StatsGroup]
    top_models: list[ModelStats]
    top_applications: list[StatsGroup]
    options: FilterOptions


class StatsService:
    """Stateless and cheap to build: it holds only the database."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def summary(self, filters: StatsFilter | None = None) -> StatsTotals:
        query = _filtered(select(*_sums().values()), filters or StatsFilter())
        async with self._database.session() as session:
            row = (await session.execute(query)).one()
        return StatsTotals(**_totals(row))

    async def by(
        self, dimension: str, filters: StatsFilter | None = None, *, limit: int = MAX_GROUPS
    ) -> list[StatsGroup]:
        """Totals per value of `dimension`: days in order, anything else busiest first."""
        if dimension not in DIMENSIONS:
            raise InvalidInputError(f"dimension: choose from {', '.join(DIMENSIONS)}", field="dimension")
        _check_limit(limit)
        query = _filtered(_grouped(dimension, _sums()), filters or StatsFilter()).limit(limit)
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        return [_group(dimension, row) for row in rows]

    async def top_models(
        self, filters: StatsFilter | None = None, *, limit: int = 10, order: ModelOrder = "requests"
    ) -> list[ModelStats]:
        """The most used models (per provider), by requests, tokens or cost."""
        _check_limit(limit)
        sums = _sums()
        measures: dict[str, ColumnElement[Any]] = {
            "requests": sums["requests"],
            "tokens": sums["prompt_tokens"] + sums["completion_tokens"],
            "cost": sums["cost"],
        }
        measure = measures.get(order)
        if measure is None:
            raise InvalidInputError("order: choose from requests, tokens, cost", field="order")
        query = (
            select(UsageDaily.provider, UsageDaily.model, *sums.values())
            .group_by(UsageDaily.provider, UsageDaily.model)
            .order_by(measure.desc(), UsageDaily.provider, UsageDaily.model)
        )
        query = _filtered(query, filters or StatsFilter()).limit(limit)
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        return [ModelStats(provider=row.provider, model=row.model, **_totals(row)) for row in rows]

    async def latency(self, filters: StatsFilter | None = None) -> LatencyPercentiles:
        """p50 and p95 from the histogram rollup: one row per latency bucket comes back."""
        bucket = UsageLatencyDaily.bucket
        calls = func.sum(UsageLatencyDaily.count).label("calls")
        columns: list[Any] = [bucket, calls]
        query = _filtered(select(*columns).group_by(bucket), filters or StatsFilter(), UsageLatencyDaily)
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        return percentiles({int(row.bucket): int(row.calls) for row in rows})

    async def by_day_and(
        self, dimension: SplitDimension, filters: StatsFilter | None = None
    ) -> list[DailyGroup]:
        """Totals per day and value of `dimension` (a stacked chart's series), by day then key."""
        if dimension not in get_args(SplitDimension):
            raise InvalidInputError("dimension: choose from provider, model, application, configuration")
        query = _filtered(_grouped(dimension, _sums()), filters or StatsFilter())
        query = query.add_columns(UsageDaily.day).group_by(UsageDaily.day)
        query = query.order_by(None).order_by(UsageDaily.day, "group_key").limit(MAX_DAILY_ROWS)
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        return [_daily_group(dimension, row) for row in rows]

    async def daily_rows(self, filters: StatsFilter | None = None) -> list[DailyRow]:
        """The rollup rows themselves (summed over users), oldest first, for export."""
        keys = (
            UsageDaily.day,
            UsageDaily.application_id,
            UsageDaily.configuration_id,
            UsageDaily.provider,
            UsageDaily.model,
        )
        query = (
            select(*keys, Application.name, LLMConfiguration.slug, *_sums().values())
            .outerjoin(Application, Application.id == UsageDaily.application_id)
            .outerjoin(LLMConfiguration, LLMConfiguration.id == UsageDaily.configuration_id)
            .group_by(*keys, Application.name, LLMConfiguration.slug)
            .order_by(*keys)
            .limit(MAX_DAILY_ROWS)
        )
        query = _filtered(query, filters or StatsFilter())
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        return [_daily_row(row) for row in rows]

    async def dashboard(self, today: date) -> Dashboard:
        """The dashboard's figures: four small rollup queries, whatever the size of the log."""
        first_day = today - timedelta(days=DASHBOARD_DAYS - 1)
        period = StatsFilter(date_from=first_day, date_to=today)
        days = {group.key: group for group in await self.by("day", period)}
        day_totals = _totals_of(days.get(today.isoformat()))
        return Dashboard(
            today=today,
            first_day=first_day,
            day_totals=day_totals,
            day_latency=await self.latency(StatsFilter(date_from=today, date_to=today)),
            period_totals=await self.summary(period),
            period_latency=await self.latency(period),
            cost_per_day=[
                (day, _totals_of(days.get(day.isoformat())).cost) for day in _each_day(first_day, today)
            ],
        )

    async def report(self, filters: StatsFilter) -> StatsReport:
        """The statistics page for a date range (both ends required) and filters."""
        if filters.date_from is None or filters.date_to is None:
            raise InvalidInputError("choose the first and last day", field="from")
        _check_range(filters.date_from, filters.date_to)
        days = {group.key: group for group in await self.by("day", filters)}
        return StatsReport(
            filters=filters,
            summary=await self.summary(filters),
            latency=await self.latency(filters),
            days=[
                days.get(day.isoformat()) or StatsGroup(key=day.isoformat())
                for day in _each_day(filters.date_from, filters.date_to)
            ],
            cost_by_provider=await self.by_day_and("provider", filters),
            by_model=await self.by("model", filters, limit=TOP),
            top_models=await self.top_models(filters, limit=TOP),
            top_applications=await self.by("application", filters, limit=TOP),
            options=await self.filter_options(filters.date_from, filters.date_to),
        )

    async def filter_options(self, date_from: date, date_to: date) -> FilterOptions:
        """What the filter menus offer: everything seen in the range, whatever else is chosen.

        One DISTINCT over the rollup's key columns (a few hundred combinations at most), named here.
        """
        keys: list[Any] = [
            UsageDaily.application_id,
            UsageDaily.configuration_id,
            UsageDaily.provider,
            UsageDaily.model,
        ]
        seen = _filtered(
            select(*keys).distinct(), StatsFilter(date_from=date_from, date_to=date_to)
        ).subquery()
        query = (
            select(seen, Application.name, LLMConfiguration.slug)
            .outerjoin(Application, Application.id == seen.c.application_id)
            .outerjoin(LLMConfiguration, LLMConfiguration.id == seen.c.configuration_id)
        )
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        applications = {
            row.application_id: row.name or _none_label(row.application_id, "application") for row in rows
        }
        configurations = {
            row.configuration_id: row.slug or _none_label(row.configuration_id, "configuration")
            for row in rows
        }
        return FilterOptions(
            applications=sorted(applications.items(), key=lambda option: option[1].lower()),
            configurations=sorted(configurations.items(), key=lambda option: option[1].lower()),
            providers=sorted({row.provider for row in rows}),
            models=sorted({row.model for row in rows}),
        )


def _none_label(row_id: int | None, what: str) -> str:
    return f"(deleted {what} #{row_id})" if row_id else f"(no {what})"


def _totals_of(group: StatsTotals | None) -> StatsTotals:
    if group is None:
        return StatsTotals()
    return StatsTotals(**{name: getattr(group, name) for name in USAGE_DAILY_COUNTERS})


def _each_day(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _check_range(first: date, last: date) -> None:
    if first > last:
        raise InvalidInputError("the date range ends before it starts", field="to")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise InvalidInputError(f"choose at most {MAX_RANGE_DAYS} days", field="from")


def _daily_group(dimension: str, row: Row[Any]) -> DailyGroup:
    group = _group(dimension, row)
    return DailyGroup(day=row.day, key=group.key, id=group.id, **_totals(row))


def _daily_row(row: Row[Any]) -> DailyRow:
    return DailyRow(
        day=row.day,
        application_id=row.application_id or None,
        application=row.name if row.application_id else None,
        configuration_id=row.configuration_id or None,
        configuration=row.slug if row.configuration_id else None,
        provider=row.provider,
        model=row.model,
        **_totals(row),
    )


def _sums() -> dict[str, Label[Any]]:
    """Each counter summed, labelled with its name; cost as integer nano-dollars for exactness."""
    return {name: func.coalesce(func.sum(_as_integer(name)), 0).label(name) for name in USAGE_DAILY_COUNTERS}


def _as_integer(name: str) -> ColumnElement[int]:
    # `cost` is a Money column: summing it as the stored BigInteger keeps the sum exact.
    return type_coerce(getattr(UsageDaily, name), BigInteger)


def _totals(row: Row[Any]) -> dict[str, Any]:
    values: dict[str, Any] = {name: int(getattr(row, name)) for name in USAGE_DAILY_COUNTERS}
    values["cost"] = nanos_to_usd(values["cost"])
    return values


def _grouped(dimension: str, labelled: dict[str, Label[Any]]) -> Select[Any]:
    """Group by the dimension, labelling its value `group_key` (and the row id `group_id`)."""
    sums = labelled.values()
    busiest_first = labelled["requests"].desc()
    if dimension == "day":
        day = UsageDaily.day
        return select(day.label("group_key"), *sums).group_by(day).order_by(day)
    if dimension in ("provider", "model"):
        column = getattr(UsageDaily, dimension)
        return select(column.label("group_key"), *sums).group_by(column).order_by(busiest_first, column)
    joined: type[Application] | type[LLMConfiguration]
    if dimension == "application":
        row_id, name, joined = UsageDaily.application_id, Application.name, Application
        on = Application.id == row_id
    else:
        row_id, name, joined = UsageDaily.configuration_id, LLMConfiguration.slug, LLMConfiguration
        on = LLMConfiguration.id == row_id
    return (
        select(row_id.label("group_id"), name.label("group_key"), *sums)
        .outerjoin(joined, on)
        .group_by(row_id, name)
        .order_by(busiest_first, row_id)
    )


def _group(dimension: str, row: Row[Any]) -> StatsGroup:
    totals = _totals(row)
    if dimension == "day":
        return StatsGroup(key=row.group_key.isoformat(), **totals)
    if dimension in ("provider", "model"):
        return StatsGroup(key=row.group_key, **totals)
    row_id = row.group_id or None  # the rollup stores 0 for "no application / configuration"
    return StatsGroup(key=row.group_key if row_id else None, id=row_id, **totals)


def _filtered(query: Select[Any], filters: StatsFilter, table: _Rollup = UsageDaily) -> Select[Any]:
    """The filters as WHERE clauses on either rollup (they share the key columns)."""
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        raise InvalidInputError("the date range ends before it starts", field="to")
    if filters.date_from:
        query = query.where(table.day >= filters.date_from)
    if filters.date_to:
        query = query.where(table.day <= filters.date_to)
    if filters.application_id is not None:
        query = query.where(table.application_id == filters.application_id)
    if filters.application:
        query = query.where(
            table.application_id.in_(select(Application.id).where(Application.name == filters.application))
        )
    if filters.configuration_id is not None:
        query = query.where(table.configuration_id == filters.configuration_id)
    if filters.configuration:
        query = query.where(
            table.configuration_id.in_(
                select(LLMConfiguration.id).where(LLMConfiguration.slug == filters.configuration)
            )
        )
    if filters.provider:
        query = query.where(table.provider == filters.provider)
    if filters.model:
        query = query.where(table.model == filters.model)
    return query


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_GROUPS:
        raise InvalidInputError(f"limit must be between 1 and {MAX_GROUPS}", field="limit")
