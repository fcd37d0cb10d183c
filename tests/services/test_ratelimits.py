"""Rate limits: the counters (in memory and in Redis, same tests) and the guard over them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
import redis.asyncio

from llm_manager.errors import RateLimitExceededError
from llm_manager.services.calls import CallContext, ChatCall
from llm_manager.services.configurations import ResolvedConfiguration
from llm_manager.services.ratelimits import (
    MemoryRateCounter,
    RateCheck,
    RateCounter,
    RateLimitGuard,
    RateRefusal,
    RedisRateCounter,
)
from llm_manager.types import GenerationParams, Message, RateLimits, Usage


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def redis_target(request: pytest.FixtureRequest) -> tuple[str, str] | None:
    """None for the memory counter; the Redis URL and this test's key prefix otherwise."""
    if request.param == "memory":
        return None
    return request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")


@pytest.fixture
async def counter(redis_target: tuple[str, str] | None) -> AsyncIterator[RateCounter]:
    if redis_target is None:
        memory = MemoryRateCounter()
        yield memory
        await memory.aclose()
        return
    url, prefix = redis_target
    client = redis.asyncio.Redis.from_url(url)
    shared = RedisRateCounter(client, prefix)
    try:
        yield shared
    finally:
        await shared.aclose()
        await client.aclose()


# --- counters, memory and Redis alike -------------------------------------------------------------


async def test_requests_limit_admits_exactly_the_limit_then_refuses(counter: RateCounter) -> None:
    check = RateCheck("requests", 3, 1)
    assert [await counter.admit([check]) for _ in range(3)] == [None, None, None]
    refusal = await counter.admit([check])
    assert refusal is not None
    assert refusal.check == check
    assert 1 <= refusal.retry_after <= 60


async def test_a_refusal_consumes_nothing_on_the_other_keys(counter: RateCounter) -> None:
    full = RateCheck("full", 1, 1)
    spare = RateCheck("spare", 2, 1)
    assert await counter.admit([full]) is None
    for _ in range(3):
        refusal = await counter.admit([spare, full])
        assert refusal is not None
        assert refusal.check == full
    assert await counter.admit([spare]) is None
    assert await counter.admit([spare]) is None
    refusal = await counter.admit([spare])
    assert refusal is not None
    assert refusal.check == spare


async def test_tokens_limit_refuses_only_once_used_up(counter: RateCounter) -> None:
    tokens = RateCheck("tokens", 100, 0)
    for _ in range(5):
        assert await counter.admit([tokens]) is None  # checking adds nothing
    await counter.record(["tokens"], 99)
    assert await counter.admit([tokens]) is None
    await counter.record(["tokens"], 1)
    refusal = await counter.admit([tokens])
    assert refusal is not None
    assert refusal.retry_after >= 1


async def test_record_adds_to_every_key(counter: RateCounter) -> None:
    await counter.record(["a", "b"], 10)
    await counter.record([], 10)
    await counter.record(["a"], 0)
    assert await counter.admit([RateCheck("a", 11, 0)]) is None
    assert await counter.admit([RateCheck("a", 10, 0)]) is not None
    assert await counter.admit([RateCheck("b", 10, 0)]) is not None
    assert await counter.admit([RateCheck("a", 11, 2)]) is not None


async def test_nothing_to_check_is_admitted(counter: RateCounter) -> None:
    assert await counter.admit([]) is None


# --- the window, with a clock we control ----------------------------------------------------------


async def test_memory_window_slides_by_the_second() -> None:
    clock = FakeClock(1000.5)
    counter = MemoryRateCounter(clock=clock)
    check = RateCheck("requests", 2, 1)
    assert await counter.admit([check]) is None
    clock.now = 1010.2
    assert await counter.admit([check]) is None
    clock.now = 1020.0
    assert await counter.admit([check]) == RateRefusal(check, 40.0)  # second 1000 leaves at 1060
    clock.now = 1059.9
    assert await counter.admit([check]) == RateRefusal(check, 1.0)
    clock.now = 1060.0
    assert await counter.admit([check]) is None
    refusal = await counter.admit([check])
    assert refusal == RateRefusal(check, 10.0)  # now the oldest is second 1010, leaving at 1070


async def test_memory_retry_after_waits_for_enough_tokens_to_leave() -> None:
    clock = FakeClock(2000.0)
    counter = MemoryRateCounter(clock=clock)
    await counter.record(["tokens"], 30)
    clock.now = 2005.0
    await counter.record(["tokens"], 70)
    clock.now = 2030.0
    refusal = await counter.admit([RateCheck("tokens", 100, 0)])
    assert refusal is not None
    assert refusal.retry_after == 30.0  # the 30 tokens of second 2000 leave at 2060
    refusal = await counter.admit([RateCheck("tokens", 50, 0)])
    assert refusal is not None
    assert refusal.retry_after == 35.0  # only once the 70 of second 2005 leave, at 2065


async def test_memory_forgets_idle_keys() -> None:
    clock = FakeClock(3000.0)
    counter = MemoryRateCounter(clock=clock)
    for index in range(100):
        assert await counter.admit([RateCheck(f"key-{index}", 1, 1)]) is None
    clock.now = 3061.0
    assert await counter.admit([RateCheck("fresh", 1, 1)]) is None
    assert list(counter._buckets) == ["fresh"]


# --- Redis across processes -----------------------------------------------------------------------


async def test_redis_clients_sharing_a_prefix_share_the_count_exactly(
    redis_url: str, redis_prefix: str
) -> None:
    first = redis.asyncio.Redis.from_url(redis_url)
    second = redis.asyncio.Redis.from_url(redis_url)
    try:
        counters = [RedisRateCounter(first, redis_prefix), RedisRateCounter(second, redis_prefix)]
        checks = [RateCheck("shared", 20, 1), RateCheck("roomy", 1000, 1)]
        results = await asyncio.gather(*(counters[index % 2].admit(checks) for index in range(50)))
        assert sum(result is None for result in results) == 20
        assert all(result.check == checks[0] for result in results if result is not None)
        roomy = RateCheck("roomy", 20, 1)
        assert await counters[1].admit([roomy]) is not None  # exactly 20 counted there too
        assert await counters[0].admit([RateCheck("roomy", 21, 1)]) is None
    finally:
        await first.aclose()
        await second.aclose()


async def test_redis_keys_expire_after_the_window(redis_url: str, redis_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        counter = RedisRateCounter(client, redis_prefix)
        assert await counter.admit([RateCheck("requests", 5, 1), RateCheck("tokens", 5, 0)]) is None
        await counter.record(["recorded"], 3)
        assert 55 <= await client.ttl(f"{redis_prefix}requests") <= 61
        assert 55 <= await client.ttl(f"{redis_prefix}recorded") <= 61
        assert await client.exists(f"{redis_prefix}tokens") == 0  # a check alone writes nothing
    finally:
        await client.aclose()


# --- the guard ------------------------------------------------------------------------------------


NO_LIMITS = RateLimits()
ANONYMOUS = CallContext()
TWO_PER_MINUTE = RateLimits(requests_per_minute=2)


def _configuration(limits: RateLimits = NO_LIMITS) -> ResolvedConfiguration:
    return ResolvedConfiguration(
        id=7,
        slug="gpt",
        provider="demo",
        model="demo-chat",
        base_url=None,
        api_key=None,
        params=GenerationParams(),
        options={},
        application_id=None,
        price_override=None,
        context_length=None,
        rate_limits=limits,
    )


def _call(context: CallContext = ANONYMOUS) -> ChatCall:
    return ChatCall(configuration="gpt", messages=(Message(role="user", content="hi"),), context=context)


@pytest.mark.parametrize(
    ("configuration", "call", "subject"),
    [
        (_configuration(), _call(CallContext(token_id=5, token_limits=TWO_PER_MINUTE)), "token 5"),
        (
            _configuration(),
            _call(CallContext(application_id=3, application_limits=TWO_PER_MINUTE)),
            "application 3",
        ),
        (_configuration(TWO_PER_MINUTE), _call(), "configuration 7"),
    ],
    ids=["token", "application", "configuration"],
)
async def test_each_subject_refuses_past_its_requests_per_minute(
    counter: RateCounter, configuration: ResolvedConfiguration, call: ChatCall, subject: str
) -> None:
    guard = RateLimitGuard(counter)
    assert await guard.admit(configuration, call) is None  # no tokens limit: nothing to settle
    assert await guard.admit(configuration, call) is None
    with pytest.raises(
        RateLimitExceededError, match=rf"^rate limit: {subject} allows 2 requests per minute; retry in \d+ s$"
    ) as refused:
        await guard.admit(configuration, call)
    assert refused.value.retry_after is not None
    assert 1 <= refused.value.retry_after <= 60


async def test_settled_tokens_count_against_every_tokens_limit(counter: RateCounter) -> None:
    guard = RateLimitGuard(counter)
    configuration = _configuration(RateLimits(tokens_per_minute=1000))
    call = _call(CallContext(application_id=3, application_limits=RateLimits(tokens_per_minute=100)))
    admission = await guard.admit(configuration, call)
    assert admission is not None
    await admission.settle(Usage(prompt_tokens=60, completion_tokens=39), None)
    admission = await guard.admit(configuration, call)
    assert admission is not None
    await admission.settle(Usage(prompt_tokens=1, completion_tokens=0), None)
    with pytest.raises(RateLimitExceededError, match="application 3 allows 100 tokens per minute"):
        await guard.admit(configuration, call)
    other_application = _call(CallContext(application_id=4))
    assert await guard.admit(configuration, other_application) is not None  # 100 of 1000 used
    assert await counter.admit([RateCheck("rate:configuration:7:tokens", 100, 0)]) is not None
    assert await counter.admit([RateCheck("rate:configuration:7:tokens", 101, 0)]) is None


async def test_a_refusal_by_one_subject_leaves_the_others_quota(counter: RateCounter) -> None:
    guard = RateLimitGuard(counter)
    strict = _call(
        CallContext(
            token_id=5,
            token_limits=TWO_PER_MINUTE,
            application_id=3,
            application_limits=RateLimits(requests_per_minute=1),
        )
    )
    await guard.admit(_configuration(), strict)
    with pytest.raises(RateLimitExceededError, match="application 3"):
        await guard.admit(_configuration(), strict)
    relaxed = _call(CallContext(token_id=5, token_limits=TWO_PER_MINUTE, application_id=4))
    await guard.admit(_configuration(), relaxed)  # the token's second request, not its third
    with pytest.raises(RateLimitExceededError, match="token 5"):
        await guard.admit(_configuration(), relaxed)


async def test_release_gives_nothing_back(counter: RateCounter) -> None:
    guard = RateLimitGuard(counter)
    configuration = _configuration(RateLimits(requests_per_minute=1, tokens_per_minute=10))
    admission = await guard.admit(configuration, _call())
    assert admission is not None
    await admission.release()
    with pytest.raises(RateLimitExceededError, match="configuration 7 allows 1 requests"):
        await guard.admit(configuration, _call())


class _Untouchable:
    """A counter that fails the test if the guard uses it."""

    async def admit(self, checks: Sequence[RateCheck]) -> RateRefusal | None:
        raise AssertionError("the counter was asked")

    async def record(self, keys: Sequence[str], amount: int) -> None:
        raise AssertionError("the counter was asked")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(
    "context",
    [
        CallContext(),
        CallContext(application_id=3),
        CallContext(application_limits=TWO_PER_MINUTE, token_limits=TWO_PER_MINUTE),
    ],
    ids=["no-subjects", "no-limits", "no-ids"],
)
async def test_without_limits_the_counter_is_never_asked(context: CallContext) -> None:
    guard = RateLimitGuard(_Untouchable())
    assert await guard.admit(_configuration(), _call(context)) is None
