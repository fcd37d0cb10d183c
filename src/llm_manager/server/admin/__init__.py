"""The admin web UI under `/admin`: server-rendered pages over the same services as the JSON API.

Jinja2 + htmx + Chart.js + Pico CSS, all vendored in `static/vendor/` (the product runs offline).
Each page module owns its routes; `install()` mounts them with the CSRF guard, the error pages
and the security headers.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from llm_manager.server.admin import (
    activity,
    applications,
    budgets,
    configurations,
    console,
    conversations,
    dashboard,
    keys,
    login,
    prompt_templates,
    statistics,
    usage,
    users,
)
from llm_manager.server.admin._assets import Assets
from llm_manager.server.admin._errors import error_page, is_admin_page
from llm_manager.server.admin._pages import Pages
from llm_manager.server.admin._security import AdminSecurityHeaders
from llm_manager.server.admin._session import csrf_guard

PAGE_ROUTERS = (
    login.router,
    dashboard.router,
    configurations.router,
    console.router,
    conversations.router,
    prompt_templates.router,
    usage.router,
    statistics.router,
    budgets.router,
    applications.router,
    users.router,
    keys.router,
    activity.router,
)


def router() -> APIRouter:
    admin = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_guard)])
    for page in PAGE_ROUTERS:
        admin.include_router(page)
    return admin


def install(app: FastAPI) -> None:
    assets = Assets()
    app.state.pages = Pages(assets)
    app.include_router(assets.router())
    app.include_router(router())
    app.add_middleware(AdminSecurityHeaders)


__all__ = ["error_page", "install", "is_admin_page"]
