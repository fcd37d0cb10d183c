"""Budgets hold under concurrency and on every path; soft budgets alert; explain says why."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from llm_manager.errors import BudgetExceededError
from llm_manager.manager import LLMManager
from llm_manager.services.budgets import BudgetSpec, resets_at, window_start
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.token_bounds import prompt_token_bound
from llm_manager.services.tokens import IssuedToken
from llm_manager.types import Message

# $1 per million tokens both ways: a call of 5 prompt + 10 completion tokens costs $0.000015.
PRICED = {"input_price": Decimal(1), "output_price": Decimal(1)}


async def _setup(llm: LLMManager, **options: object) -> CallContext:
    app = await llm.applications.create("shop")
    await llm.configurations.create(
        ConfigurationCreate(
            slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0, **options}, **PRICED
        )
    )
    return CallContext(application_id=app.id)


async def _window(llm: LLMManager) -> tuple[Decimal, int, Decimal, int]:
    [budget] = await llm.budgets.list_all()
    return budget.spent_usd, budget.spent_tokens, budget.reserved_usd, budget.reserved_tokens


async def test_concurrent_calls_stay_within_the_budget(llm: LLMManager) -> None:
    context = await _setup(llm, delay_ms=5)
    ceiling = llm.budgets.ceiling(
        (await llm.configurations.resolve_chain("demo", application_id=context.application_id))[0],
        prompt_tokens=prompt_token_bound([Message(role="user", content="hi")]),
        params_max=10,
    )
    assert ceiling.usd is not None
    limit = ceiling.usd * 10
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=limit))

    async def call() -> bool:
        try:
            await llm.chat("demo", "hi", context=context, max_tokens=10)
        except BudgetExceededError:
            return False
        return True

    outcomes = await asyncio.gather(*(call() for _ in range(60)))
    spent, _, reserved, reserved_tokens = await _window(llm)
    assert reserved == 0
    assert reserved_tokens == 0
    assert spent <= limit + ceiling.usd
    assert sum(outcomes) >= 10  # real calls cost less than their ceiling, so at least 10 fit
    assert not all(outcomes)


@pytest.mark.parametrize("path", ["chat", "stream", "embed"])
async def test_every_path_is_refused_once_the_budget_is_spent(llm: LLMManager, path: str) -> None:
    context = await _setup(llm)
    await llm.budgets.set(BudgetSpec(application="shop", period="month", limit_tokens=5))
    with pytest.raises(BudgetExceededError) as refused:
        if path == "chat":
            await llm.chat("demo", "hello there", context=context, max_tokens=50)
        elif path == "stream":
            async with llm.stream("demo", "hello there", context=context, max_tokens=50) as stream:
                async for _ in stream:
                    pass
        else:
            await llm.embed("demo", ["a long text " * 10], context=context)
    assert refused.value.retry_after is not None
    assert refused.value.retry_after > 0
    assert "monthly budget of 5 tokens" in str(refused.value)
    assert (await llm.usage.list_page()).rows == []  # refused before any provider was called


async def test_settle_books_the_real_cost_and_release_returns_the_hold(llm: LLMManager) -> None:
    context = await _setup(llm)
    await llm.budgets.set(BudgetSpec(application="shop", period="total", limit_usd=Decimal(1)))
    result = await llm.chat("demo", "hi", context=context, max_tokens=3)
    spent, spent_tokens, reserved, reserved_tokens = await _window(llm)
    assert spent == result.cost
    assert spent_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert (reserved, reserved_tokens) == (Decimal(0), 0)


async def test_unpriced_configuration_under_a_usd_budget_is_refused_with_a_reason(llm: LLMManager) -> None:
    app = await llm.applications.create("shop")
    await llm.configurations.create(
        ConfigurationCreate(
            slug="local",
            provider="openai-compatible",
            model="my-private-model",
            base_url="http://127.0.0.1:9/v1",
        )
    )
    context = CallContext(application_id=app.id)
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=Decimal(5)))
    with pytest.raises(BudgetExceededError, match="has no price"):
        await llm.chat("local", "hi", context=context)
    explanation = await llm.budgets.explain(
        "shop", configuration=(await llm.configurations.resolve_chain("local", application_id=app.id))[0]
    )
    assert not explanation.allowed
    assert "price override" in (explanation.checks[0].reason or "")


async def test_soft_budget_never_refuses_and_records_each_threshold_once(llm: LLMManager) -> None:
    context = await _setup(llm)
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_tokens=40, hard=False))
    for _ in range(6):
        await llm.chat("demo", "hi", context=context, max_tokens=10)
    events = await llm.budgets.events()
    assert sorted(event.threshold for event in events) == [50, 80, 100]
    _, spent_tokens, *_ = await _window(llm)
    assert spent_tokens > 40


async def test_token_and_configuration_budgets_apply_only_to_their_scope(llm: LLMManager) -> None:
    context = await _setup(llm)
    await llm.configurations.create(
        ConfigurationCreate(
            slug="other", provider="demo", model="demo-chat", options={"delay_ms": 0}, **PRICED
        )
    )
    issued: IssuedToken = await llm.tokens.create("shop")
    await llm.budgets.set(BudgetSpec(application="shop", configuration="other", period="day", limit_tokens=1))
    await llm.budgets.set(
        BudgetSpec(application="shop", token=issued.token.prefix, period="day", limit_tokens=1)
    )
    await llm.chat("demo", "hi", context=context, max_tokens=2)  # neither budget applies
    with pytest.raises(BudgetExceededError):
        await llm.chat("other", "hi", context=context, max_tokens=2)
    principal = await llm.tokens.authenticate(issued.secret)
    with pytest.raises(BudgetExceededError):
        await llm.chat("demo", "hi", context=principal.context(), max_tokens=2)


async def test_setting_a_scope_again_replaces_its_limits_and_keeps_spend(llm: LLMManager) -> None:
    context = await _setup(llm)
    first = await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_tokens=1000))
    await llm.chat("demo", "hi", context=context, max_tokens=3)
    second = await llm.budgets.set(
        BudgetSpec(application="shop", period="day", limit_tokens=2000, hard=False)
    )
    assert second.id == first.id
    assert second.limit_tokens == 2000
    assert not second.hard
    assert second.spent_tokens > 0


async def test_explain_lists_limits_what_is_left_and_the_next_call(llm: LLMManager) -> None:
    context = await _setup(llm)
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_tokens=100))
    await llm.budgets.set(BudgetSpec(application="shop", period="month", limit_usd=Decimal("0.5")))
    await llm.chat("demo", "hi", context=context, max_tokens=3)
    configuration = (await llm.configurations.resolve_chain("demo", application_id=context.application_id))[0]
    explanation = await llm.budgets.explain("shop", configuration=configuration)
    assert explanation.configuration == "demo"
    assert explanation.next_call_ceiling is not None
    assert explanation.next_call_ceiling.tokens == 4096  # no max_tokens set on the configuration
    by_period = {check.budget.period: check for check in explanation.checks}
    assert by_period["day"].blocks_next_call  # 4,096 tokens may not fit in what is left of 100
    assert by_period["day"].budget.remaining_tokens is not None
    assert 0 < by_period["day"].budget.remaining_tokens < 100
    assert not by_period["month"].blocks_next_call
    assert not explanation.allowed


def test_windows_and_resets_are_utc_calendar_periods() -> None:
    now = datetime(2026, 2, 28, 23, 30, tzinfo=UTC)
    assert window_start("day", now) == date(2026, 2, 28)
    assert window_start("month", now) == date(2026, 2, 1)
    assert resets_at("day", date(2026, 2, 28)) == datetime(2026, 3, 1, tzinfo=UTC)
    assert resets_at("month", date(2026, 12, 1)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert resets_at("total", window_start("total", now)) is None
