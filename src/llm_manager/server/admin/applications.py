"""Admin pages: applications and their API tokens.

A new token's secret is rendered once, on the response to the form that created it (never
cached, never logged); from then on only its prefix is shown. Revoking applies to the next
request (`TokenService` clears its caches).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from llm_manager.errors import ConflictError, InvalidInputError
from llm_manager.manager import LLMManager
from llm_manager.server.admin._pages import PageRenderer, field_errors, redirect
from llm_manager.server.admin._session import Needs, actor
from llm_manager.server.deps import Manager
from llm_manager.services.applications import ApplicationView
from llm_manager.services.tokens import GROUPS
from llm_manager.services.web_sessions import SessionUser

router = APIRouter()
ManagesProviders = Annotated[SessionUser, Depends(Needs("manage-llm-providers"))]
GROUP_HELP = {
    "inference": "call models: /v1 and streams",
    "management": "manage its own application through /api",
    "admin": "manage every application through /api",
}


@router.get("/admin/applications")
async def applications_page(
    request: Request, user: ManagesProviders, llm: Manager, pages: PageRenderer
) -> Response:
    return pages.render(request, "applications.html", await _list_context(llm, form={}, errors={}))


@router.post("/admin/applications")
async def create_application(
    request: Request,
    user: ManagesProviders,
    llm: Manager,
    pages: PageRenderer,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    rpm_limit: Annotated[str, Form()] = "",
    tpm_limit: Annotated[str, Form()] = "",
) -> Response:
    form = {
        "name": name.strip(),
        "description": description.strip(),
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
    }
    try:
        view = await llm.applications.create(
            form["name"],
            form["description"],
            rpm_limit=optional_int(rpm_limit, "rpm_limit"),
            tpm_limit=optional_int(tpm_limit, "tpm_limit"),
        )
    except InvalidInputError as invalid:
        errors = field_errors(invalid, default="name")
    except ConflictError as taken:
        errors = {"name": str(taken)}
    else:
        await llm.services.activity.record(actor(request, user), "application.create", target=view.name)
        return redirect(_url(view), flash=f"Application {view.name} created. Issue it a token below.")
    context = await _list_context(llm, form=form, errors=errors)
    return pages.render(request, "applications.html", context, status_code=422)


@router.get("/admin/applications/{name}")
async def application_page(
    name: str, request: Request, user: ManagesProviders, llm: Manager, pages: PageRenderer
) -> Response:
    app = await llm.applications.get(name)
    return pages.render(request, "applications_detail.html", await _detail_context(llm, app))


@router.post("/admin/applications/{name}")
async def update_application(
    name: str,
    request: Request,
    user: ManagesProviders,
    llm: Manager,
    pages: PageRenderer,
    description: Annotated[str, Form()] = "",
    is_active: Annotated[str, Form()] = "",
    rpm_limit: Annotated[str, Form()] = "",
    tpm_limit: Annotated[str, Form()] = "",
) -> Response:
    """Change description, activation and limits; an empty limit lifts it. Applies to the next request."""
    app = await llm.applications.get(name)
    form = {
        "description": description.strip(),
        "is_active": bool(is_active),
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
    }
    try:
        view = await llm.applications.update(
            app.name,
            description=description.strip(),
            is_active=bool(is_active),
            rpm_limit=optional_int(rpm_limit, "rpm_limit"),
            tpm_limit=optional_int(tpm_limit, "tpm_limit"),
        )
    except InvalidInputError as invalid:
        context = await _detail_context(
            llm, app, edit=form, edit_errors=field_errors(invalid, default="rpm_limit")
        )
        return pages.render(request, "applications_detail.html", context, status_code=422)
    detail = f"{'active' if view.is_active else 'inactive'}, rpm {view.rpm_limit or '-'}, tpm {view.tpm_limit or '-'}"
    await llm.services.activity.record(
        actor(request, user), "application.update", target=view.name, detail=detail
    )
    return redirect(_url(view), flash=f"Application {view.name} saved.")


@router.post("/admin/applications/{name}/tokens")
async def create_token(
    name: str,
    request: Request,
    user: ManagesProviders,
    llm: Manager,
    pages: PageRenderer,
    token_name: Annotated[str, Form()] = "",
    groups: Annotated[list[str] | None, Form()] = None,
    configurations: Annotated[list[str] | None, Form()] = None,
    expires_at: Annotated[str, Form()] = "",
    token_rpm_limit: Annotated[str, Form()] = "",
    token_tpm_limit: Annotated[str, Form()] = "",
) -> Response:
    """Issue a token and show its secret this once: the response is the only place it ever appears."""
    app = await llm.applications.get(name)
    chosen = [slug for slug in configurations or [] if slug]
    form: dict[str, Any] = {
        "token_name": token_name.strip(),
        "groups": groups or [],
        "configurations": chosen,
        "expires_at": expires_at,
        "token_rpm_limit": token_rpm_limit,
        "token_tpm_limit": token_tpm_limit,
    }
    try:
        issued = await llm.tokens.create(
            app.name,
            name=form["token_name"],
            groups=form["groups"],
            configurations=chosen or None,
            expires_at=optional_time(expires_at, "expires_at"),
            rpm_limit=optional_int(token_rpm_limit, "token_rpm_limit"),
            tpm_limit=optional_int(token_tpm_limit, "token_tpm_limit"),
        )
    except InvalidInputError as invalid:
        errors = _token_errors(field_errors(invalid, default="groups"))
        context = await _detail_context(llm, app, token_form=form, token_errors=errors)
        return pages.render(request, "applications_detail.html", context, status_code=422)
    await llm.services.activity.record(
        actor(request, user),
        "token.create",
        target=issued.token.prefix,
        detail=f"application {app.name}, scopes {', '.join(issued.token.groups)}",
    )
    response = pages.render(request, "applications_token.html", {"app": app, "issued": issued})
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/admin/applications/{name}/tokens/{prefix}/revoke")
async def revoke_token(
    name: str, prefix: str, request: Request, user: ManagesProviders, llm: Manager
) -> Response:
    app = await llm.applications.get(name)
    view = await llm.tokens.revoke(prefix, application_id=app.id)
    await llm.services.activity.record(
        actor(request, user), "token.revoke", target=view.prefix, detail=f"application {app.name}"
    )
    return redirect(_url(app), flash=f"Token {view.prefix} revoked: it is refused from the next request on.")


def optional_int(value: str, field: str) -> int | None:
    """A whole number from a form field; empty means none (no limit)."""
    text = value.strip().replace(",", "").replace("_", "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"{field}: a whole number, or empty for no limit", field=field) from None


def optional_time(value: str, field: str) -> datetime | None:
    """A `datetime-local` field, read as UTC (the admin shows every time in UTC)."""
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInputError(f"{field}: a date and time such as 2030-01-31T12:00", field=field) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _token_errors(errors: dict[str, str]) -> dict[str, str]:
    """The token form's rate-limit fields are named apart from the application form's."""
    renamed = {"rpm_limit": "token_rpm_limit", "tpm_limit": "token_tpm_limit", "name": "token_name"}
    return {renamed.get(field, field): message for field, message in errors.items()}


def _url(app: ApplicationView) -> str:
    return f"/admin/applications/{app.name}"


async def _list_context(llm: LLMManager, *, form: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    tokens = await llm.tokens.list_all(include_revoked=False)
    counts: dict[int, int] = {}
    for token in tokens:
        if token.status == "active":
            counts[token.application_id] = counts.get(token.application_id, 0) + 1
    return {
        "applications": await llm.applications.list_all(),
        "token_counts": counts,
        "form": form,
        "errors": errors,
    }


async def _detail_context(
    llm: LLMManager,
    app: ApplicationView,
    *,
    edit: dict[str, Any] | None = None,
    edit_errors: dict[str, str] | None = None,
    token_form: dict[str, Any] | None = None,
    token_errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    configurations = await llm.configurations.list_all()
    return {
        "app": app,
        "tokens": await llm.tokens.list_all(application_id=app.id),
        "configuration_slugs": [item.slug for item in configurations if item.application in (None, app.name)],
        "groups": [(group, GROUP_HELP[group]) for group in GROUPS],
        "edit": edit
        or {
            "description": app.description,
            "is_active": app.is_active,
            "rpm_limit": app.rpm_limit or "",
            "tpm_limit": app.tpm_limit or "",
        },
        "edit_errors": edit_errors or {},
        "token_form": token_form or {"groups": ["inference"], "configurations": []},
        "token_errors": token_errors or {},
    }
