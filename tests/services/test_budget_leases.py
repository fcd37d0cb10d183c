"""Budget leases: a process reserves room for many calls at once, and never more than the budget allows.

Every test reads the database itself (windows and lease rows), so what is asserted is what other
processes would see.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from llm_manager.db.base import utcnow
from llm_manager.db.tables import BudgetLease, BudgetWindow
from llm_manager.errors import BadRequestError, BudgetExceededError
from llm_manager.manager import LLMManager
from llm_manager.services import budget_leases
from llm_manager.services.budget_leases import LEASE_CALLS, LEASE_SHARE
from llm_manager.services.budget_windows import nanos, window_start
from llm_manager.services.budgets import BudgetSpec
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.lease_rows import reclaim_expired
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from tests.services.budget_helpers import MAX_TOKENS, PRICED, budget_window, demo_budget_setup, lease_rows


async def _call(llm: LLMManager, context: CallContext) -> bool:
    try:
        await llm.chat("demo", "hi", context=context, max_tokens=MAX_TOKENS)
    except BudgetExceededError:
        return False
    return True


async def test_one_lease_covers_many_calls_and_reads_see_only_real_spend(llm: LLMManager) -> None:
    context, ceiling, _ = await demo_budget_setup(llm)
    assert ceiling.usd is not None
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=Decimal(1)))
    results = [await llm.chat("demo", "hi", context=context, max_tokens=MAX_TOKENS) for _ in range(5)]
    await llm.services.writer.flush()

    [row] = await lease_rows(llm)  # one lease row, topped up once for all five calls
    window = await budget_window(llm)
    assert window.reserved_usd == ceiling.usd * LEASE_CALLS - ceiling.usd * 5  # what is still free
    assert row.usd_nanos == nanos(window.reserved_usd)
    assert row.expires_at > utcnow()

    [budget] = await llm.budgets.list_all()  # a read gives the free part back first
    assert budget.spent_usd == sum(result.cost or 0 for result in results)
    assert (budget.reserved_usd, budget.reserved_tokens) == (Decimal(0), 0)


async def test_a_nearly_spent_budget_is_reserved_call_by_call(llm: LLMManager) -> None:
    context, ceiling, cost = await demo_budget_setup(llm)
    assert ceiling.usd is not None
    limit = ceiling.usd * (LEASE_CALLS * LEASE_SHARE - 1)  # one ceiling short of room for a lease
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=limit))
    async with llm.stream("demo", "hi", context=context, max_tokens=MAX_TOKENS) as stream:
        await anext(stream)
        assert (await budget_window(llm)).reserved_usd == ceiling.usd  # exactly this call's ceiling
        async for _ in stream:
            pass
    await llm.services.writer.flush()
    window = await budget_window(llm)
    assert (window.reserved_usd, window.spent_usd) == (Decimal(0), cost)


async def test_calls_in_flight_never_exceed_the_limit(llm: LLMManager) -> None:
    context, ceiling, cost = await demo_budget_setup(llm)
    assert ceiling.usd is not None
    calls_in_budget = 30
    limit = ceiling.usd * calls_in_budget
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=limit))
    outcomes = await asyncio.gather(*(_call(llm, context) for _ in range(200)))
    [budget] = await llm.budgets.list_all()
    served = sum(outcomes)
    assert calls_in_budget <= served < 200  # every ceiling that fits is served; then calls are refused
    assert budget.spent_usd == cost * served <= limit
    assert budget.reserved_usd == 0


async def test_a_lowered_limit_stops_the_lease_at_once(llm: LLMManager) -> None:
    context, ceiling, cost = await demo_budget_setup(llm)
    assert ceiling.usd is not None
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=Decimal(1)))
    assert await _call(llm, context)  # leases room for LEASE_CALLS calls
    await llm.budgets.set(
        BudgetSpec(application="shop", period="day", limit_usd=cost + ceiling.usd - Decimal("1e-9"))
    )
    assert not await _call(llm, context)  # the lease's room was given back, not spent
    [budget] = await llm.budgets.list_all()
    assert budget.spent_usd == cost


async def test_a_failed_call_gives_its_ceiling_back_to_the_lease(
    llm: LLMManager, upstream: FakeUpstream
) -> None:
    context, _, _ = await demo_budget_setup(llm)
    upstream.add("POST", "/v1/chat/completions", Reply.json({"error": {"message": "bad"}}, status=400))
    await llm.configurations.create(
        ConfigurationCreate(
            slug="broken", provider="openai-compatible", model="m", base_url=f"{upstream.url}/v1", **PRICED
        )
    )
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=Decimal(1)))
    assert await _call(llm, context)
    await llm.services.writer.flush()
    before = await budget_window(llm)
    with pytest.raises(BadRequestError):
        await llm.chat("broken", "hi", context=context, max_tokens=MAX_TOKENS)
    await llm.services.writer.flush()
    after = await budget_window(llm)
    assert (after.spent_usd, after.reserved_usd) == (before.spent_usd, before.reserved_usd)
    [budget] = await llm.budgets.list_all()
    assert budget.reserved_usd == 0  # the released ceiling went back to the lease, then to the window


async def test_idle_leases_are_given_back_and_their_rows_deleted(
    llm: LLMManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget_leases, "LEASE_IDLE", 0.05)
    monkeypatch.setattr(budget_leases, "_SWEEP_EVERY", 0.02)
    context, _, _ = await demo_budget_setup(llm)
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=Decimal(1)))
    assert await _call(llm, context)
    await llm.services.writer.flush()
    for _ in range(200):
        if not await lease_rows(llm):
            break
        await asyncio.sleep(0.02)
    assert await lease_rows(llm) == []
    window = await budget_window(llm)
    assert (window.reserved_usd, window.reserved_tokens) == (Decimal(0), 0)


async def test_an_expired_lease_of_a_dead_process_is_reclaimed(llm: LLMManager) -> None:
    context, ceiling, _ = await demo_budget_setup(llm)
    assert ceiling.usd is not None
    budget = await llm.budgets.set(
        BudgetSpec(application="shop", period="day", limit_usd=ceiling.usd * 3, limit_tokens=10_000)
    )
    start = window_start("day", utcnow())
    dead_usd = nanos(ceiling.usd * 3)  # a crashed process held the whole budget
    async with llm.services.database.session() as session:
        await session.execute(
            insert(BudgetWindow).values(budget_id=budget.id, window_start=start, reserved_usd=ceiling.usd * 3)
        )
        await session.execute(
            insert(BudgetLease).values(
                id="dead",
                budget_id=budget.id,
                window_start=start,
                usd_nanos=dead_usd,
                tokens=0,
                holder="gone:1",
                expires_at=utcnow() + timedelta(minutes=1),
            )
        )
    assert not await _call(llm, context)  # still alive: its hold counts
    async with llm.services.database.session() as session:
        await session.execute(update(BudgetLease).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert await _call(llm, context)  # expired: reclaimed, and the call fits
    async with llm.services.database.session() as session:
        assert await session.scalar(select(func.count()).where(BudgetLease.id == "dead")) == 0


async def test_a_settlement_after_its_lease_was_reclaimed_does_not_release_twice(llm: LLMManager) -> None:
    context, ceiling, cost = await demo_budget_setup(llm)
    assert ceiling.usd is not None
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=Decimal(1)))
    async with llm.stream("demo", "hi", context=context, max_tokens=MAX_TOKENS) as stream:
        await anext(stream)
        # This process stalled past the lease's expiry and another process reclaimed it.
        async with llm.services.database.session() as session:
            await session.execute(update(BudgetLease).values(expires_at=utcnow() - timedelta(seconds=1)))
        await reclaim_expired(llm.services.database)
        assert (await budget_window(llm)).reserved_usd == 0
        async for _ in stream:
            pass
    await llm.services.writer.flush()
    window = await budget_window(llm)
    assert (window.spent_usd, window.reserved_usd) == (cost, Decimal(0))  # booked, not released twice
    assert await _call(llm, context)  # the lost lease is replaced by a new one


async def test_two_processes_leasing_together_stay_within_the_budget(
    two_processes: list[LLMManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget_leases, "LEASE_CALLS", 5)
    monkeypatch.setattr(budget_leases, "LEASE_SHARE", 4)
    first, second = two_processes
    context, ceiling, cost = await demo_budget_setup(first)
    assert ceiling.usd is not None
    calls_in_budget = 5 * 4 * 3  # leases at first, call by call at the end
    limit = ceiling.usd * calls_in_budget
    await first.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=limit))

    async def burst(llm: LLMManager) -> int:
        served = 0
        for _ in range(calls_in_budget // 5 + 2):  # each could spend the whole budget alone
            served += sum(await asyncio.gather(*(_call(llm, context) for _ in range(5))))
        return served

    served = await asyncio.gather(burst(first), burst(second))
    for llm in two_processes:
        await llm.services.writer.flush()
        await llm.budgets.ledger.give_back()
    window = await budget_window(first)
    assert window.spent_usd == cost * sum(served) <= limit
    assert sum(served) >= calls_in_budget  # nothing held back by the other's lease at the end
    assert (window.reserved_usd, window.reserved_tokens) == (Decimal(0), 0)


async def test_a_lease_is_topped_up_before_it_runs_dry(
    llm: LLMManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls never queue behind a top-up while the budget has room: it happens in the background."""
    monkeypatch.setattr(budget_leases, "LEASE_CALLS", 8)
    context, _, _ = await demo_budget_setup(llm)
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=Decimal(1)))
    ledger = llm.budgets.ledger
    slow_paths = 0
    reserve_slowly = ledger._reserve_slowly

    async def counting(holds: Any) -> Any:
        nonlocal slow_paths
        slow_paths += 1
        return await reserve_slowly(holds)

    monkeypatch.setattr(ledger, "_reserve_slowly", counting)
    for _ in range(40):
        assert await _call(llm, context)
        # Real requests leave the background top-up time to finish; a fixed sleep here did not,
        # on a slow machine against PostgreSQL. Wait for it (a call never awaits it).
        if (topping_up := ledger._topping_up) is not None:
            await topping_up
    assert slow_paths == 1  # only the very first call, before any lease existed
