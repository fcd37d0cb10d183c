"""Usage logs: every call, newest first, filterable and keyset-paginated; one call in detail.

Keyset pagination (the `cursor` names the last row shown) keeps pages stable while new calls are
written and stays fast deep into a large log. Usage rows hold no prompt or response text and no
secret: error messages are redacted by the pipeline before they are stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from llm_manager.errors import InvalidInputError, NotFoundError
from llm_manager.server.admin._pages import PageRenderer, field_errors
from llm_manager.server.admin._session import Needs
from llm_manager.server.deps import Manager
from llm_manager.services.usage import OPERATIONS, UsageFilter, UsagePage
from llm_manager.services.web_sessions import SessionUser

router = APIRouter()

PERMISSION = "view-llm-stats"
PAGE_SIZE = 50
STATUSES = ("ok", "error", "cancelled")
Viewer = Annotated[SessionUser, Depends(Needs(PERMISSION))]
_Text = Annotated[str | None, Query(max_length=200)]


@dataclass(frozen=True, kw_only=True)
class UsageQuery:
    """The list page's query string as typed (strings), echoed back into the filter form."""

    since: str = ""
    until: str = ""
    application: str = ""
    configuration: str = ""
    provider: str = ""
    model: str = ""
    status: str = ""
    operation: str = ""
    limit: int = PAGE_SIZE

    def filters(self) -> UsageFilter:
        """The service filter; an unreadable date raises `InvalidInputError` naming its field."""
        return UsageFilter(
            since=_moment(self.since, "since"),
            until=_moment(self.until, "until", end_of_day=True),
            application=self.application or None,
            configuration=self.configuration or None,
            provider=self.provider or None,
            model=self.model or None,
            status=self.status or None,
            operation=self.operation or None,
        )

    def url(self, **extra: str) -> str:
        """This page's URL with the same filters (and e.g. a cursor)."""
        fields = {
            "from": self.since,
            "to": self.until,
            "application": self.application,
            "configuration": self.configuration,
            "provider": self.provider,
            "model": self.model,
            "status": self.status,
            "operation": self.operation,
            "limit": "" if self.limit == PAGE_SIZE else str(self.limit),
            **extra,
        }
        query = urlencode({key: value for key, value in fields.items() if value})
        return f"/admin/usage?{query}" if query else "/admin/usage"

    @property
    def active(self) -> bool:
        """Whether any filter narrows the list (the page size is not a filter)."""
        return any(value for key, value in vars(self).items() if key != "limit")


@router.get("/admin/usage")
async def usage_list(
    request: Request,
    user: Viewer,
    llm: Manager,
    pages: PageRenderer,
    since: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    application: _Text = None,
    configuration: _Text = None,
    provider: _Text = None,
    model: _Text = None,
    status: _Text = None,
    operation: _Text = None,
    cursor: _Text = None,
    limit: Annotated[int, Query(ge=1, le=200)] = PAGE_SIZE,
) -> Response:
    asked = UsageQuery(
        since=(since or "").strip(),
        until=(until or "").strip(),
        application=(application or "").strip(),
        configuration=(configuration or "").strip(),
        provider=(provider or "").strip(),
        model=(model or "").strip(),
        status=(status or "").strip(),
        operation=(operation or "").strip(),
        limit=limit,
    )
    errors: dict[str, str] = {}
    page = UsagePage(rows=[], next_cursor=None)
    try:
        page = await llm.services.usage.list_page(limit=limit, cursor=cursor or None, filters=asked.filters())
    except InvalidInputError as error:
        errors = field_errors(error, default="since")
    applications = await llm.services.applications.list_all()
    configurations = await llm.services.configurations.list_all()
    context = {
        "page": page,
        "asked": asked,
        "errors": errors,
        "cursor": cursor,
        "next_url": asked.url(cursor=page.next_cursor) if page.next_cursor else None,
        "first_url": asked.url() if cursor else None,
        "application_names": {view.id: view.name for view in applications},
        "application_options": [(view.name, view.name) for view in applications],
        "configuration_options": [(view.slug, view.slug) for view in configurations],
        "provider_options": _choices({view.provider for view in configurations}, asked.provider),
        "status_options": [(value, value) for value in STATUSES],
        "operation_options": _choices(set(OPERATIONS), asked.operation),
    }
    return pages.render(request, "usage.html", context, status_code=422 if errors else 200)


@router.get("/admin/usage/{log_id}")
async def usage_detail(
    log_id: str, request: Request, user: Viewer, llm: Manager, pages: PageRenderer
) -> Response:
    row = await llm.services.usage.get(log_id)
    if row is None:
        raise NotFoundError(f"usage log {log_id!r} not found")
    metrics = await llm.services.metrics.list_recent(usage_log_id=row.id, limit=100)
    application = None
    if row.application_id is not None:
        names = {view.id: view.name for view in await llm.services.applications.list_all()}
        application = names.get(row.application_id)
    return pages.render(
        request, "usage_detail.html", {"row": row, "metrics": metrics, "application": application}
    )


def _choices(values: set[str], current: str) -> list[tuple[str, str]]:
    """Select options from known values, keeping a value typed into the URL selectable."""
    return [(value, value) for value in sorted(values | ({current} if current else set()))]


def _moment(value: str, field: str, *, end_of_day: bool = False) -> datetime | None:
    """`YYYY-MM-DD` or a `datetime-local` value, read as UTC. A bare `to` date includes that day."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"{field}: use a date like 2026-11-30 or 2026-11-30T14:00", field=field
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
