"""Custom metrics: numbers and/or JSON an application records about a call or about itself."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, or_, select

from llm_manager.db.session import Database
from llm_manager.db.tables import CustomMetric, UsageLog
from llm_manager.errors import InvalidInputError
from llm_manager.services.accounting import MetricRecord, UsageWriter

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$")
_MAX_DATA_BYTES = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class MetricView:
    id: str
    name: str
    value: float | None
    data: dict[str, Any] | None
    usage_log_id: str | None
    application_id: int | None
    created_at: datetime


class MetricService:
    def __init__(self, database: Database, writer: UsageWriter) -> None:
        self._database = database
        self._writer = writer

    async def record(
        self,
        name: str,
        *,
        value: float | None = None,
        data: dict[str, Any] | None = None,
        usage_log_id: str | None = None,
        application_id: int | None = None,
    ) -> str:
        """Queue a metric behind the usage rows already queued, so its usage row exists first."""
        _validate(name, value, data, usage_log_id, application_id)
        record = MetricRecord(
            name=name, value=value, data=data, usage_log_id=usage_log_id, application_id=application_id
        )
        if usage_log_id is not None:
            await self._writer.flush()
            async with self._database.session() as session:
                if await session.get(UsageLog, usage_log_id) is None:
                    raise InvalidInputError(f"usage log {usage_log_id!r} not found", field="usage_log_id")
        await self._writer.put(record)
        return record.id

    async def list_recent(
        self,
        *,
        name: str | None = None,
        usage_log_id: str | None = None,
        application_id: int | None = None,
        limit: int = 100,
    ) -> list[MetricView]:
        """Newest first. With `application_id`, that application's metrics: recorded for it, or
        recorded about one of its calls without naming an application."""
        await self._writer.flush()
        query = (
            select(CustomMetric).order_by(CustomMetric.created_at.desc(), CustomMetric.id.desc()).limit(limit)
        )
        if name:
            query = query.where(CustomMetric.name == name)
        if usage_log_id:
            query = query.where(CustomMetric.usage_log_id == usage_log_id)
        if application_id is not None:
            calls_of_application = select(UsageLog.id).where(UsageLog.application_id == application_id)
            query = query.where(
                or_(
                    CustomMetric.application_id == application_id,
                    and_(
                        CustomMetric.application_id.is_(None),
                        CustomMetric.usage_log_id.in_(calls_of_application),
                    ),
                )
            )
        async with self._database.session() as session:
            rows = (await session.scalars(query)).all()
        return [
            MetricView(
                id=row.id,
                name=row.name,
                value=row.value,
                data=row.data,
                usage_log_id=row.usage_log_id,
                application_id=row.application_id,
                created_at=row.created_at,
            )
            for row in rows
        ]


def _validate(
    name: str,
    value: float | None,
    data: dict[str, Any] | None,
    usage_log_id: str | None,
    application_id: int | None,
) -> None:
    if not _NAME.match(name):
        raise InvalidInputError("name: 1-100 letters, digits, '_', '.', ':' or '-'", field="name")
    if value is None and data is None:
        raise InvalidInputError("a metric needs a value, data, or both", field="value")
    if value is not None and not math.isfinite(value):
        raise InvalidInputError("value must be a finite number", field="value")
    if data is not None and len(orjson.dumps(data)) > _MAX_DATA_BYTES:
        raise InvalidInputError("data must be at most 64 KiB of JSON", field="data")
    if usage_log_id is None and application_id is None:
        raise InvalidInputError("tie the metric to a usage log or an application", field="usage_log_id")
