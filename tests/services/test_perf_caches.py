"""The per-process caches of the hot path: token principals and applicable budgets.

Each is cleared at once in the process that makes a change, through Redis in every other
process, and otherwise expires within its TTL; budget settlements ride on the usage writer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import pytest
from sqlalchemy import update

from llm_manager.db.base import utcnow
from llm_manager.db.tables import ApiToken
from llm_manager.errors import BudgetExceededError, UnauthenticatedError
from llm_manager.manager import LLMManager
from llm_manager.services.budgets import BUDGETS_TTL, BudgetSpec
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.invalidation import TtlCache
from llm_manager.services.tokens import PRINCIPAL_TTL
from llm_manager.settings import Settings

PRICED = {"input_price": Decimal(1), "output_price": Decimal(1)}


async def _setup(llm: LLMManager) -> tuple[CallContext, str]:
    await llm.applications.create("shop")
    await llm.configurations.create(
        ConfigurationCreate(
            slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0}, **PRICED
        )
    )
    issued = await llm.tokens.create("shop")
    principal = await llm.tokens.authenticate(issued.secret)
    return principal.context(), issued.secret


async def _eventually(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until `check()` holds (polled), failing after `within` seconds."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < within, f"not within {within}s"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def _refused(llm: LLMManager, secret: str) -> bool:
    try:
        await llm.tokens.authenticate(secret)
    except UnauthenticatedError:
        return True
    return False


async def _blocked(llm: LLMManager, context: CallContext) -> bool:
    try:
        await llm.chat("demo", "hi", context=context, max_tokens=10)
    except BudgetExceededError:
        return True
    return False


def test_ttl_cache_expires_and_ignores_answers_loaded_before_a_clear() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(1.0, clock=lambda: now[0])
    cache.put("a", 1, generation=cache.generation)
    assert cache.get("a") == 1
    now[0] = 1.0
    assert cache.get("a") is None
    stale_generation = cache.generation
    cache.clear()
    cache.put("a", 2, generation=stale_generation)
    assert cache.get("a") is None


async def test_concurrent_misses_share_one_load() -> None:
    cache: TtlCache[str, int] = TtlCache(1.0)
    loads = 0
    release = asyncio.Event()

    async def load() -> int:
        nonlocal loads
        loads += 1
        await release.wait()
        return 7

    waiters = [asyncio.create_task(cache.get_or_load("a", load)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [7] * 20
    assert loads == 1
    assert await cache.get_or_load("a", load) == 7  # cached now
    assert loads == 1


async def test_an_answer_in_its_second_half_is_reloaded_in_the_background() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(1.0, clock=lambda: now[0])
    answers = iter([1, 2])

    async def load() -> int:
        return next(answers)

    assert await cache.get_or_load("a", load) == 1
    now[0] = 0.6  # still valid, past half its life: served at once, reloaded behind
    assert await cache.get_or_load("a", load) == 1
    await cache.aclose()
    assert cache.get("a") == 2
    now[0] = 1.5  # the reloaded answer lives a full TTL from its reload
    assert cache.get("a") == 2
    now[0] = 1.7
    assert cache.get("a") is None  # and nothing is served past its TTL


async def test_lookups_in_the_second_half_start_one_background_reload_between_them() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(1.0, clock=lambda: now[0])
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0)
        return loads

    assert await cache.get_or_load("a", load) == 1
    now[0] = 0.6
    # Two hundred requests served before the reload's task first runs (one loop pass, under load).
    answers = [await cache.get_or_load("a", load) for _ in range(200)]
    assert answers == [1] * 200
    await cache.aclose()
    assert loads == 2
    assert cache.get("a") == 2


async def test_an_answer_asked_for_is_reloaded_at_half_life_before_any_lookup_needs_it() -> None:
    cache: TtlCache[str, int] = TtlCache(0.2)
    loads = {"asked": 0, "idle": 0}

    def loader(key: str) -> Callable[[], Awaitable[int]]:
        async def load() -> int:
            loads[key] += 1
            return loads[key]

        return load

    assert await cache.get_or_load("asked", loader("asked")) == 1
    assert await cache.get_or_load("asked", loader("asked")) == 1  # asked for again: worth keeping warm
    assert await cache.get_or_load("idle", loader("idle")) == 1  # loaded, never asked for again
    await asyncio.sleep(0.15)  # past half life, with no lookup since: the timer did the reload
    assert loads == {"asked": 2, "idle": 1}
    await asyncio.sleep(0.1)  # the reloaded answer was not asked for before its own half life
    assert loads == {"asked": 2, "idle": 1}
    assert cache.get("asked") == 2
    assert cache.get("idle") is None  # left to expire
    await cache.aclose()


async def test_closing_a_cache_stops_its_reloads_ahead() -> None:
    cache: TtlCache[str, int] = TtlCache(0.1)
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        return loads

    await cache.get_or_load("a", load)
    await cache.get_or_load("a", load)
    await cache.aclose()
    await asyncio.sleep(0.08)
    assert loads == 1


async def test_a_background_reload_cancelled_before_it_ran_leaves_no_hanging_waiters() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(1.0, clock=lambda: now[0])

    async def load() -> int:
        return 5

    assert await cache.get_or_load("a", load) == 5
    now[0] = 0.6
    assert await cache.get_or_load("a", load) == 5  # starts the background reload
    for task in list(cache._refreshing):
        task.cancel()  # cancelled before its first step: its coroutine never runs
    now[0] = 1.5  # expired: the next lookup must load, not wait on the abandoned reload
    await asyncio.sleep(0)
    assert await asyncio.wait_for(cache.get_or_load("a", load), timeout=1.0) == 5


async def test_a_failed_load_fails_its_waiters_and_the_next_lookup_loads_again() -> None:
    cache: TtlCache[str, int] = TtlCache(1.0)
    release = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        raise UnauthenticatedError("invalid API token")

    waiters = [asyncio.create_task(cache.get_or_load("a", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(outcome, UnauthenticatedError) for outcome in outcomes)

    async def succeeding() -> int:
        return 1

    assert await cache.get_or_load("a", succeeding) == 1


async def test_a_cancelled_loader_lets_a_waiter_load_instead() -> None:
    cache: TtlCache[str, int] = TtlCache(1.0)
    started = asyncio.Event()

    async def hanging() -> int:
        started.set()
        await asyncio.Event().wait()
        return 0

    async def quick() -> int:
        return 2

    loader = asyncio.create_task(cache.get_or_load("a", hanging))
    await started.wait()
    waiter = asyncio.create_task(cache.get_or_load("a", quick))
    await asyncio.sleep(0)
    loader.cancel()  # the first caller hung up: the waiter must not fail with it
    assert await waiter == 2
    with pytest.raises(asyncio.CancelledError):
        await loader


async def test_last_used_at_is_written_with_the_usage_writers_next_batch(llm: LLMManager) -> None:
    await llm.applications.create("shop")
    issued = await llm.tokens.create("shop")
    before = utcnow()
    await llm.tokens.authenticate(issued.secret)
    await llm.services.writer.flush()
    used = (await llm.tokens.get(issued.token.prefix)).last_used_at
    assert used is not None
    assert before <= used <= utcnow()


async def test_a_revocation_applies_to_the_next_request_in_this_process(llm: LLMManager) -> None:
    _, secret = await _setup(llm)
    await llm.tokens.authenticate(secret)  # cached now
    await llm.tokens.revoke(secret[:13])
    with pytest.raises(UnauthenticatedError, match="revoked"):
        await llm.tokens.authenticate(secret)


async def test_a_change_made_elsewhere_applies_within_the_ttl(llm: LLMManager) -> None:
    """Another process on the same database without Redis: its change is seen within the TTL."""
    _, secret = await _setup(llm)
    await llm.tokens.authenticate(secret)
    async with llm.services.database.session() as session:
        await session.execute(update(ApiToken).values(revoked_at=utcnow()))
    waited = await _eventually(lambda: _refused(llm, secret), within=PRINCIPAL_TTL + 0.5)
    assert waited <= PRINCIPAL_TTL + 0.1


async def test_a_cached_token_still_expires_on_time(llm: LLMManager) -> None:
    _, secret = await _setup(llm)
    await llm.tokens.authenticate(secret)
    async with llm.services.database.session() as session:
        await session.execute(update(ApiToken).values(expires_at=utcnow()))
    llm.tokens._principals.clear()  # a cache loaded just before the expiry
    with pytest.raises(UnauthenticatedError, match="expired"):
        await llm.tokens.authenticate(secret)


async def test_a_budget_set_in_this_process_applies_to_the_next_call(llm: LLMManager) -> None:
    context, _ = await _setup(llm)
    assert not await _blocked(llm, context)  # "no budget" is cached now
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_tokens=1))
    assert await _blocked(llm, context)
    [budget] = await llm.budgets.list_all()
    await llm.budgets.delete(budget.id)
    assert not await _blocked(llm, context)


async def test_settlements_are_read_back_and_sequential_calls_see_real_costs(llm: LLMManager) -> None:
    """Settled through the usage writer, yet calls one after another fit as if settled at once."""
    context, _ = await _setup(llm)
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_tokens=60))
    results = [await llm.chat("demo", "hi", context=context, max_tokens=10) for _ in range(3)]
    [budget] = await llm.budgets.list_all()
    assert budget.spent_tokens == sum(result.usage.total_tokens for result in results)
    assert (budget.reserved_tokens, budget.reserved_usd) == (0, Decimal(0))


@pytest.fixture
async def two_processes(
    settings: Settings, redis_url: str, redis_prefix: str
) -> AsyncIterator[list[LLMManager]]:
    """Two managers on one database and one Redis, as two server processes would be."""
    shared = settings.model_copy(update={"redis_url": redis_url, "redis_prefix": redis_prefix})
    async with LLMManager.open(shared) as first, LLMManager.open(shared) as second:
        yield [first, second]


async def test_through_redis_a_revocation_reaches_the_other_process_at_once(
    two_processes: list[LLMManager],
) -> None:
    first, second = two_processes
    _, secret = await _setup(first)
    await second.tokens.authenticate(secret)
    await first.tokens.revoke(secret[:13])
    assert await _eventually(lambda: _refused(second, secret), within=PRINCIPAL_TTL) < 0.5


async def test_through_redis_a_budget_reaches_the_other_process_at_once(
    two_processes: list[LLMManager],
) -> None:
    first, second = two_processes
    context, _ = await _setup(first)
    assert not await _blocked(second, context)
    await first.budgets.set(BudgetSpec(application="shop", period="day", limit_tokens=1))
    assert await _eventually(lambda: _blocked(second, context), within=BUDGETS_TTL) < 0.5
