"""`/api/stats`: totals and breakdowns of usage, from the daily rollup (never the whole log).

A management token's statistics cover its own application only; naming another application
counts nothing, exactly like naming one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from llm_manager.server.api.schemas import ListOf, ModelStatsPublic, StatsGroupPublic, StatsTotalsPublic
from llm_manager.server.auth import ManagementCaller
from llm_manager.server.deps import Manager
from llm_manager.services.stats import MAX_GROUPS, Dimension, ModelOrder, StatsFilter, StatsService

router = APIRouter(prefix="/stats", tags=["statistics"])


def get_stats(llm: Manager) -> StatsService:
    return llm.services.stats


Stats = Annotated[StatsService, Depends(get_stats)]


@dataclass(frozen=True)
class StatsQuery:
    """The filters every statistics route takes, as query parameters."""

    date_from: Annotated[
        date | None, Query(alias="from", description="First day (UTC, inclusive), YYYY-MM-DD.")
    ] = None
    date_to: Annotated[date | None, Query(alias="to", description="Last day (UTC, inclusive).")] = None
    application: Annotated[str | None, Query(description="Application name (admin tokens).")] = None
    configuration: Annotated[str | None, Query(description="Configuration slug.")] = None
    provider: str | None = None
    model: str | None = None


Filters = Annotated[StatsQuery, Depends()]


def _filter(query: StatsQuery, caller: ManagementCaller) -> StatsFilter:
    return StatsFilter(
        date_from=query.date_from,
        date_to=query.date_to,
        application_id=caller.scope(),
        application=query.application,
        configuration=query.configuration,
        provider=query.provider,
        model=query.model,
    )


@router.get("/summary", summary="Usage totals")
async def summary(stats: Stats, query: Filters, caller: ManagementCaller) -> StatsTotalsPublic:
    """Requests, errors, tokens and cost, with error rate and average latency and TTFT."""
    return StatsTotalsPublic.model_validate(await stats.summary(_filter(query, caller)))


@router.get("/by/{dimension}", summary="Usage totals per provider, model, application, configuration or day")
async def by_dimension(
    dimension: Dimension,
    stats: Stats,
    query: Filters,
    caller: ManagementCaller,
    limit: Annotated[int, Query(ge=1, le=MAX_GROUPS)] = MAX_GROUPS,
) -> ListOf[StatsGroupPublic]:
    """Days come in date order (only days with calls); anything else busiest first."""
    groups = await stats.by(dimension, _filter(query, caller), limit=limit)
    return ListOf(data=[StatsGroupPublic.model_validate(group) for group in groups])


@router.get("/top-models", summary="The most used models")
async def top_models(
    stats: Stats,
    query: Filters,
    caller: ManagementCaller,
    limit: Annotated[int, Query(ge=1, le=MAX_GROUPS)] = 10,
    order: Annotated[ModelOrder, Query(description="Rank by requests, tokens or cost.")] = "requests",
) -> ListOf[ModelStatsPublic]:
    models = await stats.top_models(_filter(query, caller), limit=limit, order=order)
    return ListOf(data=[ModelStatsPublic.model_validate(model) for model in models])
