"""A budget hold is settled or released on every path a call can take, not only a whole chat.

Streams stopped by their caller book what they used (and are recorded `cancelled`); streams whose
upstream fails before the first byte give their hold back; streams cut off mid-way book at most
their ceiling; embeddings book exactly the tokens they report, and give their hold back when the
upstream fails. Every test reads the budget window and lease rows from the database after the
usage writer flushed, so what is asserted is what other processes would see.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from llm_manager.errors import ProviderError
from llm_manager.manager import LLMManager
from llm_manager.services import budget_leases
from llm_manager.services.budget_windows import Ceiling
from llm_manager.services.budgets import BudgetSpec, BudgetView
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.token_bounds import inputs_token_bound, prompt_token_bound
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from llm_manager.testing.transcripts import openai
from llm_manager.types import Message, TextDelta
from tests.services.budget_helpers import MAX_TOKENS, PRICED, budget_window, lease_rows

# $1 per million tokens both ways; the demo model uses exactly `max_tokens` completion tokens.
# The demo model counts whitespace-separated words: these inputs are 5 tokens.
INPUTS = ["the quick brown fox", "jumps"]


async def _setup(llm: LLMManager) -> CallContext:
    """The caller, and the offline demo configurations for chat and embeddings (priced)."""
    app = await llm.applications.create("shop")
    await llm.configurations.create(
        ConfigurationCreate(
            slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0}, **PRICED
        )
    )
    await llm.configurations.create(
        ConfigurationCreate(slug="demo-embed", provider="demo", model="demo-embed", **PRICED)
    )
    return CallContext(application_id=app.id)


async def _broken(llm: LLMManager, upstream: FakeUpstream) -> None:
    """An OpenAI-compatible configuration on the fake upstream, priced like the demo."""
    await llm.configurations.create(
        ConfigurationCreate(
            slug="upstream",
            provider="openai-compatible",
            model="gpt-4o-mini",
            base_url=openai.base_url(upstream.url),
            **PRICED,
        )
    )


async def _chat_ceiling(llm: LLMManager, slug: str, context: CallContext) -> Ceiling:
    """What a chat of "hi" with `MAX_TOKENS` holds through `slug`."""
    resolved = (await llm.configurations.resolve_chain(slug, application_id=context.application_id))[0]
    prompt = prompt_token_bound([Message(role="user", content="hi")])
    ceiling = llm.budgets.ceiling(resolved, prompt_tokens=prompt, params_max=MAX_TOKENS)
    assert ceiling.usd is not None
    return ceiling


async def _given_back(llm: LLMManager) -> BudgetView:
    """The budget once queued settlements are written and free leased capacity is given back."""
    await llm.services.writer.flush()
    await llm.budgets.ledger.give_back()
    [budget] = await llm.budgets.list_all()
    assert (budget.reserved_usd, budget.reserved_tokens) == (Decimal(0), 0)
    assert [(row.usd_nanos, row.tokens) for row in await lease_rows(llm) if row.usd_nanos or row.tokens] == []
    return budget


async def test_a_stream_stopped_by_its_caller_books_its_partial_cost_and_holds_nothing(
    llm: LLMManager,
) -> None:
    context = await _setup(llm)
    ceiling = await _chat_ceiling(llm, "demo", context)
    assert ceiling.usd is not None
    # Exactly one ceiling: the call reserves its own ceiling, with no lease capacity around it.
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=ceiling.usd))
    async with llm.stream("demo", "hi", context=context, max_tokens=MAX_TOKENS) as stream:
        first = await anext(stream)
        assert isinstance(first, TextDelta)
        assert (await budget_window(llm)).reserved_usd == ceiling.usd
    # Leaving the block stops the stream after its first token.
    await llm.services.writer.flush()
    window = await budget_window(llm)
    assert window.reserved_usd == 0  # the settlement took the whole ceiling off
    assert 0 < window.spent_usd < ceiling.usd
    row = await llm.usage.get(stream.log_id)
    assert row is not None
    assert row.status == "cancelled"
    assert row.completion_tokens < MAX_TOKENS
    assert window.spent_usd == row.cost
    assert window.spent_tokens == row.total_tokens
    budget = await _given_back(llm)
    assert budget.spent_usd == row.cost


@pytest.mark.parametrize("kind", ["bad_request", "unavailable"])
async def test_a_stream_failing_before_its_first_byte_gives_its_hold_back(
    llm: LLMManager, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(budget_leases, "HELD_WAIT", 0.5)  # a leaked hold is refused quickly
    context = await _setup(llm)
    await _broken(llm, upstream)
    # Retry-After 0: the 500 is retried as usual, without the backoff's wait.
    upstream.add("POST", openai.CHAT_PATH, openai.error_reply(kind, retry_after="0"))
    ceiling = await _chat_ceiling(llm, "upstream", context)
    assert ceiling.usd is not None
    assert ceiling == await _chat_ceiling(llm, "demo", context)
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=ceiling.usd))

    with pytest.raises(openai.ERROR_KINDS[kind]):
        async with llm.stream("upstream", "hi", context=context, max_tokens=MAX_TOKENS) as stream:
            await anext(stream)
    await llm.services.writer.flush()
    assert (await budget_window(llm)).spent_usd == 0
    row = await llm.usage.get(stream.log_id)
    assert row is not None
    assert (row.status, row.cost) == ("error", Decimal(0))

    # Room for exactly one more ceiling: the failed stream must not still hold it.
    result = await llm.chat("demo", "hi", context=context, max_tokens=MAX_TOKENS)
    assert result.cost is not None
    budget = await _given_back(llm)
    assert (budget.spent_usd, budget.spent_tokens) == (result.cost, result.usage.total_tokens)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(openai.mid_stream_error(), id="error-event"),
        pytest.param(openai.text_stream(drop_after=4), id="dropped-connection"),
    ],
)
async def test_a_stream_cut_off_mid_way_books_at_most_its_ceiling_and_holds_nothing(
    llm: LLMManager, upstream: FakeUpstream, reply: Reply
) -> None:
    context = await _setup(llm)
    await _broken(llm, upstream)
    upstream.add("POST", openai.CHAT_PATH, reply)
    ceiling = await _chat_ceiling(llm, "upstream", context)
    assert ceiling.usd is not None
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_usd=ceiling.usd))

    received: list[str] = []
    with pytest.raises(ProviderError):
        async with llm.stream("upstream", "hi", context=context, max_tokens=MAX_TOKENS) as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    received.append(event.text)
    assert "".join(received) == openai.MID_STREAM_ERROR_TEXT  # the failure came after the first bytes
    await llm.services.writer.flush()
    window = await budget_window(llm)
    assert window.reserved_usd == 0
    assert 0 <= window.spent_usd <= ceiling.usd
    row = await llm.usage.get(stream.log_id)
    assert row is not None
    assert row.status == "error"
    assert window.spent_usd == row.cost
    budget = await _given_back(llm)
    assert budget.spent_usd == row.cost


async def test_embeddings_book_exactly_the_tokens_they_report(llm: LLMManager) -> None:
    context = await _setup(llm)
    limit = 1_000
    await llm.budgets.set(BudgetSpec(application="shop", period="day", limit_tokens=limit))

    first = await llm.embed("demo-embed", INPUTS, context=context)
    assert first.usage.total_tokens == 5  # the demo model counts its words exactly
    assert not first.usage.estimated
    budget = await _given_back(llm)
    assert budget.spent_tokens == first.usage.total_tokens
    assert budget.spent_usd == first.cost

    second = await llm.embed("demo-embed", "jumps over", context=context)
    budget = await _given_back(llm)
    assert budget.spent_tokens == first.usage.total_tokens + second.usage.total_tokens
    assert second.usage.total_tokens == 2
    assert budget.remaining_tokens == limit - 7


@pytest.mark.parametrize("kind", ["bad_request", "unavailable"])
async def test_embeddings_whose_upstream_fails_give_their_hold_back(
    llm: LLMManager, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setattr(budget_leases, "HELD_WAIT", 0.5)  # a leaked hold is refused quickly
    context = await _setup(llm)
    await _broken(llm, upstream)
    upstream.add("POST", openai.EMBEDDINGS_PATH, openai.error_reply(kind, retry_after="0"))
    # Room for exactly one embedding of these inputs.
    await llm.budgets.set(
        BudgetSpec(application="shop", period="day", limit_tokens=inputs_token_bound(INPUTS))
    )

    with pytest.raises(openai.ERROR_KINDS[kind]):
        await llm.embed("upstream", INPUTS, context=context)
    await llm.services.writer.flush()
    window = await budget_window(llm)
    assert (window.spent_tokens, window.spent_usd) == (0, Decimal(0))

    result = await llm.embed("demo-embed", INPUTS, context=context)  # the failed call holds nothing
    budget = await _given_back(llm)
    assert (budget.spent_tokens, budget.spent_usd) == (result.usage.total_tokens, result.cost)
