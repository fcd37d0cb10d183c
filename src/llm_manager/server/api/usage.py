"""`/api/usage`: the usage log, one row per call, newest first, keyset-paginated.

Keyset (not offset) pagination: each page ends with an opaque `next_cursor` naming the last row
shown, so rows written while a client pages never shift, duplicate or skip what it sees.
A management token sees its own application's calls only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from llm_manager.errors import NotFoundError
from llm_manager.server.api.schemas import UsagePage, UsagePublic
from llm_manager.server.auth import ManagementCaller
from llm_manager.server.deps import Manager
from llm_manager.services.usage import UsageFilter
from llm_manager.types import CallStatus

router = APIRouter(prefix="/usage", tags=["usage"])


@router.get("", summary="List usage rows, newest first")
async def list_usage(
    llm: Manager,
    caller: ManagementCaller,
    since: Annotated[AwareDatetime | None, Query(description="From this time on (inclusive).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before this time (exclusive).")] = None,
    application: Annotated[str | None, Query(description="Application name (admin tokens).")] = None,
    configuration: Annotated[
        str | None, Query(description="Configuration slug, asked for or answered by fallback.")
    ] = None,
    provider: str | None = None,
    model: str | None = None,
    status: CallStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> UsagePage:
    filters = UsageFilter(
        since=since,
        until=until,
        application_id=caller.scope(),
        application=application,
        configuration=configuration,
        provider=provider,
        model=model,
        status=status,
    )
    page = await llm.usage.list_page(limit=limit, cursor=cursor, filters=filters)
    return UsagePage(
        data=[UsagePublic.model_validate(row) for row in page.rows], next_cursor=page.next_cursor
    )


@router.get("/{log_id}", summary="Get one usage row")
async def get_usage(log_id: str, llm: Manager, caller: ManagementCaller) -> UsagePublic:
    row = await llm.usage.get(log_id, application_id=caller.scope())
    if row is None:
        raise NotFoundError(f"usage log {log_id!r} not found")
    return UsagePublic.model_validate(row)
