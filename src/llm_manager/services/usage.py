"""Reading usage back: the newest calls first, keyset-paginated, filterable."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Select, or_, select

from llm_manager.db.session import Database
from llm_manager.db.tables import Application, UsageLog
from llm_manager.errors import InvalidInputError
from llm_manager.services.accounting import UsageWriter


@dataclass(frozen=True, kw_only=True)
class UsageFilter:
    since: datetime | None = None
    until: datetime | None = None
    application_id: int | None = None
    application: str | None = None
    """An application name; combined with `application_id` both must match."""
    configuration: str | None = None
    provider: str | None = None
    model: str | None = None
    status: str | None = None
    operation: str | None = None
    """`chat`, `stream`, `embed`, `test`, `console`, ..."""
    user_id: str | None = None
    """The end user or signed-in operator recorded on the call."""
    conversation_id: str | None = None
    template: str | None = None
    """A prompt template's name; calls rendered from any of its versions."""


OPERATIONS = ("chat", "stream", "embed", "test", "console", "conversation", "summarize")
"""The operations the pipeline records today (surfaces name theirs on `ChatCall.operation`)."""


@dataclass(frozen=True, kw_only=True)
class UsageRow:
    id: str
    created_at: datetime
    operation: str
    configuration: str
    requested_configuration: str
    application_id: int | None
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    tokens_estimated: bool
    cost: Decimal | None
    unpriced: bool
    latency_ms: int
    ttft_ms: int | None
    status: str
    error_class: str | None
    error_message: str | None
    finish_reason: str | None
    attempts: int
    response_chars: int
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    api_token_id: int | None = None
    user_id: str | None = None
    conversation_id: str | None = None
    template_name: str | None = None
    template_version: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, kw_only=True)
class UsagePage:
    rows: list[UsageRow]
    next_cursor: str | None


class UsageService:
    def __init__(self, database: Database, writer: UsageWriter) -> None:
        self._database = database
        self._writer = writer

    async def list_page(
        self, *, limit: int = 50, cursor: str | None = None, filters: UsageFilter | None = None
    ) -> UsagePage:
        """Newest first. `cursor` is the opaque `next_cursor` of the previous page."""
        if not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be between 1 and 1000", field="limit")
        await self._writer.flush()
        query = _filtered(select(UsageLog), filters or UsageFilter())
        if cursor:
            created_at, row_id = _decode_cursor(cursor)
            query = query.where(
                or_(
                    UsageLog.created_at < created_at,
                    (UsageLog.created_at == created_at) & (UsageLog.id < row_id),
                )
            )
        query = query.order_by(UsageLog.created_at.desc(), UsageLog.id.desc()).limit(limit + 1)
        async with self._database.session() as session:
            rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1]) if more and rows else None
        return UsagePage(rows=[_row(row) for row in rows], next_cursor=next_cursor)

    async def get(self, log_id: str, *, application_id: int | None = None) -> UsageRow | None:
        """One row; with `application_id`, another application's row is None, like a missing one."""
        await self._writer.flush()
        async with self._database.session() as session:
            row = await session.get(UsageLog, log_id)
        if row is None or (application_id is not None and row.application_id != application_id):
            return None
        return _row(row)


def _filtered(query: Select[UsageLog], filters: UsageFilter) -> Select[UsageLog]:
    if filters.since:
        query = query.where(UsageLog.created_at >= filters.since)
    if filters.until:
        query = query.where(UsageLog.created_at < filters.until)
    if filters.application_id is not None:
        query = query.where(UsageLog.application_id == filters.application_id)
    if filters.application:
        query = query.where(
            UsageLog.application_id.in_(select(Application.id).where(Application.name == filters.application))
        )
    if filters.configuration:
        # Asked-for or answered: a call that fell back shows under both.
        query = query.where(
            or_(
                UsageLog.configuration_slug == filters.configuration,
                UsageLog.requested_configuration == filters.configuration,
            )
        )
    if filters.provider:
        query = query.where(UsageLog.provider == filters.provider)
    if filters.model:
        query = query.where(UsageLog.model == filters.model)
    if filters.status:
        query = query.where(UsageLog.status == filters.status)
    if filters.operation:
        query = query.where(UsageLog.operation == filters.operation)
    if filters.user_id:
        query = query.where(UsageLog.user_id == filters.user_id)
    if filters.conversation_id:
        query = query.where(UsageLog.conversation_id == filters.conversation_id)
    if filters.template:
        query = query.where(UsageLog.template_name == filters.template)
    return query


def _encode_cursor(row: UsageLog) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), row_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidInputError("cursor is not valid", field="cursor") from None


def _row(row: UsageLog) -> UsageRow:
    return UsageRow(
        id=row.id,
        created_at=row.created_at,
        operation=row.operation,
        configuration=row.configuration_slug,
        requested_configuration=row.requested_configuration,
        application_id=row.application_id,
        provider=row.provider,
        model=row.model,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cached_tokens=row.cached_tokens,
        tokens_estimated=row.tokens_estimated,
        cost=row.cost,
        unpriced=row.unpriced,
        latency_ms=row.latency_ms,
        ttft_ms=row.ttft_ms,
        status=row.status,
        error_class=row.error_class,
        error_message=row.error_message,
        finish_reason=row.finish_reason,
        attempts=row.attempts,
        response_chars=row.response_chars,
        cache_write_tokens=row.cache_write_tokens,
        reasoning_tokens=row.reasoning_tokens,
        api_token_id=row.api_token_id,
        user_id=row.user_id,
        conversation_id=row.conversation_id,
        template_name=row.template_name,
        template_version=row.template_version,
    )
