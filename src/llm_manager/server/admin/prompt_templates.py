"""Admin pages for prompt templates: list, editor, the template page (versions, labels, diff,
render preview, cost and latency per version) and delete.

Saving never changes a version: the editor always posts a whole new version, which the service
numbers. Declared variables are rows of fields named `var-<row>-<key>`; rows whose fields are all
empty are ignored, so the form works without JavaScript (it always carries one empty row) and
`prompt_templates.js` only adds and removes rows. A validation error names its field (`user`,
`variables[1].default`, `params.temperature`, ...) and is shown beside that field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from llm_manager.errors import ConflictError, InvalidInputError, NotFoundError
from llm_manager.server.admin._pages import PageRenderer, redirect
from llm_manager.server.admin._session import Needs, actor
from llm_manager.server.admin._template_diff import version_diff
from llm_manager.server.admin.statistics import cost_series, count_series
from llm_manager.server.deps import Manager
from llm_manager.services.prompt_rendering import VariableSpec
from llm_manager.services.templates import (
    LATEST,
    PRODUCTION,
    TemplateDraft,
    TemplateVersionView,
    TemplateView,
    VersionStats,
)
from llm_manager.services.web_sessions import SessionUser

router = APIRouter()
BASE = "/admin/templates"
VARIABLE_TYPES = ("string", "number", "integer", "boolean", "list", "object")
VARIABLE_KEYS = ("name", "type", "default", "required", "description")
PARAM_FIELDS = ("temperature", "max_tokens")
"""The parameters the editor shows; any others a version has (set through the API or CLI) are kept."""
_VARIABLE_ROW = re.compile(r"^var-(\d{1,4})-(name|type|default|description|required)$")
_VARIABLE_FIELD = re.compile(r"^variables\[(\d+)\](?:\.(\w+))?")

Viewer = Annotated[SessionUser, Depends(Needs("view-llm-configs"))]
Editor = Annotated[SessionUser, Depends(Needs("edit-llm-configs"))]


@dataclass(frozen=True, kw_only=True)
class TemplateForm:
    """The editor's fields as typed, to save or to show again beside their errors."""

    name: str = ""
    description: str = ""
    system: str = ""
    user: str = ""
    variables: list[dict[str, Any]] = field(default_factory=list)
    """Rows with text `name`, `type`, `default`, `description` and a boolean `required`."""
    configuration: str = ""
    params: dict[str, str] = field(default_factory=dict)
    note: str = ""
    base: int | None = None
    """The version the editor started from: its parameters the form does not show are kept."""


@dataclass(frozen=True, kw_only=True)
class PreviewOutcome:
    """A render preview as the page shows it: the rendered parts, or why rendering failed."""

    version: int
    system: str | None = None
    user: str | None = None
    error: str | None = None


# --- list -----------------------------------------------------------------------------------------


@router.get(BASE)
async def list_templates(
    request: Request,
    user: Viewer,
    llm: Manager,
    pages: PageRenderer,
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    found = await llm.templates.list(search=q)
    return pages.render(request, "prompt_templates/list.html", {"templates": found, "q": q.strip()})


# --- create and edit ------------------------------------------------------------------------------


@router.get(f"{BASE}/new")
async def new_template(request: Request, user: Editor, llm: Manager, pages: PageRenderer) -> Response:
    form = TemplateForm()
    return await _render_form(request, llm, pages, form, template=None)


@router.post(f"{BASE}/new")
async def create_template(request: Request, user: Editor, llm: Manager, pages: PageRenderer) -> Response:
    form = read_form(await request.form())
    if await _exists(llm, form.name.strip()):
        errors = {"name": "a template with this name exists; open it to add a version"}
        return await _render_form(request, llm, pages, form, template=None, errors=errors)
    return await _save(request, user, llm, pages, form, template=None)


@router.get(f"{BASE}/{{name}}/edit")
async def edit_template(
    request: Request,
    name: str,
    user: Editor,
    llm: Manager,
    pages: PageRenderer,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """The editor, starting from the newest version (or `version`): saving adds the next one."""
    template = await llm.templates.get(name)
    start = await llm.templates.version(f"{name}@{version or template.latest_version}")
    return await _render_form(request, llm, pages, form_of(template, start), template=template)


@router.post(f"{BASE}/{{name}}/edit")
async def save_version(
    request: Request, name: str, user: Editor, llm: Manager, pages: PageRenderer
) -> Response:
    template = await llm.templates.get(name)
    form = read_form(await request.form(), name=template.name)
    return await _save(request, user, llm, pages, form, template=template)


async def _save(
    request: Request,
    user: SessionUser,
    llm: Manager,
    pages: PageRenderer,
    form: TemplateForm,
    *,
    template: TemplateView | None,
) -> Response:
    try:
        draft = TemplateDraft(
            system=form.system or None,
            user=form.user,
            variables=variable_declarations(form.variables),
            configuration=form.configuration or None,
            params=await _params(llm, form),
            note=form.note.strip(),
        )
        saved = await llm.templates.save(
            form.name.strip(), draft, created_by=user.email, description=form.description.strip()
        )
    except InvalidInputError as error:
        return await _render_form(request, llm, pages, form, template=template, errors=form_errors(error))
    except NotFoundError as error:  # the chosen configuration was deleted meanwhile
        errors = {"configuration": str(error)}
        return await _render_form(request, llm, pages, form, template=template, errors=errors)
    await llm.services.activity.record(
        actor(request, user), "template.save", target=saved.name, detail=f"version {saved.version}"
    )
    return redirect(
        f"{BASE}/{saved.name}?version={saved.version}", flash=f"Saved as version {saved.version}."
    )


# --- the template page ----------------------------------------------------------------------------


@router.get(f"{BASE}/{{name}}")
async def template_page(
    request: Request,
    name: str,
    user: Viewer,
    llm: Manager,
    pages: PageRenderer,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    return await _render_page(request, llm, pages, name, version)


@router.get(f"{BASE}/{{name}}/diff")
async def diff(
    request: Request,
    name: str,
    user: Viewer,
    llm: Manager,
    pages: PageRenderer,
    old: Annotated[int | None, Query(alias="from", ge=1)] = None,
    new: Annotated[int | None, Query(alias="to", ge=1)] = None,
) -> Response:
    """Version `from` → version `to` (by default the one before the newest → the newest)."""
    template = await llm.templates.get(name)
    new = new or template.latest_version
    old = old or max(new - 1, 1)
    before = await llm.templates.version(f"{template.name}@{old}")
    after = await llm.templates.version(f"{template.name}@{new}")
    context = {"t": template, "old": before, "new": after, "parts": version_diff(before, after)}
    fragment = bool(request.headers.get("hx-request"))
    return pages.render(request, f"prompt_templates/{'_diff' if fragment else 'diff'}.html", context)


@router.post(f"{BASE}/{{name}}/preview")
async def preview(request: Request, name: str, user: Viewer, llm: Manager, pages: PageRenderer) -> Response:
    """Render a version with the variables typed into the preview form; nothing is sent anywhere.

    A failure (a missing variable, a value of the wrong type, the sandbox refusing) is the result
    the form shows, so htmx gets it with status 200; a plain form post gets the page with 422.
    """
    posted = await request.form()
    number = _version_number(posted.get("version"))
    chosen = await llm.templates.version(f"{name}@{number}" if number else name)
    values = {spec.name: _text(posted.get(f"v-{spec.name}")) for spec in chosen.variables}
    try:
        rendered = await llm.templates.render(
            f"{chosen.name}@{chosen.version}", {key: value for key, value in values.items() if value != ""}
        )
        outcome = PreviewOutcome(version=chosen.version, system=rendered.system, user=rendered.user)
    except InvalidInputError as error:
        outcome = PreviewOutcome(version=chosen.version, error=str(error))
    if request.headers.get("hx-request"):
        return pages.render(request, "prompt_templates/_preview.html", {"preview": outcome})
    return await _render_page(
        request,
        llm,
        pages,
        chosen.name,
        chosen.version,
        preview=outcome,
        preview_values=values,
        status_code=422 if outcome.error else 200,
    )


# --- labels and delete ----------------------------------------------------------------------------


@router.post(f"{BASE}/{{name}}/labels")
async def set_label(request: Request, name: str, user: Editor, llm: Manager, pages: PageRenderer) -> Response:
    template = await llm.templates.get(name)
    posted = await request.form()
    label = _text(posted.get("label")).strip().lower()
    number = _version_number(posted.get("version"))
    errors: dict[str, str] = {}
    status = 422
    if number is None:
        errors = {"label_version": "choose a version"}
    else:
        try:
            await llm.templates.set_label(template.name, label, number)
        except ConflictError as error:  # `latest`: it moves by itself
            errors, status = {"label": str(error)}, 409
        except InvalidInputError as error:
            errors = {"label": str(error)}
        except NotFoundError as error:
            errors = {"label_version": str(error)}
    if errors:
        return await _render_page(
            request,
            llm,
            pages,
            template.name,
            number if number and number <= template.latest_version else None,
            errors=errors,
            label_values={"label": label, "version": number},
            status_code=status,
        )
    await llm.services.activity.record(
        actor(request, user), "template.label", target=template.name, detail=f"{label} → version {number}"
    )
    return redirect(
        f"{BASE}/{template.name}?version={number}", flash=f"{label} now points at version {number}."
    )


@router.post(f"{BASE}/{{name}}/labels/{{label}}/delete")
async def remove_label(
    request: Request, name: str, label: str, user: Editor, llm: Manager, pages: PageRenderer
) -> Response:
    template = await llm.templates.get(name)
    if label == LATEST:
        errors = {"label": "'latest' always points at the newest version; it cannot be removed"}
        return await _render_page(request, llm, pages, template.name, None, errors=errors, status_code=409)
    if label not in template.labels:
        raise NotFoundError(f"template {template.name!r} has no label {label!r}")
    await llm.templates.remove_label(template.name, label)
    await llm.services.activity.record(
        actor(request, user), "template.unlabel", target=template.name, detail=label
    )
    return redirect(f"{BASE}/{template.name}", flash=f"Label {label} removed.")


@router.post(f"{BASE}/{{name}}/delete")
async def delete_template(request: Request, name: str, user: Editor, llm: Manager) -> Response:
    template = await llm.templates.get(name)
    await llm.templates.delete(template.name)
    await llm.services.activity.record(
        actor(request, user),
        "template.delete",
        target=template.name,
        detail=f"{template.latest_version} version{'s' if template.latest_version != 1 else ''}",
    )
    return redirect(BASE, flash=f"Template {template.name} deleted.")


# --- form handling --------------------------------------------------------------------------------


def read_form(form: FormData, *, name: str | None = None) -> TemplateForm:
    """The posted fields as typed. Variable rows come back in their on-page order, empty ones dropped."""
    rows: dict[int, dict[str, Any]] = {}
    for key in form:
        matched = _VARIABLE_ROW.match(key)
        if matched:
            row = rows.setdefault(int(matched.group(1)), {"required": False})
            key_name = matched.group(2)
            row[key_name] = form.get(key) is not None if key_name == "required" else _text(form.get(key))
    variables = [
        {key: row.get(key, "string" if key == "type" else "") for key in VARIABLE_KEYS}
        for _, row in sorted(rows.items())
        if any(_text(row.get(key)).strip() for key in ("name", "default", "description"))
    ]
    return TemplateForm(
        name=name if name is not None else _text(form.get("name")),
        description=_text(form.get("description")),
        system=_text(form.get("system")),
        user=_text(form.get("user")),
        variables=variables,
        configuration=_text(form.get("configuration")).strip(),
        params={param: _text(form.get(param)).strip() for param in PARAM_FIELDS},
        note=_text(form.get("note")),
        base=_version_number(form.get("base")),
    )


def variable_declarations(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The service's declarations from the rows: an empty default means none; defaults stay text,
    which the service converts to the declared type (and refuses, naming the row, when it cannot)."""
    return [
        {
            "name": row["name"].strip(),
            "type": row["type"],
            "default": row["default"] if row["default"].strip() else None,
            "required": bool(row["required"]),
            "description": row["description"].strip(),
        }
        for row in rows
    ]


def form_of(template: TemplateView, version: TemplateVersionView) -> TemplateForm:
    """The editor's starting values: `version` as it is, ready to become the next version."""
    return TemplateForm(
        name=template.name,
        description=template.description,
        system=version.system or "",
        user=version.user,
        variables=[_variable_row(spec) for spec in version.variables],
        configuration=version.configuration or "",
        params={name: _shown(version.params.get(name)) for name in PARAM_FIELDS},
        note="",
        base=version.version,
    )


def form_errors(error: InvalidInputError) -> dict[str, str]:
    """`{form field: message}`: `variables[2].default` → `var-2-default`, `params.x` → `x`."""
    named = error.field or "form"
    message = str(error).removeprefix(f"{named}: ")
    variable = _VARIABLE_FIELD.match(named)
    if variable:
        key = variable.group(2) if variable.group(2) in VARIABLE_KEYS else "name"
        return {f"var-{variable.group(1)}-{key}": message}
    if named.startswith("params."):
        parameter = named.removeprefix("params.").split(".")[0]
        return {parameter if parameter in PARAM_FIELDS else "params": message}
    known = ("name", "description", "system", "user", "note", "configuration", "variables")
    return {named if named in known else "form": message}


async def _params(llm: Manager, form: TemplateForm) -> dict[str, Any]:
    """The form's parameters, over those of the starting version the form does not show."""
    kept: dict[str, Any] = {}
    if form.base is not None and form.name.strip():
        try:
            base = await llm.templates.version(f"{form.name.strip()}@{form.base}")
        except NotFoundError:
            base = None
        kept = {key: value for key, value in (base.params if base else {}).items() if key not in PARAM_FIELDS}
    return kept | {name: value for name, value in form.params.items() if value}


async def _render_form(
    request: Request,
    llm: Manager,
    pages: PageRenderer,
    form: TemplateForm,
    *,
    template: TemplateView | None,
    errors: Mapping[str, str] | None = None,
) -> Response:
    configurations = await llm.configurations.list_all()
    kept = await _params(llm, form)
    return pages.render(
        request,
        "prompt_templates/form.html",
        {
            "t": template,
            "form": form,
            "rows": [
                *form.variables,
                {"name": "", "type": "string", "default": "", "required": False, "description": ""},
            ],
            "kept_params": {key: value for key, value in kept.items() if key not in PARAM_FIELDS},
            "errors": errors or {},
            "configurations": configurations,
            "variable_types": VARIABLE_TYPES,
        },
        status_code=422 if errors else 200,
    )


# --- the template page's parts --------------------------------------------------------------------


async def _render_page(
    request: Request,
    llm: Manager,
    pages: PageRenderer,
    name: str,
    version: int | None,
    *,
    errors: Mapping[str, str] | None = None,
    preview: PreviewOutcome | None = None,
    preview_values: Mapping[str, str] | None = None,
    label_values: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    template = await llm.templates.get(name)
    versions = await llm.templates.versions(template.name)
    number = version or template.latest_version
    selected = next((view for view in versions if view.version == number), None)
    if selected is None:
        raise NotFoundError(f"template {template.name!r} has no version {number}")
    stats = await llm.templates.stats(template.name)
    return pages.render(
        request,
        "prompt_templates/detail.html",
        {
            "t": template,
            "versions": versions,
            "v": selected,
            "custom_labels": sorted(
                (label, target) for label, target in template.labels.items() if label != LATEST
            ),
            "label_suggestions": sorted({PRODUCTION, *template.labels} - {LATEST}),
            "label_values": label_values or {"label": PRODUCTION, "version": selected.version},
            "errors": errors or {},
            "preview": preview,
            "preview_values": preview_values
            or {spec.name: _default_text(spec) for spec in selected.variables},
            "diff_from": max(selected.version - 1, 1),
            "diff_to": selected.version,
            "stats": stats,
            "charts": _charts(stats),
        },
        status_code=status_code,
    )


def _charts(stats: Sequence[VersionStats]) -> dict[str, dict[str, Any]] | None:
    """Average cost and mean latency per version, oldest version first; None before any call."""
    used = sorted((row for row in stats if row.requests), key=lambda row: row.version)
    if not used:
        return None
    labels = [f"v{row.version}" for row in used]
    return {
        "cost": {
            "type": "bar",
            "money": True,
            "axis": "Version",
            "labels": labels,
            "series": [cost_series("Average cost per call", [row.avg_cost or Decimal(0) for row in used])],
        },
        "latency": {
            "type": "bar",
            "axis": "Version",
            "labels": labels,
            "series": [count_series("Mean latency (ms)", [round(row.avg_latency_ms or 0) for row in used])],
        },
    }


async def _exists(llm: Manager, name: str) -> bool:
    try:
        await llm.templates.get(name)
    except NotFoundError:
        return False
    return True


def _variable_row(spec: VariableSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "type": spec.type,
        "default": _default_text(spec),
        "required": spec.required,
        "description": spec.description,
    }


def _default_text(spec: VariableSpec) -> str:
    """A default as a person types it: text as itself, anything else as JSON (`true`, `[1, 2]`)."""
    if spec.default is None:
        return ""
    if isinstance(spec.default, str):
        return spec.default
    return json.dumps(spec.default, ensure_ascii=False)


def _version_number(value: object) -> int | None:
    text = _text(value).strip()
    return int(text) if text.isdigit() and 0 < len(text) <= 9 else None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _shown(value: object) -> str:
    return "" if value is None else str(value)
