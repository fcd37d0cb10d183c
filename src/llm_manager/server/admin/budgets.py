"""Admin pages: budgets — list, set (create or replace), delete, alerts, and the explain view.

Everything here goes through `BudgetService` exactly as `/api/budgets` and the CLI do; the form
is a `BudgetSpec`, so its validation errors become field errors beside the inputs.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from llm_manager.errors import InvalidInputError, NotFoundError
from llm_manager.manager import LLMManager
from llm_manager.server.admin._pages import PageRenderer, field_errors, redirect
from llm_manager.server.admin._session import Needs, actor
from llm_manager.server.deps import Manager
from llm_manager.services.budgets import BudgetSpec, BudgetView, Explanation
from llm_manager.services.configurations import ResolvedConfiguration
from llm_manager.services.web_sessions import SessionUser
from llm_manager.types import GenerationParams

router = APIRouter()
PERMISSION = "manage-llm-providers"
ManagesProviders = Annotated[SessionUser, Depends(Needs(PERMISSION))]
PERIODS = (("day", "Per day (UTC)"), ("month", "Per month (UTC)"), ("total", "In total"))
_FORM_FIELDS = ("application", "configuration", "token", "period", "limit_usd", "limit_tokens")
EVENTS_SHOWN = 50


@router.get("/admin/budgets")
async def budgets_page(
    request: Request, user: ManagesProviders, llm: Manager, pages: PageRenderer
) -> Response:
    return pages.render(
        request, "budgets.html", await _page_context(llm, form={"period": "month", "hard": True})
    )


@router.post("/admin/budgets")
async def set_budget(
    request: Request,
    user: ManagesProviders,
    llm: Manager,
    pages: PageRenderer,
    application: Annotated[str, Form()] = "",
    configuration: Annotated[str, Form()] = "",
    token: Annotated[str, Form()] = "",
    period: Annotated[str, Form()] = "",
    limit_usd: Annotated[str, Form()] = "",
    limit_tokens: Annotated[str, Form()] = "",
    hard: Annotated[str, Form()] = "",
) -> Response:
    """Create the budget for a scope and period, or replace its limits (what was spent is kept)."""
    form: dict[str, Any] = {
        "application": application.strip(),
        "configuration": configuration.strip(),
        "token": token.strip(),
        "period": period,
        "limit_usd": limit_usd.strip(),
        "limit_tokens": limit_tokens.strip(),
        "hard": bool(hard),
    }
    try:
        spec = BudgetSpec.model_validate({key: value for key, value in form.items() if value != ""})
        view = await llm.budgets.set(spec)
    except ValidationError as invalid:
        errors = spec_errors(invalid)
    except InvalidInputError as invalid:
        errors = field_errors(invalid, default="application")
    except NotFoundError as missing:
        errors = {"application": str(missing)}
    else:
        await llm.services.activity.record(
            actor(request, user), "budget.set", target=view.scope, detail=describe(view)
        )
        return redirect("/admin/budgets", flash=f"Budget set: {view.scope}, {describe(view)}.")
    context = await _page_context(llm, form=form, errors=errors)
    return pages.render(request, "budgets.html", context, status_code=422)


@router.post("/admin/budgets/{budget_id}/delete")
async def delete_budget(budget_id: int, request: Request, user: ManagesProviders, llm: Manager) -> Response:
    view = await llm.budgets.get(budget_id)
    await llm.budgets.delete(budget_id)
    await llm.services.activity.record(
        actor(request, user), "budget.delete", target=view.scope, detail=describe(view)
    )
    return redirect("/admin/budgets", flash=f"Budget deleted: {view.scope}, {view.period}.")


@router.get("/admin/budgets/explain")
async def explain_page(
    request: Request,
    user: ManagesProviders,
    llm: Manager,
    pages: PageRenderer,
    application: Annotated[str, Query()] = "",
    configuration: Annotated[str, Query()] = "",
    token: Annotated[str, Query()] = "",
    max_tokens: Annotated[str, Query()] = "",
) -> Response:
    """Which budgets apply to a caller, and would its next call go through? Nothing is reserved."""
    form = {
        "application": application,
        "configuration": configuration,
        "token": token,
        "max_tokens": max_tokens,
    }
    explanation: Explanation | None = None
    errors: dict[str, str] = {}
    if application:
        try:
            explanation = await explain(llm, application, configuration, token.strip(), max_tokens.strip())
        except InvalidInputError as invalid:
            errors = field_errors(invalid, default="application")
        except NotFoundError as missing:
            field = "configuration" if str(missing).startswith("configuration") else "application"
            errors = {field: str(missing)}
    context = {
        "form": form,
        "errors": errors,
        "explanation": explanation,
        "application_options": [(app.name, app.name) for app in await llm.applications.list_all()],
        "configuration_options": [(item.slug, item.slug) for item in await llm.configurations.list_all()],
    }
    return pages.render(request, "budgets_explain.html", context, status_code=422 if errors else 200)


async def explain(
    llm: LLMManager, application: str, configuration: str, token: str, max_tokens: str
) -> Explanation:
    """Resolve the configuration as the application would see it, so the ceiling is priced like a call's.

    `max_tokens` stands in for the call's own `max_tokens` (it replaces the configuration's default).
    """
    resolved = None
    if configuration:
        app = await llm.applications.get(application)
        resolved = (await llm.configurations.resolve_chain(configuration, application_id=app.id))[0]
        if max_tokens:
            resolved = with_max_tokens(resolved, max_tokens)
    elif max_tokens:
        raise InvalidInputError("max_tokens: pick a configuration to price the call", field="max_tokens")
    return await llm.budgets.explain(application, configuration=resolved, token=token or None)


def with_max_tokens(configuration: ResolvedConfiguration, max_tokens: str) -> ResolvedConfiguration:
    try:
        params = GenerationParams.model_validate(
            {**configuration.params.model_dump(), "max_tokens": max_tokens}
        )
    except ValidationError:
        raise InvalidInputError(
            "max_tokens: a whole number from 1 to 1,000,000", field="max_tokens"
        ) from None
    return dataclasses.replace(configuration, params=params)


def spec_errors(invalid: ValidationError) -> dict[str, str]:
    """Pydantic's errors as `{field: message}`; a whole-form rule is shown by the field it concerns."""
    errors: dict[str, str] = {}
    for error in invalid.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        location = [str(part) for part in error["loc"]]
        field = location[0] if location and location[0] in _FORM_FIELDS else _field_of_rule(message)
        errors.setdefault(field, message)
    return errors


def _field_of_rule(message: str) -> str:
    return "configuration" if "not both" in message else "limit_usd"


def describe(view: BudgetView) -> str:
    limits = []
    if view.limit_usd is not None:
        limits.append(f"${view.limit_usd.normalize():f}")
    if view.limit_tokens is not None:
        limits.append(f"{view.limit_tokens:,} tokens")
    period = {"day": "per day", "month": "per month", "total": "in total"}[view.period]
    return f"{' / '.join(limits)} {period}{'' if view.hard else ' (soft)'}"


async def _page_context(
    llm: LLMManager, *, form: dict[str, Any], errors: dict[str, str] | None = None
) -> dict[str, Any]:
    budgets = await llm.budgets.list_all()
    applications = await llm.applications.list_all()
    configurations = await llm.configurations.list_all()
    return {
        "budgets": budgets,
        "scopes": {view.id: view.scope for view in budgets},
        "events": await llm.budgets.events(limit=EVENTS_SHOWN),
        "application_options": [(app.name, app.name) for app in applications],
        "configuration_options": [(item.slug, item.slug) for item in configurations],
        "periods": PERIODS,
        "form": form,
        "errors": errors or {},
    }
