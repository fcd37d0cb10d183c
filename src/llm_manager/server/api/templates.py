"""`/api/templates`: prompt templates, their immutable versions, labels, rendering and statistics.

Templates are shared by every application, like global configurations; any management token
reads, versions, labels and renders them (a version's default configuration must be one the
token may use). Saving never changes a version — it adds the next one —
so usage rows that name a version keep meaning the same text, and `stats` compares versions.
A reference elsewhere (`POST /api/stream`, the library, the CLI) is `name`, `name@label` or `name@3`.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from llm_manager.errors import ConflictError, InvalidInputError, NotFoundError
from llm_manager.manager import LLMManager
from llm_manager.server.api.conversation_schemas import (
    LabelAssign,
    RenderedPublic,
    RenderRequest,
    TemplateCreate,
    TemplatePublic,
    TemplateVersionCreate,
    TemplateVersionPublic,
    VersionStatsPublic,
)
from llm_manager.server.api.schemas import ListOf
from llm_manager.server.auth import ManagementCaller, authorize_configuration
from llm_manager.server.deps import Manager
from llm_manager.services.templates import TemplateDraft, TemplateVersionView
from llm_manager.services.tokens import Principal

router = APIRouter(prefix="/api/templates", tags=["templates"])


@router.get("", summary="List prompt templates")
async def list_templates(
    llm: Manager, caller: ManagementCaller, search: str | None = None
) -> ListOf[TemplatePublic]:
    views = await llm.templates.list(search=search)
    return ListOf(data=[TemplatePublic.model_validate(view) for view in views])


@router.post("", status_code=201, summary="Create a template with its first version")
async def create_template(
    body: TemplateCreate, llm: Manager, caller: ManagementCaller
) -> TemplateVersionPublic:
    """A name that is taken is a conflict: add versions with `POST /api/templates/{name}/versions`."""
    try:
        await llm.templates.get(body.name)
    except NotFoundError:
        pass
    else:
        raise ConflictError(f"template {body.name!r} exists; add a version to it instead")
    return await _save(llm, caller, body.name, body)


@router.get("/{name}", summary="Get a template and its labels")
async def get_template(name: str, llm: Manager, caller: ManagementCaller) -> TemplatePublic:
    return TemplatePublic.model_validate(await llm.templates.get(name))


@router.delete("/{name}", status_code=204, summary="Delete a template and every version")
async def delete_template(name: str, llm: Manager, caller: ManagementCaller) -> Response:
    """Usage rows keep the template name and version they recorded."""
    await llm.templates.delete(name)
    return Response(status_code=204)


@router.get("/{name}/versions", summary="List a template's versions, newest first")
async def list_versions(name: str, llm: Manager, caller: ManagementCaller) -> ListOf[TemplateVersionPublic]:
    views = await llm.templates.versions(name)
    return ListOf(data=[_version(view) for view in views])


@router.post("/{name}/versions", status_code=201, summary="Save a new version of a template")
async def create_version(
    name: str, body: TemplateVersionCreate, llm: Manager, caller: ManagementCaller
) -> TemplateVersionPublic:
    """The next number; the `latest` label moves to it, `production` and custom labels stay."""
    await llm.templates.get(name)
    return await _save(llm, caller, name, body)


@router.get("/{name}/versions/{version}", summary="Get one version of a template")
async def get_version(
    name: str, version: int, llm: Manager, caller: ManagementCaller
) -> TemplateVersionPublic:
    return _version(await llm.templates.version(f"{name}@{version}"))


@router.put("/{name}/labels/{label}", summary="Point a label at a version")
async def set_label(
    name: str, label: str, body: LabelAssign, llm: Manager, caller: ManagementCaller
) -> TemplatePublic:
    """Moves the label if it pointed elsewhere. `latest` always follows the newest version."""
    return TemplatePublic.model_validate(await llm.templates.set_label(name, label, body.version))


@router.delete("/{name}/labels/{label}", summary="Remove a label")
async def remove_label(name: str, label: str, llm: Manager, caller: ManagementCaller) -> TemplatePublic:
    return TemplatePublic.model_validate(await llm.templates.remove_label(name, label))


@router.post("/{name}/render", summary="Render a version with variables (no model is called)")
async def render_template(
    name: str, body: RenderRequest, llm: Manager, caller: ManagementCaller
) -> RenderedPublic:
    """A missing or mistyped variable is a 400 naming it (`variables.<name>`); a template that
    tries to leave the sandbox, or runs too long or too large, is a 400 with code `template_error`."""
    reference = name if body.version_or_label is None else f"{name}@{body.version_or_label}"
    return RenderedPublic.model_validate(await llm.templates.render(reference, body.variables))


@router.get("/{name}/stats", summary="Cost and latency of each version, from the usage log")
async def template_stats(name: str, llm: Manager, caller: ManagementCaller) -> ListOf[VersionStatsPublic]:
    """One entry per version that was called, newest first."""
    stats = await llm.templates.stats(name)
    return ListOf(data=[VersionStatsPublic.model_validate(entry) for entry in stats])


async def _save(
    llm: LLMManager, caller: Principal, name: str, body: TemplateVersionCreate
) -> TemplateVersionPublic:
    if body.configuration is not None and not caller.is_admin:
        try:
            await authorize_configuration(llm, caller, body.configuration)
        except NotFoundError as error:
            raise InvalidInputError(str(error), field="configuration") from None
    draft = TemplateDraft(
        user=body.user,
        system=body.system,
        variables=body.variables,
        configuration=body.configuration,
        params=body.params,
        note=body.note,
    )
    view = await llm.templates.save(
        name, draft, created_by=f"token {caller.prefix}", description=body.description
    )
    return _version(view)


def _version(view: TemplateVersionView) -> TemplateVersionPublic:
    return TemplateVersionPublic.model_validate(view)
