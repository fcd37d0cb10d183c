"""Rendering pages: one Jinja2 environment (autoescaped), the navigation, flash notices, filters.

`Pages.render` gives every template the signed-in `user`, the `csrf_token` its forms post back,
`asset()` for content-hashed static URLs and the navigation the user is allowed to see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from llm_manager.errors import InvalidInputError
from llm_manager.server.admin._assets import Assets
from llm_manager.services.accounts import SUPER_ADMIN
from llm_manager.services.web_sessions import SessionUser

TEMPLATES_DIR = Path(__file__).parent / "templates"
FLASH_COOKIE = "llmm_flash"


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    permission: str | None
    """None: every signed-in user; `super-admin`: that role only."""
    alternatives: tuple[str, ...] = ()
    """Other permissions that each show the item too."""

    def visible_to(self, user: SessionUser) -> bool:
        if self.permission is None:
            return True
        if self.permission == SUPER_ADMIN:
            return user.is_super_admin
        return any(user.may(permission) for permission in (self.permission, *self.alternatives))


NAVIGATION = (
    NavItem("Dashboard", "/admin", None),
    NavItem("Configurations", "/admin/configurations", "view-llm-configs"),
    NavItem("Console", "/admin/console", "test-llm-configs"),
    NavItem("Conversations", "/admin/conversations", "test-llm-configs", ("view-llm-conversations",)),
    NavItem("Templates", "/admin/templates", "view-llm-configs"),
    NavItem("Usage", "/admin/usage", "view-llm-stats"),
    NavItem("Statistics", "/admin/statistics", "view-llm-stats"),
    NavItem("Budgets", "/admin/budgets", "manage-llm-providers"),
    NavItem("Applications", "/admin/applications", "manage-llm-providers"),
    NavItem("Keys", "/admin/keys", "manage-llm-encryption-keys"),
    NavItem("Users", "/admin/users", SUPER_ADMIN),
    NavItem("Activity", "/admin/activity", SUPER_ADMIN),
)


def visible_navigation(user: SessionUser | None) -> list[NavItem]:
    if user is None:
        return []
    return [item for item in NAVIGATION if item.visible_to(user)]


def money(value: Decimal | float | str | None, places: int = 4) -> str:
    """US dollars for people: `$0.0012`; small amounts keep their significant digits."""
    if value is None or value == "":
        return "—"
    amount = Decimal(str(value))
    if amount != 0 and abs(amount) < Decimal("0.0001"):
        return f"${amount:.8f}".rstrip("0")
    return f"${amount:,.{places}f}"


def number(value: int | float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def when(value: datetime | None) -> Markup | str:
    """A UTC time as `<time>`: machine-readable, and kept on one line in narrow table cells."""
    if value is None:
        return "—"
    return Markup('<time datetime="{}">{}</time>').format(
        value.isoformat(), value.strftime("%Y-%m-%d %H:%M:%S UTC")
    )


class Pages:
    def __init__(self, assets: Assets) -> None:
        environment = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(default=True)
        )
        environment.filters |= {"money": money, "number": number, "when": when}
        environment.globals["asset"] = assets.url
        self.templates = Jinja2Templates(env=environment)

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        user: SessionUser | None = getattr(request.state, "user", None)
        flash = request.cookies.get(FLASH_COOKIE)
        response = self.templates.TemplateResponse(
            request,
            template,
            {
                "user": user,
                "csrf_token": user.csrf_token if user else "",
                "navigation": visible_navigation(user),
                "flash": unquote(flash)[:300] if flash else None,
                **(context or {}),
            },
            status_code=status_code,
        )
        if flash:
            response.delete_cookie(FLASH_COOKIE, path="/admin")
        return response


def field_errors(error: InvalidInputError, *, default: str) -> dict[str, str]:
    """`{field: message}` for a form: the message loses its `field: ` prefix, shown beside the field."""
    field = (error.field or default).split(".")[0].split("[")[0]
    message = str(error)
    if error.field and message.startswith(f"{error.field}: "):
        message = message[len(error.field) + 2 :]
    return {field: message}


def redirect(url: str, *, flash: str | None = None) -> RedirectResponse:
    """Post/redirect/get, with an optional one-time notice shown on the next page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        response.set_cookie(
            FLASH_COOKIE, quote(flash), path="/admin", httponly=True, samesite="lax", max_age=60
        )
    return response


async def get_pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


PageRenderer = Annotated[Pages, Depends(get_pages)]
