"""Admin page for super-admins: the activity log — who changed what, and when, newest first.

Filters are query parameters; pages are keyset-paginated with the `before` cursor the previous
page gave out, so an old page costs what the first one does.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from llm_manager.errors import InvalidInputError
from llm_manager.server.admin._pages import PageRenderer, field_errors
from llm_manager.server.admin._session import Needs
from llm_manager.server.deps import Manager
from llm_manager.services.accounts import SUPER_ADMIN
from llm_manager.services.activity import ActivityPage
from llm_manager.services.web_sessions import SessionUser

router = APIRouter()
SuperAdmin = Annotated[SessionUser, Depends(Needs(SUPER_ADMIN))]
PAGE_SIZE = 50
PATH = "/admin/activity"


@router.get(PATH)
async def activity_page(
    request: Request,
    user: SuperAdmin,
    llm: Manager,
    pages: PageRenderer,
    action: Annotated[str, Query()] = "",
    actor: Annotated[str, Query()] = "",
    before: Annotated[str, Query()] = "",
) -> Response:
    filters = {"action": action.strip(), "actor": actor.strip()}
    try:
        page = await llm.services.activity.page(
            limit=PAGE_SIZE, before=before or None, action=filters["action"], actor=filters["actor"]
        )
    except InvalidInputError as invalid:
        context = {
            "filters": filters,
            "page": ActivityPage(entries=[], next_cursor=None),
            "errors": field_errors(invalid, default="before"),
        }
        return pages.render(
            request, "activity.html", {**context, **_urls(filters, None, before)}, status_code=400
        )
    context = {"filters": filters, "page": page, "errors": {}}
    return pages.render(request, "activity.html", {**context, **_urls(filters, page.next_cursor, before)})


def _urls(filters: dict[str, str], cursor: str | None, before: str) -> dict[str, str | None]:
    """The pager's links: the filters kept, the cursor replaced."""
    kept = {name: value for name, value in filters.items() if value}
    first = f"{PATH}?{urlencode(kept)}" if before else None
    older = f"{PATH}?{urlencode({**kept, 'before': cursor})}" if cursor else None
    return {"first_url": first, "next_url": older}
