"""What a call holds on a budget, and what happens when the rest of a budget is held by others.

A hold is an upper bound on the call's cost, so a provider that counts more prompt tokens than
a rough estimate cannot push concurrent calls past a hard limit. A call that does not fit only
because calls in flight or another process's lease hold the room waits for it, and is otherwise
refused with a short `Retry-After`; a call that the spend alone leaves no room for is refused at
once, until the period resets.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from llm_manager.errors import BudgetExceededError
from llm_manager.manager import LLMManager
from llm_manager.services import budget_leases
from llm_manager.services.budgets import HELD_BACK_RETRY_AFTER, BudgetSpec
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.token_bounds import (
    MESSAGE_ALLOWANCE,
    REQUEST_ALLOWANCE,
    TOOLS_ALLOWANCE,
    prompt_token_bound,
)
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from llm_manager.testing.transcripts import openai
from llm_manager.types import Message, ToolCall, ToolDefinition
from tests.services.budget_helpers import MAX_TOKENS, PRICED, demo_budget_setup


def test_the_prompt_bound_counts_bytes_and_allows_for_templates_and_tools() -> None:
    plain = [Message(role="user", content="hi")]
    assert prompt_token_bound(plain) == REQUEST_ALLOWANCE + MESSAGE_ALLOWANCE + 2
    wide = [Message(role="user", content="日本語")]  # 3 characters, 9 bytes: up to 9 tokens
    assert prompt_token_bound(wide) == REQUEST_ALLOWANCE + MESSAGE_ALLOWANCE + 9
    calling = [
        *plain,
        Message(role="assistant", tool_calls=(ToolCall(id="c1", name="f", arguments='{"a":1}'),)),
        Message(role="tool", content="42", tool_call_id="c1"),
    ]
    assert prompt_token_bound(calling) == prompt_token_bound(plain) + (MESSAGE_ALLOWANCE * 2 + 2 + 1 + 7) + (
        MESSAGE_ALLOWANCE + 2 + 2
    )
    tool = ToolDefinition(name="weather", description="Today's weather", parameters={"type": "object"})
    schema = len(json.dumps(tool.parameters, separators=(",", ":")))
    assert prompt_token_bound(plain, [tool]) == prompt_token_bound(plain) + TOOLS_ALLOWANCE + (
        MESSAGE_ALLOWANCE + len("weather") + len("Today's weather") + schema
    )


def _completion(*, prompt_tokens: int, completion_tokens: int) -> Reply:
    """OpenAI's recorded completion, reporting the usage OpenAI reports for a short prompt."""
    body = json.loads(openai.text_completion().chunks[0])
    body["usage"] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return Reply.json(body)


async def test_a_hard_budget_holds_when_the_provider_counts_more_than_an_estimate(
    llm: LLMManager, upstream: FakeUpstream
) -> None:
    # OpenAI counts "hi" in a chat as 8 prompt tokens; four characters a token would say 1.
    upstream.add("POST", "/v1/chat/completions", _completion(prompt_tokens=8, completion_tokens=MAX_TOKENS))
    await llm.configurations.create(
        ConfigurationCreate(
            slug="gpt", provider="openai-compatible", model="m", base_url=f"{upstream.url}/v1", **PRICED
        )
    )
    app = await llm.applications.create("shop")
    limit = 110
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_tokens=limit))
    context = CallContext(application_id=app.id)

    async def call() -> bool:
        try:
            await llm.chat("gpt", "hi", context=context, max_tokens=MAX_TOKENS)
        except BudgetExceededError:
            return False
        return True

    served = sum(await asyncio.gather(*(call() for _ in range(30))))
    [budget] = await llm.budgets.list_all()
    assert served >= 1
    assert budget.spent_tokens == served * (8 + MAX_TOKENS) <= limit
    assert budget.reserved_tokens == 0


async def _chat(llm: LLMManager, context: CallContext) -> None:
    await llm.chat("demo", "hi", context=context, max_tokens=MAX_TOKENS)


async def _room_for_one_and_a_half_calls(llm: LLMManager) -> CallContext:
    """A budget one call in flight fills: a second call waits for (or is refused) its room."""
    context, ceiling, _ = await demo_budget_setup(llm)
    assert ceiling.usd is not None
    await llm.budgets.set(
        BudgetSpec(application="shop", period="day", limit_usd=ceiling.usd * Decimal("1.5"))
    )
    return context


async def test_a_call_held_back_by_a_call_in_flight_is_refused_with_a_short_retry_after(
    llm: LLMManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget_leases, "HELD_WAIT", 0.3)
    context = await _room_for_one_and_a_half_calls(llm)
    async with llm.stream("demo", "hi", context=context, max_tokens=MAX_TOKENS) as stream:
        await anext(stream)  # in flight, holding its ceiling
        with pytest.raises(BudgetExceededError) as refused:
            await _chat(llm, context)
        async for _ in stream:
            pass
    assert refused.value.retry_after == HELD_BACK_RETRY_AFTER
    assert "calls in flight hold it" in str(refused.value)
    await _chat(llm, context)  # the stream cost less than it held: the room is back


async def test_a_call_waits_for_room_a_call_in_flight_gives_back(
    llm: LLMManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget_leases, "HELD_WAIT", 30.0)
    context = await _room_for_one_and_a_half_calls(llm)
    async with llm.stream("demo", "hi", context=context, max_tokens=MAX_TOKENS) as stream:
        await anext(stream)
        waiting = asyncio.create_task(_chat(llm, context))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # waiting for the stream's hold, not refused
        async for _ in stream:
            pass
    await asyncio.wait_for(waiting, 10)  # served once the stream settled


async def test_a_spent_budget_refuses_at_once_until_the_reset(
    llm: LLMManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget_leases, "HELD_WAIT", 30.0)
    context, ceiling, cost = await demo_budget_setup(llm)
    assert ceiling.usd is not None
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=ceiling.usd + cost / 2))
    await _chat(llm, context)
    with pytest.raises(BudgetExceededError) as refused:
        await asyncio.wait_for(_chat(llm, context), 10)  # no waiting: only a new day makes room
    assert refused.value.retry_after is not None
    assert refused.value.retry_after > HELD_BACK_RETRY_AFTER
    assert "resets at" in str(refused.value)


async def test_a_call_waits_for_room_another_process_leased_and_left_idle(
    two_processes: list[LLMManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget_leases, "LEASE_CALLS", 5)
    monkeypatch.setattr(budget_leases, "LEASE_SHARE", 2)
    monkeypatch.setattr(budget_leases, "LEASE_IDLE", 0.2)
    monkeypatch.setattr(budget_leases, "_SWEEP_EVERY", 0.05)
    monkeypatch.setattr(budget_leases, "HELD_WAIT", 10.0)
    first, second = two_processes
    context, ceiling, cost = await demo_budget_setup(first)
    assert ceiling.usd is not None
    limit = ceiling.usd * 10
    await first.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=limit))
    await _chat(first, context)  # leases room for 5 calls, then stays idle
    calls_by_the_second = 8  # more than the room the first process's lease leaves
    for _ in range(calls_by_the_second):
        await _chat(second, context)  # waits for the idle lease to come back rather than refusing
    for llm in two_processes:
        await llm.services.writer.flush()
    [budget] = await second.budgets.list_all()
    assert budget.spent_usd == cost * (1 + calls_by_the_second) <= limit
