"""Latency percentiles from a histogram rollup, because sums can give averages but not p50/p95.

Every call is counted in one fixed, log-scale bucket of its latency, per day × application ×
configuration × provider × model (`usage_latency_daily`), in the same transaction as its usage
row. Bucket `b ≥ 1` holds latencies in `[2^((b-1)/4), 2^(b/4))` ms — four buckets per doubling,
each 19% wide — and bucket 0 holds 0 ms. A percentile is the nearest-rank bucket's geometric
midpoint, so it is within ±9.1% of the exact value (the *resolution* the pages state), whatever
the number of calls: a million calls and ten cost the same handful of rows to read.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from llm_manager.db.session import counting_upsert
from llm_manager.db.tables import UsageLatencyDaily

BUCKETS_PER_DOUBLING = 4
RESOLUTION = 2 ** (1 / (2 * BUCKETS_PER_DOUBLING)) - 1
"""The largest relative error of a percentile: half a bucket, in log scale (≈ 0.0905)."""
_KEY = ("day", "application_id", "configuration_id", "provider", "model", "bucket")


@dataclass(frozen=True, kw_only=True)
class LatencyPercentiles:
    """p50 and p95 in ms (None when no calls), estimated from `count` calls' buckets."""

    count: int
    p50_ms: float | None
    p95_ms: float | None


def bucket_of(latency_ms: int | float) -> int:
    """The bucket a latency falls in (the epsilon keeps exact powers of two in their own bucket)."""
    if latency_ms < 1:
        return 0
    return math.floor(BUCKETS_PER_DOUBLING * math.log2(latency_ms) + 1e-9) + 1


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """`[low, high)` in ms."""
    if bucket <= 0:
        return (0.0, 1.0)
    return (2 ** ((bucket - 1) / BUCKETS_PER_DOUBLING), 2 ** (bucket / BUCKETS_PER_DOUBLING))


def bucket_value(bucket: int) -> float:
    """What a bucket stands for: its geometric midpoint (0 ms for bucket 0)."""
    if bucket <= 0:
        return 0.0
    return float(2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING))


def percentile(counts: Mapping[int, int], quantile: float) -> float | None:
    """The nearest-rank `quantile` (0 < q ≤ 1) of the calls counted per bucket."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(quantile * total))
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return bucket_value(bucket)
    return bucket_value(max(counts))


def percentiles(counts: Mapping[int, int]) -> LatencyPercentiles:
    return LatencyPercentiles(
        count=sum(counts.values()), p50_ms=percentile(counts, 0.5), p95_ms=percentile(counts, 0.95)
    )


def histogram_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Usage rows (as the writer holds them) counted per rollup key and bucket."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for row in rows:
        counts[
            (
                row["created_at"].date(),
                row["application_id"] or 0,
                row["configuration_id"] or 0,
                row["provider"],
                row["model"],
                bucket_of(row["latency_ms"]),
            )
        ] += 1
    return [dict(zip(_KEY, key, strict=True)) | {"count": count} for key, count in counts.items()]


async def upsert_latency_rollups(connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add the batch's calls to the histogram; called by the usage writer inside its transaction."""
    counted = histogram_rows(rows)
    if not counted:
        return
    upsert = counting_upsert(connection.dialect.name, UsageLatencyDaily, _KEY, ("count",))
    await connection.execute(upsert, counted)
