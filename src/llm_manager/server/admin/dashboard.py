"""The dashboard: today and the last 30 days at a glance (placeholder until the statistics work lands)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llm_manager.server.admin._pages import PageRenderer
from llm_manager.server.admin._session import SignedInUser

router = APIRouter()


@router.get("/admin")
async def dashboard(request: Request, user: SignedInUser, pages: PageRenderer) -> Response:
    return pages.render(request, "dashboard.html", {})
