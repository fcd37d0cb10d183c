"""Custom metrics an application records about its calls: a number, JSON data, or both."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from llm_manager.db.base import Base, UTCDateTime, utcnow


class CustomMetric(Base):
    __tablename__ = "custom_metrics"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    value: Mapped[float | None] = mapped_column()
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    usage_log_id: Mapped[str | None] = mapped_column(
        ForeignKey("usage_logs.id", ondelete="CASCADE"), index=True
    )
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
