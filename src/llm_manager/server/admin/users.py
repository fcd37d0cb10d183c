"""Admin pages for super-admins: users, and roles as a permission matrix.

Permissions are read from the database on every request, so what is saved here applies to the
affected users' very next request. The service refuses what would lock everybody out (no active
super-admin left, deactivating or deleting yourself); those refusals are shown on the page.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from llm_manager.errors import ConflictError, InvalidInputError, PermissionDeniedError
from llm_manager.manager import LLMManager
from llm_manager.server.admin._pages import PageRenderer, field_errors, redirect
from llm_manager.server.admin._session import Needs, actor
from llm_manager.server.deps import Manager
from llm_manager.services.accounts import PERMISSIONS, SUPER_ADMIN, UserView
from llm_manager.services.web_sessions import SessionUser

router = APIRouter()
SuperAdmin = Annotated[SessionUser, Depends(Needs(SUPER_ADMIN))]
Roles = Annotated[list[str] | None, Form()]
PAGE_MESSAGE = "form"
"""The `errors` key of a message about the whole form rather than one field."""


@router.get("/admin/users")
async def users_page(request: Request, user: SuperAdmin, llm: Manager, pages: PageRenderer) -> Response:
    return pages.render(
        request, "users.html", await _list_context(llm, form={"roles": ["viewer"]}, errors={})
    )


@router.post("/admin/users")
async def create_user(
    request: Request,
    user: SuperAdmin,
    llm: Manager,
    pages: PageRenderer,
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    roles: Roles = None,
) -> Response:
    form = {"email": email.strip(), "name": name.strip(), "roles": roles or []}
    try:
        view = await llm.services.accounts.create_user(email, password, name=name, roles=roles or [])
    except InvalidInputError as invalid:
        errors = field_errors(invalid, default="email")
    except ConflictError as taken:
        errors = {"email": str(taken)}
    else:
        await llm.services.activity.record(
            actor(request, user),
            "user.create",
            target=view.email,
            detail=f"roles {', '.join(view.roles) or '-'}",
        )
        return redirect("/admin/users", flash=f"User {view.email} created.")
    context = await _list_context(llm, form=form, errors=errors)
    return pages.render(request, "users.html", context, status_code=422)


@router.get("/admin/users/{user_id}")
async def user_page(
    user_id: int, request: Request, user: SuperAdmin, llm: Manager, pages: PageRenderer
) -> Response:
    person = await llm.services.accounts.get_user(user_id)
    return pages.render(request, "users_detail.html", await _detail_context(llm, person))


@router.post("/admin/users/{user_id}")
async def update_user(
    user_id: int,
    request: Request,
    user: SuperAdmin,
    llm: Manager,
    pages: PageRenderer,
    name: Annotated[str, Form()] = "",
    is_active: Annotated[str, Form()] = "",
    roles: Roles = None,
) -> Response:
    """Name, roles and the active flag; deactivating ends the user's sessions at once."""
    person = await llm.services.accounts.get_user(user_id)
    form = {"name": name.strip(), "is_active": bool(is_active), "roles": roles or []}
    try:
        view = await llm.services.accounts.update_user(
            user_id, name=name, is_active=bool(is_active), roles=roles or [], acting_user_id=user.user_id
        )
    except InvalidInputError as invalid:
        return await _refused(request, llm, pages, person, field_errors(invalid, default="name"), edit=form)
    except PermissionDeniedError as refused:
        return await _refused(request, llm, pages, person, {PAGE_MESSAGE: _sentence(refused)}, edit=form)
    state = "active" if view.is_active else "inactive"
    await llm.services.activity.record(
        actor(request, user),
        "user.update",
        target=view.email,
        detail=f"{state}, roles {', '.join(view.roles) or '-'}",
    )
    if view.id == user.user_id and not view.is_super_admin:
        return redirect("/admin", flash="Saved. You are no longer a super-admin.")
    return redirect(f"/admin/users/{view.id}", flash=f"User {view.email} saved.")


@router.post("/admin/users/{user_id}/password")
async def reset_password(
    user_id: int,
    request: Request,
    user: SuperAdmin,
    llm: Manager,
    pages: PageRenderer,
    new_password: Annotated[str, Form()] = "",
) -> Response:
    """Set a new password; every session of that user ends (yours is kept if it is your own)."""
    person = await llm.services.accounts.get_user(user_id)
    keep = user.session_id if user_id == user.user_id else None
    try:
        await llm.services.accounts.set_password(user_id, new_password, keep_session=keep)
    except InvalidInputError as invalid:
        return await _refused(request, llm, pages, person, field_errors(invalid, default="new_password"))
    await llm.services.activity.record(actor(request, user), "user.password-reset", target=person.email)
    return redirect(
        f"/admin/users/{person.id}", flash=f"Password of {person.email} reset; their sessions have ended."
    )


@router.post("/admin/users/{user_id}/delete")
async def delete_user(
    user_id: int, request: Request, user: SuperAdmin, llm: Manager, pages: PageRenderer
) -> Response:
    person = await llm.services.accounts.get_user(user_id)
    try:
        await llm.services.accounts.delete_user(user_id, acting_user_id=user.user_id)
    except (InvalidInputError, PermissionDeniedError) as refused:
        return await _refused(request, llm, pages, person, {PAGE_MESSAGE: _sentence(refused)})
    await llm.services.activity.record(actor(request, user), "user.delete", target=person.email)
    return redirect("/admin/users", flash=f"User {person.email} deleted.")


@router.get("/admin/roles")
async def roles_page(request: Request, user: SuperAdmin, llm: Manager, pages: PageRenderer) -> Response:
    return pages.render(request, "roles.html", await _roles_context(llm, form={}, errors={}))


@router.post("/admin/roles")
async def save_matrix(
    request: Request,
    user: SuperAdmin,
    llm: Manager,
    pages: PageRenderer,
    roles: Roles = None,
    grants: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Save the whole matrix at once. Only the roles the form showed (`roles`) are replaced, so a
    role created meanwhile in another tab keeps its permissions."""
    chosen: dict[str, set[str]] = {role: set() for role in roles or [] if role != SUPER_ADMIN}
    for grant in grants or []:
        role, _, permission = grant.partition(":")
        if role in chosen:
            chosen[role].add(permission)
    if not chosen:
        return redirect("/admin/roles", flash="Nothing to save.")
    try:
        await llm.services.accounts.set_permissions(dict(chosen))
    except InvalidInputError as invalid:
        context = await _roles_context(llm, form={}, errors={PAGE_MESSAGE: _sentence(invalid)})
        return pages.render(request, "roles.html", context, status_code=422)
    detail = "; ".join(
        f"{role}: {', '.join(sorted(granted)) or 'nothing'}" for role, granted in chosen.items()
    )
    await llm.services.activity.record(actor(request, user), "role.permissions", detail=detail)
    return redirect("/admin/roles", flash="Permissions saved; they apply to each user's next request.")


@router.post("/admin/roles/new")
async def create_role(
    request: Request,
    user: SuperAdmin,
    llm: Manager,
    pages: PageRenderer,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    permissions: Annotated[list[str] | None, Form()] = None,
) -> Response:
    form: dict[str, Any] = {
        "name": name.strip(),
        "description": description.strip(),
        "permissions": permissions or [],
    }
    try:
        role = await llm.services.accounts.create_role(
            name.strip(), description=description.strip(), permissions=permissions or []
        )
    except InvalidInputError as invalid:
        errors = field_errors(invalid, default="name")
    except ConflictError as taken:
        errors = {"name": str(taken)}
    else:
        await llm.services.activity.record(
            actor(request, user), "role.create", target=role.name, detail=", ".join(sorted(role.permissions))
        )
        return redirect("/admin/roles", flash=f"Role {role.name} created. Give it to users on their page.")
    context = await _roles_context(llm, form=form, errors=errors)
    return pages.render(request, "roles.html", context, status_code=422)


@router.post("/admin/roles/{role}/delete")
async def delete_role(
    role: str, request: Request, user: SuperAdmin, llm: Manager, pages: PageRenderer
) -> Response:
    try:
        await llm.services.accounts.delete_role(role)
    except InvalidInputError as refused:
        context = await _roles_context(llm, form={}, errors={PAGE_MESSAGE: _sentence(refused)})
        return pages.render(request, "roles.html", context, status_code=422)
    await llm.services.activity.record(actor(request, user), "role.delete", target=role)
    return redirect("/admin/roles", flash=f"Role {role} deleted; its users lost its permissions.")


def _sentence(error: Exception) -> str:
    text = str(error)
    return f"{text[:1].upper()}{text[1:]}." if text and not text.endswith(".") else text


async def _refused(
    request: Request,
    llm: LLMManager,
    pages: PageRenderer,
    person: UserView,
    errors: dict[str, str],
    *,
    edit: dict[str, Any] | None = None,
) -> Response:
    """The user's page again, with why the change was refused: 422 for bad input, 409 for a rule."""
    status = 409 if PAGE_MESSAGE in errors else 422
    context = await _detail_context(llm, person, edit=edit, errors=errors)
    return pages.render(request, "users_detail.html", context, status_code=status)


async def _role_names(llm: LLMManager) -> list[str]:
    return [role.name for role in await llm.services.accounts.list_roles()]


async def _list_context(llm: LLMManager, *, form: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    return {
        "users": await llm.services.accounts.list_users(),
        "role_names": await _role_names(llm),
        "form": form,
        "errors": errors,
    }


async def _detail_context(
    llm: LLMManager,
    person: UserView,
    *,
    edit: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "person": person,
        "role_names": await _role_names(llm),
        "edit": edit or {"name": person.name, "is_active": person.is_active, "roles": list(person.roles)},
        "errors": errors or {},
    }


async def _roles_context(llm: LLMManager, *, form: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    return {
        "roles": await llm.services.accounts.list_roles(),
        "permissions": PERMISSIONS,
        "super_admin": SUPER_ADMIN,
        "form": form,
        "errors": errors,
    }
