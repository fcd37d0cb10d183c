"""`/api/applications`: every application for admins; a management token sees only its own.

Creating and changing applications (limits, activation) is an admin's job: an application's own
token could otherwise lift its own rate limits.
"""

from __future__ import annotations

from fastapi import APIRouter

from llm_manager.server.api._scope import application_name, require_admin
from llm_manager.server.api.schemas import (
    ApplicationCreate,
    ApplicationPublic,
    ApplicationUpdate,
    ListOf,
)
from llm_manager.server.auth import ManagementCaller
from llm_manager.server.deps import Manager

router = APIRouter(prefix="/applications", tags=["applications"])


@router.get("", summary="List applications")
async def list_applications(llm: Manager, caller: ManagementCaller) -> ListOf[ApplicationPublic]:
    """Every application for an admin token; the caller's own application otherwise."""
    if caller.is_admin:
        views = await llm.applications.list_all()
    else:
        views = [await llm.applications.get_by_id(caller.application_id)]
    return ListOf(data=[ApplicationPublic.model_validate(view) for view in views])


@router.get("/{name}", summary="Get an application")
async def get_application(name: str, llm: Manager, caller: ManagementCaller) -> ApplicationPublic:
    view = await llm.applications.get(application_name(caller, name))
    return ApplicationPublic.model_validate(view)


@router.post("", status_code=201, summary="Create an application (admin)")
async def create_application(
    body: ApplicationCreate, llm: Manager, caller: ManagementCaller
) -> ApplicationPublic:
    require_admin(caller, "create applications")
    view = await llm.applications.create(
        body.name, body.description, rpm_limit=body.rpm_limit, tpm_limit=body.tpm_limit
    )
    return ApplicationPublic.model_validate(view)


@router.patch("/{name}", summary="Change an application's limits or status (admin)")
async def update_application(
    name: str, body: ApplicationUpdate, llm: Manager, caller: ManagementCaller
) -> ApplicationPublic:
    """Only the fields sent change; `rpm_limit` or `tpm_limit` sent as null lifts that limit.

    Deactivating an application refuses its tokens from the next request on.
    """
    require_admin(caller, "change applications")
    limits = body.model_dump(include={"rpm_limit", "tpm_limit"}, exclude_unset=True)
    view = await llm.applications.update(
        name, description=body.description, is_active=body.is_active, **limits
    )
    return ApplicationPublic.model_validate(view)
