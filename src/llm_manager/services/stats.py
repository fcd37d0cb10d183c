"""Usage statistics: totals and breakdowns, read only from the `usage_daily` rollup.

The rollup is written in the same transaction as the usage rows, so it is as current as the log
while costing one row per day × application × configuration × provider × model × user instead of
one per call; nothing here scans `usage_logs`. Every aggregate is a SQL `GROUP BY`; money is
summed as the integer nano-dollars it is stored as, so totals are exact on SQLite and PostgreSQL
and come back as `Decimal`.

Days are UTC calendar days, and a date range includes both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import BigInteger, ColumnElement, Label, Row, Select, func, select, type_coerce

from llm_manager.db.session import Database
from llm_manager.db.tables import Application, LLMConfiguration, UsageDaily
from llm_manager.errors import InvalidInputError

Dimension = Literal["provider", "model", "application", "configuration", "day"]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
ModelOrder = Literal["requests", "tokens", "cost"]
MAX_GROUPS = 1000
_NANOS_PER_USD = Decimal(1_000_000_000)
_COUNTERS = (
    "requests",
    "errors",
    "cancelled",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "unpriced_requests",
    "estimated_requests",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
)


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


def _sums() -> dict[str, Label[Any]]:
    """Each counter summed, labelled with its name; cost as integer nano-dollars for exactness."""
    return {name: func.coalesce(func.sum(_as_integer(name)), 0).label(name) for name in _COUNTERS}


def _as_integer(name: str) -> ColumnElement[int]:
    # `cost` is a Money column: summing it as the stored BigInteger keeps the sum exact.
    return type_coerce(getattr(UsageDaily, name), BigInteger)


def _totals(row: Row[Any]) -> dict[str, Any]:
    values: dict[str, Any] = {name: int(getattr(row, name)) for name in _COUNTERS}
    values["cost"] = Decimal(values["cost"]) / _NANOS_PER_USD
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


def _filtered(query: Select[Any], filters: StatsFilter) -> Select[Any]:
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        raise InvalidInputError("the date range ends before it starts", field="to")
    if filters.date_from:
        query = query.where(UsageDaily.day >= filters.date_from)
    if filters.date_to:
        query = query.where(UsageDaily.day <= filters.date_to)
    if filters.application_id is not None:
        query = query.where(UsageDaily.application_id == filters.application_id)
    if filters.application:
        query = query.where(
            UsageDaily.application_id.in_(
                select(Application.id).where(Application.name == filters.application)
            )
        )
    if filters.configuration_id is not None:
        query = query.where(UsageDaily.configuration_id == filters.configuration_id)
    if filters.configuration:
        query = query.where(
            UsageDaily.configuration_id.in_(
                select(LLMConfiguration.id).where(LLMConfiguration.slug == filters.configuration)
            )
        )
    if filters.provider:
        query = query.where(UsageDaily.provider == filters.provider)
    if filters.model:
        query = query.where(UsageDaily.model == filters.model)
    return query


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_GROUPS:
        raise InvalidInputError(f"limit must be between 1 and {MAX_GROUPS}", field="limit")
