"""The dashboard: today and the last 30 days at a glance, and the latest calls.

Everyone signed in lands here; the figures need `view-llm-stats`, and a user without it sees
what they can do instead. The figures come from the rollups (`StatsService.dashboard`), so the
page costs the same with ten calls logged or ten million.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llm_manager.server.admin._pages import PageRenderer, visible_navigation
from llm_manager.server.admin._session import SignedInUser
from llm_manager.server.admin.statistics import cost_series
from llm_manager.server.deps import Manager
from llm_manager.services.latency import RESOLUTION
from llm_manager.services.web_sessions import SessionUser

router = APIRouter()
STATS_PERMISSION = "view-llm-stats"
RECENT_ROWS = 10


@router.get("/admin")
async def dashboard(request: Request, user: SignedInUser, llm: Manager, pages: PageRenderer) -> Response:
    if not user.may(STATS_PERMISSION):
        return pages.render(request, "dashboard_welcome.html", {"shortcuts": _shortcuts(user)})
    # The usage page read flushes the writer first, so the figures below include the latest call.
    recent = await llm.services.usage.list_page(limit=RECENT_ROWS)
    figures = await llm.services.stats.dashboard(datetime.now(UTC).date())
    context: dict[str, Any] = {
        "figures": figures,
        "recent": recent.rows,
        "resolution": round(RESOLUTION * 100),
        "cost_chart": {
            "type": "bar",
            "labels": [day.isoformat() for day, _ in figures.cost_per_day],
            "series": [cost_series("Cost (USD)", [cost for _, cost in figures.cost_per_day])],
            "money": True,
        },
    }
    return pages.render(request, "dashboard.html", context)


def _shortcuts(user: SessionUser) -> list[Any]:
    """The pages this user may open, for a dashboard without figures."""
    return [item for item in visible_navigation(user) if item.url != "/admin"]
