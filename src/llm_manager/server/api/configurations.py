"""`/api/configurations`: named configurations, their connection test and their models.

A management token sees the global configurations and its own application's; it creates
configurations for its own application only, and changes only those. Global ones are shared by
every application, so only admin tokens create, change or delete them. Another application's
configuration is not found, exactly like a missing one. API keys are write-only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from llm_manager.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from llm_manager.manager import LLMManager
from llm_manager.server.api.schemas import (
    ConfigurationPublic,
    ConfigurationTestResult,
    ListOf,
    ModelPublic,
)
from llm_manager.server.auth import ManagementCaller
from llm_manager.server.deps import Manager
from llm_manager.services.configuration_specs import (
    ConfigurationCreate,
    ConfigurationFields,
    ConfigurationUpdate,
)
from llm_manager.services.configurations import ConfigurationView
from llm_manager.services.tokens import Principal

router = APIRouter(prefix="/configurations", tags=["configurations"])


@router.get("", summary="List configurations")
async def list_configurations(
    llm: Manager,
    caller: ManagementCaller,
    provider: Annotated[str | None, Query(description="Only this provider type.")] = None,
    active: Annotated[bool | None, Query(description="Only active (true) or inactive (false) ones.")] = None,
) -> ListOf[ConfigurationPublic]:
    """Global configurations and the caller's application's (every one for an admin token)."""
    views = await llm.configurations.list_all(provider=provider, active_only=active is True)
    return ListOf(
        data=[
            ConfigurationPublic.model_validate(view)
            for view in views
            if _may_see(caller, view) and (active is None or view.is_active == active)
        ]
    )


@router.get("/{slug}", summary="Get a configuration")
async def get_configuration(slug: str, llm: Manager, caller: ManagementCaller) -> ConfigurationPublic:
    return ConfigurationPublic.model_validate(await _visible(llm, caller, slug))


@router.post("", status_code=201, summary="Create a configuration")
async def create_configuration(
    body: ConfigurationCreate, llm: Manager, caller: ManagementCaller
) -> ConfigurationPublic:
    """Without `application`, a management token's configuration belongs to its own application;
    an admin token's is global. Only admin tokens create global configurations."""
    if "application" not in body.model_fields_set and not caller.is_admin:
        body = body.model_copy(update={"application": caller.application})
    await _check_references(llm, caller, body)
    return ConfigurationPublic.model_validate(await llm.configurations.create(body))


@router.patch("/{slug}", summary="Change a configuration")
async def update_configuration(
    slug: str, body: ConfigurationUpdate, llm: Manager, caller: ManagementCaller
) -> ConfigurationPublic:
    """Only the fields sent change. Changing `base_url` clears the stored API key."""
    _check_changeable(caller, await _visible(llm, caller, slug))
    await _check_references(llm, caller, body)
    return ConfigurationPublic.model_validate(await llm.configurations.update(slug, body))


@router.delete("/{slug}", status_code=204, summary="Delete a configuration")
async def delete_configuration(slug: str, llm: Manager, caller: ManagementCaller) -> Response:
    _check_changeable(caller, await _visible(llm, caller, slug))
    await llm.configurations.delete(slug)
    return Response(status_code=204)


@router.post("/{slug}/test", summary="Test a configuration with a tiny real call")
async def test_configuration(slug: str, llm: Manager, caller: ManagementCaller) -> ConfigurationTestResult:
    """Sends a one-word prompt through the whole pipeline, without fallbacks, and records it.

    An upstream failure answers with the usual error shape (502, or 504 on a timeout).
    """
    view = await _visible(llm, caller, slug)
    if not caller.may_call(view.id):
        raise PermissionDeniedError(f"this token may not call configuration {slug!r}")
    return ConfigurationTestResult.model_validate(
        await llm.test(view.slug, context=None if caller.is_admin else caller.context())
    )


@router.get("/{slug}/models", summary="List the models a configuration's upstream offers")
async def list_models(
    slug: str,
    llm: Manager,
    caller: ManagementCaller,
    refresh: Annotated[bool, Query(description="Ask the upstream now instead of using the cache.")] = False,
) -> ListOf[ModelPublic]:
    view = await _visible(llm, caller, slug)
    models = await llm.models(view.slug, refresh=refresh)
    return ListOf(data=[ModelPublic.model_validate(model) for model in models])


def _may_see(caller: Principal, view: ConfigurationView) -> bool:
    return caller.is_admin or view.application in (None, caller.application)


async def _visible(llm: LLMManager, caller: Principal, slug: str) -> ConfigurationView:
    view = await llm.configurations.get(slug)
    if not _may_see(caller, view):
        raise NotFoundError(f"configuration {slug!r} not found")
    return view


def _check_changeable(caller: Principal, view: ConfigurationView) -> None:
    if view.application is None and not caller.is_admin:
        raise PermissionDeniedError("only admin tokens may change global configurations")


async def _check_references(llm: LLMManager, caller: Principal, body: ConfigurationFields) -> None:
    """A management token may neither make a configuration global nor point it at another
    application or another application's fallbacks; those read as not found."""
    if caller.is_admin:
        return
    if "application" in body.model_fields_set:
        if not body.application:
            raise PermissionDeniedError("only admin tokens may create or change global configurations")
        if body.application != caller.application:
            raise InvalidInputError(f"application {body.application!r} not found", field="application")
    for fallback in body.fallbacks or ():
        try:
            await _visible(llm, caller, fallback)
        except NotFoundError:
            raise InvalidInputError(f"configuration {fallback!r} not found", field="fallbacks") from None
