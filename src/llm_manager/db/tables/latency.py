"""The latency histogram rollup: call counts per fixed log-scale latency bucket, per day.

Sums give averages but not percentiles; counts per bucket give percentiles to within the bucket
width (`services/latency.py` defines the buckets). Written in the same transaction as the usage
rows, keyed like `usage_daily` less the user (no statistic filters on it), plus the bucket.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, String
from sqlalchemy.orm import Mapped, mapped_column

from llm_manager.db.base import Base


class UsageLatencyDaily(Base):
    """Per day × application × configuration × provider × model × latency bucket. 0 stands for none."""

    __tablename__ = "usage_latency_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    application_id: Mapped[int] = mapped_column(primary_key=True, default=0)
    configuration_id: Mapped[int] = mapped_column(primary_key=True, default=0)
    provider: Mapped[str] = mapped_column(String(50), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    bucket: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
