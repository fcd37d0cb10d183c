"""Every gated admin route × every default role (and a role with nothing): allowed or refused (403).

The routes are read from the app itself, so a page added later is covered without editing this
file — and a route that forgets to declare its permission fails `test_every_page_declares_...`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from llm_manager.manager import LLMManager
from llm_manager.server.admin._session import Needs
from llm_manager.services.accounts import DEFAULT_ROLES, SUPER_ADMIN
from tests.server.admin.conftest import Admin, Browser

UNGATED = {"/admin/login", "/admin/logout", "/admin/account", "/admin/account/password", "/admin"}
"""Pages every signed-in user has: sign-in itself, their own account, and the dashboard's frame."""
UNGATED_PREFIXES = ("/admin/static/", "/admin/account/")
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every `APIRoute`, also inside included routers (FastAPI ≥ 0.16x keeps them as `_IncludedRouter`).

    The admin routers have no prefix of their own, so a route's path is its full path.
    """
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (router := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(router.routes)


def admin_routes(app: FastAPI) -> Iterator[tuple[str, str, tuple[str, ...] | None]]:
    """(method, path, permissions — any one will do) for every admin route; None when none is declared."""
    for route in _api_routes(app.routes):
        if not route.path.startswith("/admin"):
            continue
        if route.path in UNGATED or route.path.startswith(UNGATED_PREFIXES):
            continue
        permission = _permission(route.dependant)
        for method in sorted(route.methods):
            yield method, route.path, permission


def _permission(dependant: Dependant) -> tuple[str, ...] | None:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Needs):
            return dependency.call.permissions
        found = _permission(dependency)
        if found is not None:
            return found
    return None


def _url(path: str) -> str:
    """Path parameters filled with values that exist nowhere: allowed requests end in 404, not harm."""
    return _PARAM.sub(lambda match: "999999" if match.group(1).endswith("id") else "no-such-thing", path)


def _allowed(role: str, permissions: tuple[str, ...]) -> bool:
    granted = DEFAULT_ROLES.get(role, ("", ()))[1]
    return any(role == SUPER_ADMIN if wanted == SUPER_ADMIN else wanted in granted for wanted in permissions)


def test_every_admin_page_declares_its_permission(admin: Admin) -> None:
    missing = [
        f"{method} {path}" for method, path, permission in admin_routes(admin.gateway.app) if not permission
    ]
    assert not missing, f"admin routes without a Needs(...) permission: {missing}"


@pytest.mark.parametrize("role", [*DEFAULT_ROLES, "nothing"])
def test_role_permission_matrix(admin: Admin, role: str) -> None:
    if role == "nothing":

        async def bare_role(llm: LLMManager) -> None:
            await llm.services.accounts.create_role("nothing")

        admin.gateway.run(bare_role)
    admin.signed_in(SUPER_ADMIN, email="owner@example.com")  # keeps a super-admin around
    browser = admin.signed_in(role)
    checked = 0
    wrong: list[str] = []
    for method, path, permission in admin_routes(admin.gateway.app):
        assert permission is not None
        response = _send(browser, method, _url(path))
        refused = response.status_code == 403
        if refused == _allowed(role, permission):
            wrong.append(f"{method} {path} ({permission}) → {response.status_code}")
        checked += 1
        assert response.status_code != 303 or "/admin/login" not in response.headers.get("location", ""), (
            f"{method} {path} signed the {role} out"
        )
    assert not wrong, f"{role}: {wrong}"
    assert checked > 0


def _send(browser: Browser, method: str, url: str) -> Any:
    if method == "GET":
        return browser.get(url)
    return browser.post(url, {})


def test_a_route_refuses_a_signed_out_visitor(admin: Admin) -> None:
    for method, path, _ in admin_routes(admin.gateway.app):
        response = _send(admin.browser(), method, _url(path))
        assert response.status_code in (303, 401, 403), f"{method} {path}"
