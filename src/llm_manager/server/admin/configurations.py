"""Admin pages for configurations: list, create, edit, detail, and the actions on one.

Forms post plain HTML fields; this module turns them into the service's `ConfigurationCreate` /
`ConfigurationUpdate` and maps every validation failure back to the field it belongs to. The API
key is write-only: the form never carries it back, an empty key input keeps the stored one, and
pages say only whether a key is set. Connection tests and model refreshes answer htmx with a
fragment and a plain form post with a whole page, so everything works without JavaScript.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from llm_manager.errors import ConflictError, GuardRefusedError, InvalidInputError, ProviderError
from llm_manager.server.admin._pages import PageRenderer, field_errors, redirect
from llm_manager.server.admin._session import Needs, actor
from llm_manager.server.deps import Manager
from llm_manager.services.configuration_specs import ConfigurationCreate, ConfigurationUpdate, parse_params
from llm_manager.services.configurations import ConfigurationView, ProviderType
from llm_manager.services.web_sessions import SessionUser
from llm_manager.types import ModelInfo

router = APIRouter()
BASE = "/admin/configurations"
PAGE_SIZE = 50
GLOBAL_SCOPE = "(global)"
"""The application filter's value for configurations without an application (never a valid name)."""
PARAM_FIELDS = (
    "temperature",
    "max_tokens",
    "top_p",
    "top_k",
    "presence_penalty",
    "frequency_penalty",
    "seed",
)
PRICE_FIELDS = ("input_price", "output_price", "cache_read_price", "cache_write_price")
LIMIT_FIELDS = ("context_length", "rpm_limit", "tpm_limit")
TEXT_FIELDS = ("slug", "name", "provider", "model", "base_url", "application", "stop")
MIN_FALLBACK_ROWS = 3

Viewer = Annotated[SessionUser, Depends(Needs("view-llm-configs"))]
Creator = Annotated[SessionUser, Depends(Needs("create-llm-configs"))]
Editor = Annotated[SessionUser, Depends(Needs("edit-llm-configs"))]
Deleter = Annotated[SessionUser, Depends(Needs("delete-llm-configs"))]
Tester = Annotated[SessionUser, Depends(Needs("test-llm-configs"))]
SpecT = TypeVar("SpecT", bound=BaseModel)


@dataclass(frozen=True, kw_only=True)
class ConfigurationForm:
    """What the form posted: the values as typed (to show again) and the key kept apart."""

    values: dict[str, Any]
    """Never holds the API key: a re-rendered form must not echo a secret."""
    fallbacks: list[str]
    api_key: str
    clear_api_key: bool


@dataclass(frozen=True, kw_only=True)
class TestOutcome:
    """A connection test as the page shows it."""

    ok: bool
    message: str
    latency_ms: int | None = None
    log_id: str | None = None
    model: str | None = None
    text: str = ""


# --- list -----------------------------------------------------------------------------------------


@router.get(BASE)
async def list_configurations(
    request: Request,
    user: Viewer,
    llm: Manager,
    pages: PageRenderer,
    q: Annotated[str, Query(max_length=200)] = "",
    provider: Annotated[str, Query(max_length=100)] = "",
    application: Annotated[str, Query(max_length=200)] = "",
    status: Annotated[str, Query(pattern="^(|active|inactive)$")] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    found = await llm.configurations.search(
        text=q.strip(),
        provider=provider or None,
        application=None if application == GLOBAL_SCOPE else application or None,
        global_only=application == GLOBAL_SCOPE,
        active={"active": True, "inactive": False}.get(status),
        offset=(page - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    filters = {"q": q, "provider": provider, "application": application, "status": status}
    pages_total = max(1, math.ceil(found.total / PAGE_SIZE))
    return pages.render(
        request,
        "configurations.html",
        {
            "configurations": found.items,
            "total": found.total,
            "filters": filters,
            "filtered": any(filters.values()),
            "providers": llm.configurations.provider_types(),
            "applications": await _application_names(llm),
            "global_scope": GLOBAL_SCOPE,
            "page": page,
            "pages_total": pages_total,
            "previous_url": _page_url(filters, page - 1) if page > 1 else None,
            "next_url": _page_url(filters, page + 1) if page < pages_total else None,
        },
    )


# --- create and edit ------------------------------------------------------------------------------


@router.get(f"{BASE}/new")
async def new_configuration(request: Request, user: Creator, llm: Manager, pages: PageRenderer) -> Response:
    values = {"provider": "demo", "model": "demo-chat", "is_active": True}
    return await _render_form(request, llm, pages, values=values, fallbacks=[])


@router.post(f"{BASE}/new")
async def create_configuration(
    request: Request, user: Creator, llm: Manager, pages: PageRenderer
) -> Response:
    form = read_form(await request.form())
    try:
        fields = form_fields(form, llm.configurations.provider_types(), creating=True)
        created = await llm.configurations.create(validated(ConfigurationCreate, fields))
    except (InvalidInputError, ConflictError) as error:
        return await _render_form(
            request, llm, pages, values=form.values, fallbacks=form.fallbacks, errors=form_errors(error)
        )
    await llm.services.activity.record(
        actor(request, user), "configuration.create", target=created.slug, detail=_summary(created)
    )
    return redirect(f"{BASE}/{created.slug}", flash=f"Configuration {created.slug} created.")


@router.get(f"{BASE}/{{slug}}/edit")
async def edit_configuration(
    request: Request, slug: str, user: Editor, llm: Manager, pages: PageRenderer
) -> Response:
    view = await llm.configurations.get(slug)
    return await _render_form(
        request, llm, pages, values=values_of(view), fallbacks=list(view.fallbacks), view=view
    )


@router.post(f"{BASE}/{{slug}}/edit")
async def update_configuration(
    request: Request, slug: str, user: Editor, llm: Manager, pages: PageRenderer
) -> Response:
    view = await llm.configurations.get(slug)
    form = read_form(await request.form())
    try:
        fields = form_fields(form, llm.configurations.provider_types(), creating=False)
        updated = await llm.configurations.update(view.slug, validated(ConfigurationUpdate, fields))
    except InvalidInputError as error:
        return await _render_form(
            request,
            llm,
            pages,
            values={**form.values, "slug": view.slug},
            fallbacks=form.fallbacks,
            view=view,
            errors=form_errors(error),
        )
    await llm.services.activity.record(
        actor(request, user),
        "configuration.update",
        target=updated.slug,
        detail=_changes(view, updated, key_entered=bool(form.api_key)),
    )
    return redirect(f"{BASE}/{updated.slug}", flash="Configuration saved.")


# --- detail and actions ---------------------------------------------------------------------------


@router.get(f"{BASE}/{{slug}}")
async def configuration_detail(
    request: Request, slug: str, user: Viewer, llm: Manager, pages: PageRenderer
) -> Response:
    view = await llm.configurations.get(slug)
    return pages.render(request, "configurations_detail.html", {"c": view, "test": None})


@router.post(f"{BASE}/{{slug}}/activate")
async def activate(request: Request, slug: str, user: Editor, llm: Manager) -> Response:
    view = await llm.configurations.update(slug, ConfigurationUpdate(is_active=True))
    await llm.services.activity.record(actor(request, user), "configuration.activate", target=view.slug)
    return redirect(f"{BASE}/{view.slug}", flash=f"{view.slug} is active.")


@router.post(f"{BASE}/{{slug}}/deactivate")
async def deactivate(request: Request, slug: str, user: Editor, llm: Manager) -> Response:
    view = await llm.configurations.update(slug, ConfigurationUpdate(is_active=False))
    await llm.services.activity.record(actor(request, user), "configuration.deactivate", target=view.slug)
    return redirect(f"{BASE}/{view.slug}", flash=f"{view.slug} is inactive; calls naming it are refused.")


@router.post(f"{BASE}/{{slug}}/default")
async def make_default(request: Request, slug: str, user: Editor, llm: Manager) -> Response:
    view = await llm.configurations.update(slug, ConfigurationUpdate(is_default=True))
    scope = f"application {view.application}" if view.application else "global scope"
    await llm.services.activity.record(
        actor(request, user), "configuration.default", target=view.slug, detail=scope
    )
    return redirect(f"{BASE}/{view.slug}", flash=f"{view.slug} is now the default for the {scope}.")


@router.post(f"{BASE}/{{slug}}/delete")
async def delete_configuration(request: Request, slug: str, user: Deleter, llm: Manager) -> Response:
    view = await llm.configurations.get(slug)
    await llm.configurations.delete(view.slug)
    await llm.services.activity.record(
        actor(request, user), "configuration.delete", target=view.slug, detail=_summary(view)
    )
    return redirect(BASE, flash=f"Configuration {view.slug} deleted.")


@router.post(f"{BASE}/{{slug}}/test")
async def test_connection(
    request: Request, slug: str, user: Tester, llm: Manager, pages: PageRenderer
) -> Response:
    """A tiny real call, recorded in the usage log; an upstream failure is a result, not an error page."""
    view = await llm.configurations.get(slug)
    try:
        result = await llm.test(view.slug)
    except (ProviderError, GuardRefusedError, InvalidInputError) as error:
        outcome = TestOutcome(ok=False, message=f"{type(error).__name__}: {error}")
    else:
        outcome = TestOutcome(
            ok=result.status == "ok",
            message=f"Answered with status {result.status}.",
            latency_ms=result.latency_ms,
            log_id=result.log_id,
            model=result.model,
            text=result.text,
        )
    await llm.services.activity.record(
        actor(request, user), "configuration.test", target=view.slug, detail="ok" if outcome.ok else "failed"
    )
    if request.headers.get("hx-request"):
        return pages.render(request, "configurations_test.html", {"test": outcome})
    return pages.render(request, "configurations_detail.html", {"c": view, "test": outcome})


@router.post(f"{BASE}/{{slug}}/models/refresh")
async def refresh_models(
    request: Request, slug: str, user: Editor, llm: Manager, pages: PageRenderer
) -> Response:
    """Ask the provider for its model list now; a provider that is down is a message, not a 500."""
    view = await llm.configurations.get(slug)
    models: list[ModelInfo] | None
    try:
        models = await llm.models(view.slug, refresh=True)
        message = f"Found {len(models)} model{'s' if len(models) != 1 else ''} at {view.provider_label}."
        failed = False
    except (ProviderError, InvalidInputError) as error:
        models = await llm.services.models.cached(view.slug)
        message, failed = f"Could not list models: {error}", True
    await llm.services.activity.record(
        actor(request, user), "configuration.models-refresh", target=view.slug, detail=message[:200]
    )
    if request.headers.get("hx-request"):
        return pages.render(
            request,
            "configurations_models.html",
            {"models": models or [], "models_message": message, "models_failed": failed},
        )
    return redirect(f"{BASE}/{view.slug}/edit", flash=message)


# --- form handling --------------------------------------------------------------------------------


def read_form(form: FormData) -> ConfigurationForm:
    """The posted fields as typed; the key goes apart so it is never shown again."""
    values: dict[str, Any] = {
        name: _text(form.get(name)) for name in (*TEXT_FIELDS, *PARAM_FIELDS, *PRICE_FIELDS, *LIMIT_FIELDS)
    }
    values["is_active"] = form.get("is_active") is not None
    values["is_default"] = form.get("is_default") is not None
    fallbacks = [slug for slug in (_text(item).strip() for item in form.getlist("fallbacks")) if slug]
    return ConfigurationForm(
        values=values,
        fallbacks=fallbacks,
        api_key=_text(form.get("api_key")).strip(),
        clear_api_key=form.get("clear_api_key") is not None,
    )


def form_fields(form: ConfigurationForm, providers: list[ProviderType], *, creating: bool) -> dict[str, Any]:
    """The service's fields from the form: empty inputs are unset, fields the provider does not
    take are dropped, and an empty key input leaves the stored key alone."""
    values = form.values
    provider_name = values["provider"].strip()
    provider = next((p for p in providers if p.name == provider_name), None)
    if provider is None:
        raise InvalidInputError("choose a provider", field="provider")
    fields: dict[str, Any] = {
        "name": values["name"].strip() or (values["slug"].strip() if creating else None),
        "provider": provider.name,
        "model": values["model"].strip(),
        "application": values["application"].strip(),
        "is_active": values["is_active"],
        "is_default": values["is_default"],
        "fallbacks": form.fallbacks,
        "default_params": parse_params(_params(values), field_prefix="default_params").as_dict(),
    }
    if creating:
        fields["slug"] = values["slug"].strip()
    if fields["name"] is None:
        raise InvalidInputError("name: give the configuration a name", field="name")
    base_url = values["base_url"].strip() if provider.takes_base_url else ""
    fields["base_url"] = base_url or provider.default_base_url or None
    if provider.takes_api_key and form.api_key:
        fields["api_key"] = form.api_key
    elif form.clear_api_key or not provider.takes_api_key:
        fields["api_key"] = ""
    for name in (*PRICE_FIELDS, *LIMIT_FIELDS):
        fields[name] = values[name].strip() or None
    return fields


def validated(model: type[SpecT], fields: Mapping[str, Any]) -> SpecT:
    """The service's model, with pydantic's complaint turned into an error naming the field."""
    try:
        return model.model_validate(dict(fields))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "form"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise InvalidInputError(f"{field}: {message}", field=field) from None


def form_errors(error: InvalidInputError | ConflictError) -> dict[str, str]:
    """`{form field: message}`; a default parameter's error sits beside that parameter's input,
    a taken slug beside the slug."""
    if isinstance(error, ConflictError):
        return {"slug": str(error)}
    if error.field and error.field.startswith("default_params."):
        name = error.field.removeprefix("default_params.").split(".")[0]
        return {name: str(error).removeprefix(f"{error.field}: ")}
    return field_errors(error, default="form")


def values_of(view: ConfigurationView) -> dict[str, Any]:
    """The edit form's starting values: the configuration as it is, without its key."""
    params = view.default_params
    price = view.price_override
    values: dict[str, Any] = {
        "slug": view.slug,
        "name": view.name,
        "provider": view.provider,
        "model": view.model,
        "base_url": view.base_url or "",
        "application": view.application or "",
        "is_active": view.is_active,
        "is_default": view.is_default,
        "stop": "\n".join(params.get("stop") or ()),
        "input_price": _shown(price.input if price else None),
        "output_price": _shown(price.output if price else None),
        "cache_read_price": _shown(price.cache_read if price else None),
        "cache_write_price": _shown(price.cache_write if price else None),
        "context_length": _shown(view.context_length),
        "rpm_limit": _shown(view.rpm_limit),
        "tpm_limit": _shown(view.tpm_limit),
    }
    values |= {name: _shown(params.get(name)) for name in PARAM_FIELDS}
    return values


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {name: values[name].strip() for name in PARAM_FIELDS if values[name].strip()}
    stops = [line for line in values["stop"].splitlines() if line]
    if stops:
        params["stop"] = stops
    return params


async def _render_form(
    request: Request,
    llm: Manager,
    pages: PageRenderer,
    *,
    values: Mapping[str, Any],
    fallbacks: list[str],
    view: ConfigurationView | None = None,
    errors: Mapping[str, str] | None = None,
) -> Response:
    own_slug = view.slug if view else None
    others = [c.slug for c in await llm.configurations.list_all() if c.slug != own_slug]
    providers = llm.configurations.provider_types()
    models = await llm.services.models.cached(view.slug) if view else None
    return pages.render(
        request,
        "configurations_form.html",
        {
            "c": view,
            "values": values,
            "errors": errors or {},
            "providers": providers,
            "provider_capabilities": {
                p.name: {
                    "takes_base_url": p.takes_base_url,
                    "takes_api_key": p.takes_api_key,
                    "requires_api_key": p.requires_api_key,
                    "default_base_url": p.default_base_url,
                }
                for p in providers
            },
            "applications": await _application_names(llm),
            "others": others,
            "fallback_rows": [*fallbacks, *[""] * max(MIN_FALLBACK_ROWS - len(fallbacks), 1)],
            "models": models or [],
            "models_message": None if models else "No model list yet: use “Refresh models”.",
            "models_failed": False,
        },
        status_code=422 if errors else 200,
    )


async def _application_names(llm: Manager) -> list[str]:
    return [application.name for application in await llm.applications.list_all()]


def _page_url(filters: Mapping[str, str], page: int) -> str:
    query = {name: value for name, value in filters.items() if value}
    if page > 1:
        query["page"] = str(page)
    return f"{BASE}?{urlencode(query)}" if query else BASE


def _summary(view: ConfigurationView) -> str:
    """For the activity log: what the configuration is, never its key."""
    scope = f" for {view.application}" if view.application else ""
    return f"{view.provider} {view.model}{scope}"


def _changes(before: ConfigurationView, after: ConfigurationView, *, key_entered: bool) -> str:
    """Which fields an edit changed: names only, and for the key just set, cleared or replaced."""
    compared = (
        "name",
        "provider",
        "model",
        "base_url",
        "application",
        "is_active",
        "is_default",
        "fallbacks",
        "default_params",
        "price_override",
        "context_length",
        "rpm_limit",
        "tpm_limit",
    )
    changed = [name for name in compared if getattr(before, name) != getattr(after, name)]
    if before.has_api_key != after.has_api_key:
        changed.append("api key " + ("set" if after.has_api_key else "cleared"))
    elif key_entered:
        changed.append("api key replaced")
    return ", ".join(changed) or "no changes"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _shown(value: object) -> str:
    return "" if value is None else str(value)
