"""What the budget tests share: a priced demo configuration, and the rows other processes would read."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from llm_manager.db.tables import BudgetLease, BudgetWindow
from llm_manager.manager import LLMManager
from llm_manager.services.budget_windows import Ceiling
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.token_bounds import prompt_token_bound
from llm_manager.types import Message

PRICED = {"input_price": Decimal(1), "output_price": Decimal(1)}
"""$1 per million tokens both ways."""
MAX_TOKENS = 10
"""The demo model uses exactly `max_tokens` completion tokens."""


async def demo_budget_setup(llm: LLMManager) -> tuple[CallContext, Ceiling, Decimal]:
    """The caller, what each call of "hi" holds, and what it really costs (the demo counts "hi" as 1 token)."""
    app = await llm.applications.create("shop")
    await llm.configurations.create(
        ConfigurationCreate(
            slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0}, **PRICED
        )
    )
    resolved = (await llm.configurations.resolve_chain("demo", application_id=app.id))[0]
    prompt = prompt_token_bound([Message(role="user", content="hi")])
    ceiling = llm.budgets.ceiling(resolved, prompt_tokens=prompt, params_max=MAX_TOKENS)
    cost = llm.budgets.ceiling(resolved, prompt_tokens=1, params_max=MAX_TOKENS).usd
    assert ceiling.usd is not None
    assert cost is not None
    assert cost < ceiling.usd
    return CallContext(application_id=app.id), ceiling, cost


async def budget_window(llm: LLMManager) -> BudgetWindow:
    """The one budget window in the database."""
    async with llm.services.database.session() as session:
        window: BudgetWindow | None = await session.scalar(select(BudgetWindow))
        assert window is not None
        return window


async def lease_rows(llm: LLMManager) -> list[BudgetLease]:
    async with llm.services.database.session() as session:
        return list((await session.scalars(select(BudgetLease))).all())
