"""Latency percentiles from the histogram rollup, and the rollups the dashboard and statistics read."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from llm_manager import LLMManager
from llm_manager.db.tables import UsageLatencyDaily
from llm_manager.services.accounting import UsageRecord, UsageWriter
from llm_manager.services.latency import (
    RESOLUTION,
    bucket_bounds,
    bucket_of,
    histogram_rows,
    percentile,
    percentiles,
)
from llm_manager.services.stats import StatsFilter

NOW = datetime.now(UTC)


def _record(latency_ms: int, **extra: object) -> UsageRecord:
    values: dict[str, object] = {
        "operation": "chat",
        "configuration_id": None,
        "configuration_slug": "x",
        "requested_configuration": "x",
        "application_id": None,
        "provider": "demo",
        "model": "demo-chat",
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "cost": Decimal("0.000001234"),
        "latency_ms": latency_ms,
        "created_at": NOW,
    }
    return UsageRecord(**(values | extra))  # type: ignore[arg-type]


def _exact(latencies: list[int], quantile: float) -> int:
    ordered = sorted(latencies)
    return ordered[max(1, math.ceil(quantile * len(ordered))) - 1]


def test_every_latency_falls_inside_its_bucket() -> None:
    for latency in [0, 1, 2, 3, 7, 8, 9, 100, 1023, 1024, 1025, 60_000, 3_600_000]:
        low, high = bucket_bounds(bucket_of(latency))
        assert low <= latency < high or (latency == 0 and bucket_of(latency) == 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_from_buckets_are_within_the_stated_resolution(seed: int) -> None:
    generator = random.Random(seed)
    latencies = [int(generator.lognormvariate(6.5, 0.8)) + 1 for _ in range(5000)]
    counts: dict[int, int] = {}
    for latency in latencies:
        counts[bucket_of(latency)] = counts.get(bucket_of(latency), 0) + 1
    for quantile in (0.5, 0.95):
        estimate = percentile(counts, quantile)
        assert estimate is not None
        exact = _exact(latencies, quantile)
        assert abs(estimate - exact) / exact <= RESOLUTION + 1e-9, (quantile, estimate, exact)


def test_known_latencies_give_the_expected_percentiles() -> None:
    counts: dict[int, int] = {}
    for latency in [100] * 50 + [200] * 45 + [2000] * 5:
        counts[bucket_of(latency)] = counts.get(bucket_of(latency), 0) + 1
    result = percentiles(counts)
    assert result.count == 100
    assert result.p50_ms == pytest.approx(100, rel=RESOLUTION)
    assert result.p95_ms == pytest.approx(200, rel=RESOLUTION)
    assert percentiles({}).p50_ms is None


def test_histogram_rows_count_per_key_and_bucket() -> None:
    rows = [
        {
            "created_at": NOW,
            "application_id": None,
            "configuration_id": 3,
            "provider": "p",
            "model": "m",
            "latency_ms": 10,
        },
        {
            "created_at": NOW,
            "application_id": None,
            "configuration_id": 3,
            "provider": "p",
            "model": "m",
            "latency_ms": 10,
        },
        {
            "created_at": NOW,
            "application_id": 2,
            "configuration_id": 3,
            "provider": "p",
            "model": "m",
            "latency_ms": 10,
        },
    ]
    counted = sorted(histogram_rows(rows), key=lambda row: row["application_id"])
    assert [(row["application_id"], row["count"]) for row in counted] == [(0, 2), (2, 1)]


async def test_the_writer_fills_the_histogram_and_stats_read_percentiles(llm: LLMManager) -> None:
    writer = UsageWriter(llm.services.database, batch_size=50, flush_interval=0.01)
    writer.start()
    latencies = list(range(1, 1001))
    for latency in latencies:
        await writer.put(_record(latency, provider="a" if latency % 2 else "b"))
    await writer.close()
    async with llm.services.database.session() as session:
        counted = await session.scalar(select(func.sum(UsageLatencyDaily.count)))
    assert counted == 1000
    stats = llm.services.stats
    today = NOW.date()
    everything = await stats.latency(StatsFilter(date_from=today, date_to=today))
    assert everything.count == 1000
    assert everything.p50_ms == pytest.approx(_exact(latencies, 0.5), rel=RESOLUTION)
    assert everything.p95_ms == pytest.approx(_exact(latencies, 0.95), rel=RESOLUTION)
    only_b = await stats.latency(StatsFilter(provider="b"))
    assert only_b.count == 500
    assert (await stats.latency(StatsFilter(date_from=today + timedelta(days=1)))).count == 0


async def test_dashboard_and_report_read_the_rollups(llm: LLMManager) -> None:
    writer = UsageWriter(llm.services.database, flush_interval=0.01)
    writer.start()
    yesterday = NOW - timedelta(days=1)
    await writer.put(_record(100, created_at=yesterday, provider="a", model="m1"))
    await writer.put(_record(300, provider="a", model="m1", status="error"))
    await writer.put(_record(500, provider="b", model="m2", cost=Decimal("1.5")))
    await writer.close()
    stats = llm.services.stats
    today = NOW.date()
    dashboard = await stats.dashboard(today)
    assert dashboard.day_totals.requests == 2
    assert dashboard.day_totals.errors == 1
    assert dashboard.period_totals.requests == 3
    assert dashboard.period_latency.count == 3
    assert len(dashboard.cost_per_day) == 30
    assert dashboard.cost_per_day[-1] == (today, Decimal("1.500001234"))
    assert dashboard.cost_per_day[-2][1] == Decimal("0.000001234")
    assert sum(cost for _, cost in dashboard.cost_per_day[:-2]) == 0

    filters = StatsFilter(date_from=today - timedelta(days=6), date_to=today)
    report = await stats.report(filters)
    assert report.summary.requests == 3
    assert [day.requests for day in report.days] == [0, 0, 0, 0, 0, 1, 2]
    assert {(group.day, group.key, group.requests) for group in report.cost_by_provider} == {
        (yesterday.date(), "a", 1),
        (today, "a", 1),
        (today, "b", 1),
    }
    assert [model.model for model in report.top_models] == ["m1", "m2"]
    assert report.top_applications[0].key is None
    assert report.options.providers == ["a", "b"]
    assert report.options.applications == [(0, "(no application)")]
    rows = await stats.daily_rows(StatsFilter(provider="b"))
    assert [(row.day, row.provider, row.model, row.cost) for row in rows] == [
        (today, "b", "m2", Decimal("1.5"))
    ]
