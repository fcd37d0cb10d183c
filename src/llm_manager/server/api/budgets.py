"""`/api/budgets`: spend limits per application (optionally per configuration or token).

A management token sets and reads its own application's budgets; another application's budget
is not found. `explain` answers "why was my call refused, and what is left?" before the next call.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from llm_manager.server.api._scope import application_name
from llm_manager.server.api.schemas import BudgetEventPublic, BudgetPublic, ExplanationPublic, ListOf
from llm_manager.server.auth import ManagementCaller
from llm_manager.server.deps import Manager
from llm_manager.services.budgets import BudgetSpec

router = APIRouter(prefix="/budgets", tags=["budgets"])


@router.put("", summary="Set a budget")
async def set_budget(body: BudgetSpec, llm: Manager, caller: ManagementCaller) -> BudgetPublic:
    """Creates the budget for this scope (application, configuration or token) and period, or
    replaces its limits; what was already spent in the current period is kept."""
    view = await llm.budgets.set(body, application_id=caller.scope())
    return BudgetPublic.model_validate(view)


@router.get("", summary="List budgets")
async def list_budgets(llm: Manager, caller: ManagementCaller) -> ListOf[BudgetPublic]:
    views = await llm.budgets.list_all(application_id=caller.scope())
    return ListOf(data=[BudgetPublic.model_validate(view) for view in views])


@router.get("/explain", summary="Explain which budgets apply to a caller and what is left")
async def explain_budgets(
    llm: Manager,
    caller: ManagementCaller,
    application: Annotated[
        str | None, Query(description="Application name; defaults to the caller's own.")
    ] = None,
    configuration: Annotated[
        str | None, Query(description="Configuration slug: prices the next call's ceiling.")
    ] = None,
    token: Annotated[str | None, Query(description="Token prefix, for token-scoped budgets.")] = None,
) -> ExplanationPublic:
    """Every budget that applies, with what is spent, reserved and left, and whether the next
    call (its configuration's default `max_tokens` over a short prompt) would be refused."""
    name = application_name(caller, application)
    resolved = None
    if configuration:
        app = await llm.applications.get(name)
        chain = await llm.services.configurations.resolve_chain(configuration, application_id=app.id)
        resolved = chain[0]
    explanation = await llm.budgets.explain(
        name, configuration=resolved, token=token, application_id=caller.scope()
    )
    return ExplanationPublic.model_validate(explanation)


@router.get("/events", summary="List budget alerts")
async def list_budget_events(
    llm: Manager,
    caller: ManagementCaller,
    budget_id: Annotated[int | None, Query(description="Only this budget's alerts.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ListOf[BudgetEventPublic]:
    """Newest first: each budget window records crossing 50, 80 and 100 % once."""
    events = await llm.budgets.events(application_id=caller.scope(), budget_id=budget_id, limit=limit)
    return ListOf(data=[BudgetEventPublic.model_validate(event) for event in events])


@router.get("/{budget_id}", summary="Get a budget")
async def get_budget(budget_id: int, llm: Manager, caller: ManagementCaller) -> BudgetPublic:
    return BudgetPublic.model_validate(await llm.budgets.get(budget_id, application_id=caller.scope()))


@router.delete("/{budget_id}", status_code=204, summary="Delete a budget")
async def delete_budget(budget_id: int, llm: Manager, caller: ManagementCaller) -> Response:
    await llm.budgets.delete(budget_id, application_id=caller.scope())
    return Response(status_code=204)
