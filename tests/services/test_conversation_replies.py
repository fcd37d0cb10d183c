"""Replies in a conversation: the history really sent upstream, the window kept, stops and errors stored."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from llm_manager import TextDelta
from llm_manager.errors import AuthenticationError, BudgetExceededError, InvalidInputError, NotFoundError
from llm_manager.manager import LLMManager
from llm_manager.providers._wire import estimate_tokens
from llm_manager.services.budgets import BudgetSpec
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate, ConfigurationUpdate
from llm_manager.services.context_window import SAFETY_MARGIN, ContextWindowError, message_tokens
from llm_manager.services.conversation_replies import SUMMARY_INSTRUCTIONS, SUMMARY_PREFIX
from llm_manager.services.conversations import ConversationOwner, ConversationView, MessageView, Viewer
from llm_manager.services.usage import UsageFilter, UsageRow
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from llm_manager.testing.transcripts import openai

API_KEY = "sk-test-abcdefghijklmnop"
SYSTEM = Viewer.system()
PRICED = {"input_price": Decimal(1), "output_price": Decimal(1)}
FILLER = "The answer is long enough to take room in a small context window, as real answers do. "


def _completion(text: str, *, prompt_tokens: int = 30, completion_tokens: int | None = None) -> Reply:
    """OpenAI's recorded non-streamed completion, with this text and usage."""
    body = json.loads(openai.text_completion().chunks[0])
    body["choices"][0]["message"]["content"] = text
    completion = estimate_tokens(text) if completion_tokens is None else completion_tokens
    body["usage"] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
    return Reply.json(body)


async def _openai(llm: LLMManager, upstream: FakeUpstream, **fields: Any) -> None:
    await llm.configurations.create(
        ConfigurationCreate(
            slug="gpt",
            provider="openai",
            model="gpt-4o-mini",
            base_url=openai.base_url(upstream.url),
            api_key=SecretStr(API_KEY),
            **fields,
        )
    )


async def _demo(llm: LLMManager, delay_ms: int = 0) -> None:
    await llm.configurations.create(
        ConfigurationCreate(
            slug="demo", provider="demo", model="demo-chat", options={"delay_ms": delay_ms}, **PRICED
        )
    )


async def _start(llm: LLMManager, configuration: str, **options: Any) -> ConversationView:
    return await llm.services.conversations.create(ConversationOwner(), configuration, **options)


async def _messages(llm: LLMManager, conversation_id: str) -> list[MessageView]:
    return (await llm.services.conversations.messages(conversation_id, SYSTEM, limit=200)).items


async def _usage(llm: LLMManager, conversation_id: str) -> list[UsageRow]:
    return (await llm.usage.list_page(filters=UsageFilter(conversation_id=conversation_id))).rows


def _sent(upstream: FakeUpstream) -> list[list[dict[str, Any]]]:
    return [request.json()["messages"] for request in upstream.requests]


def _wire(message: MessageView) -> dict[str, Any]:
    return {"role": message.role, "content": message.content}


# -- the history goes upstream ---------------------------------------------------------------


async def test_the_whole_history_is_sent_upstream(llm: LLMManager, upstream: FakeUpstream) -> None:
    upstream.add(
        "POST", openai.CHAT_PATH, _completion("Paris."), _completion("Madrid."), _completion("Rome.")
    )
    await _openai(llm, upstream)
    conversation = await _start(llm, "gpt", system_prompt="Answer in one word.")

    for question in ("Capital of France?", "Of Spain?", "Of Italy?"):
        await llm.services.replies.send(conversation.id, SYSTEM, question)

    sent = _sent(upstream)
    assert len(sent) == 3
    assert sent[0] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert sent[2] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Of Spain?"},
        {"role": "assistant", "content": "Madrid."},
        {"role": "user", "content": "Of Italy?"},
    ]
    body = upstream.requests[2].json()
    assert (body["model"], body["stream"]) == ("gpt-4o-mini", False)
    stored = await _messages(llm, conversation.id)
    assert [m.content for m in stored if m.role == "assistant"] == ["Paris.", "Madrid.", "Rome."]
    assert stored[-1].context is not None
    assert stored[-1].context["sent_messages"] == 6
    assert stored[-1].context["dropped"] == []


async def test_a_streamed_reply_is_sent_the_history_and_stored(
    llm: LLMManager, upstream: FakeUpstream
) -> None:
    upstream.add("POST", openai.CHAT_PATH, _completion("Paris."), openai.text_stream())
    await _openai(llm, upstream)
    conversation = await _start(llm, "gpt")
    await llm.services.replies.send(conversation.id, SYSTEM, "Capital of France?")

    stream = await llm.services.replies.stream(conversation.id, SYSTEM, "And of the UK?")
    async with stream:
        texts = [event.text async for event in stream if isinstance(event, TextDelta)]

    assert "".join(texts) == openai.TEXT_STREAM_TEXT
    body = upstream.requests[1].json()
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of the UK?"},
    ]
    assert stream.exchange is not None
    reply = stream.exchange.reply
    assert (reply.seq, reply.status, reply.content) == (4, "complete", openai.TEXT_STREAM_TEXT)
    assert (reply.prompt_tokens, reply.completion_tokens) == (78, 9)
    assert reply.usage_log_id == stream.log_id
    assert [m.seq for m in await _messages(llm, conversation.id)] == [1, 2, 3, 4]


# -- the context window ------------------------------------------------------------------------


def _kept_suffix(earlier: list[MessageView], kept: list[MessageView]) -> list[MessageView]:
    """The newest messages that were all kept: the whole turns sent besides the pinned ones."""
    suffix: list[MessageView] = []
    for message in reversed(earlier):
        if message not in kept:
            break
        suffix.insert(0, message)
    return suffix


WINDOW = 600
MAX_TOKENS = 100


def _question(number: int) -> str:
    return f"Question {number}: tell me something about topic {number}, in a few sentences please."


def _answer(number: int) -> str:
    return f"Answer {number}. " + FILLER * 2


async def test_a_long_conversation_stays_within_the_window(llm: LLMManager, upstream: FakeUpstream) -> None:
    count = 12
    upstream.add("POST", openai.CHAT_PATH, *(_completion(_answer(n)) for n in range(count)))
    await _openai(llm, upstream, context_length=WINDOW)
    system = "Be brief."
    conversation = await _start(llm, "gpt", system_prompt=system, params={"max_tokens": MAX_TOKENS})

    for number in range(count):
        await llm.services.replies.send(conversation.id, SYSTEM, _question(number))
        if number == 0:
            first = (await _messages(llm, conversation.id))[0]
            await llm.services.conversations.pin(conversation.id, SYSTEM, first.id)

    stored = await _messages(llm, conversation.id)
    assert len(stored) == 2 * count
    sent = _sent(upstream)
    assert len(sent) == count
    budget = int(WINDOW * SAFETY_MARGIN) - MAX_TOKENS - message_tokens(system)
    dropping_started = False
    for number, messages in enumerate(sent):
        question, reply = stored[2 * number], stored[2 * number + 1]
        assert question.content == _question(number)
        assert upstream.requests[number].json()["max_completion_tokens"] == MAX_TOKENS
        # Within the window: the text sent plus the room asked for the reply.
        assert sum(message_tokens(m["content"]) for m in messages) + MAX_TOKENS <= WINDOW
        assert messages[0] == {"role": "system", "content": system}
        assert messages[-1] == {"role": "user", "content": _question(number)}

        # Exactly the kept turns: what the reply's context says was not dropped, in order.
        earlier = stored[: 2 * number]
        note = reply.context
        assert note is not None
        assert (note["window"], note["reserved_for_reply"]) == (WINDOW, MAX_TOKENS)
        assert note["sent_messages"] == len(messages)
        kept = [m for m in earlier if m.seq not in note["dropped"]]
        assert messages[1:-1] == [_wire(m) for m in kept]
        assert set(note["dropped"]) == {m.seq for m in earlier} - {m.seq for m in kept}

        # The pinned first question is always there; the rest are the newest whole turns.
        if number > 0:
            assert messages[1] == {"role": "user", "content": _question(0)}
        tail = _kept_suffix(earlier, kept)
        assert all(m.pinned for m in kept if m not in tail), "a hole in the kept history"
        if tail:
            assert tail[0].role == "user", "a turn was split"
        used = sum(m.tokens for m in kept) + message_tokens(question.content)
        assert used == note["estimated_history_tokens"]
        assert used <= budget
        if note["dropped"]:
            dropping_started = True
            # Dropped only when needed: the turn just before the kept ones would not have fit.
            before = earlier[: len(earlier) - len(tail)]
            turn = before[-2:]
            assert turn[0].role == "user"
            assert used + sum(m.tokens for m in turn if not m.pinned) > budget
        else:
            assert not dropping_started, "once the window is full, it stays full"

    assert dropping_started
    assert len(sent[-1]) < 2 * count + 1, "the last call did not get the whole history"
    last_note = stored[-1].context
    assert last_note is not None
    assert stored[1].seq in last_note["dropped"], "the pinned question's answer went like any other"


async def test_a_message_too_large_for_the_window_is_refused_and_not_stored(
    llm: LLMManager, upstream: FakeUpstream
) -> None:
    upstream.add("POST", openai.CHAT_PATH, _completion("fine"))
    await _openai(llm, upstream, context_length=WINDOW)
    conversation = await _start(llm, "gpt", params={"max_tokens": MAX_TOKENS})

    with pytest.raises(ContextWindowError):
        await llm.services.replies.send(conversation.id, SYSTEM, "word " * 500)

    assert upstream.requests == []
    assert await _messages(llm, conversation.id) == []
    await llm.services.replies.send(conversation.id, SYSTEM, "a short one")
    assert [m.seq for m in await _messages(llm, conversation.id)] == [1, 2]


SUMMARY_WINDOW = 4000
"""Room for the summary call's own reply (up to 1024 tokens) and a transcript of the dropped turns."""


def _long_answer(number: int) -> str:
    return f"Answer {number}. " + FILLER * 8


async def _summarized_conversation(
    llm: LLMManager, upstream: FakeUpstream, *, first: str | None = None
) -> tuple[ConversationView, list[dict[str, Any]]]:
    """Chat until the history is summarised, then once more; every upstream body, in order."""
    # Every call takes the next reply, summaries included: each text says which call it answered.
    upstream.add("POST", openai.CHAT_PATH, *(_completion(_long_answer(n)) for n in range(40)))
    await _openai(llm, upstream, context_length=SUMMARY_WINDOW)
    conversation = await _start(
        llm, "gpt", system_prompt="Be brief.", context_strategy="summarize", params={"max_tokens": MAX_TOKENS}
    )
    if first is not None:
        await llm.services.replies.send(conversation.id, SYSTEM, first)
        [question, _] = await _messages(llm, conversation.id)
        await llm.services.conversations.pin(conversation.id, SYSTEM, question.id)
    for number in range(30):
        await llm.services.replies.send(conversation.id, SYSTEM, _question(number))
        if any(_is_summary(request.json()) for request in upstream.requests[:-1]):
            break
    await llm.services.replies.send(conversation.id, SYSTEM, "One more question.")
    return conversation, [request.json() for request in upstream.requests]


def _is_summary(body: dict[str, Any]) -> bool:
    return bool(body["messages"][0]["content"] == SUMMARY_INSTRUCTIONS)


async def test_summarize_replaces_old_turns_by_a_summary(llm: LLMManager, upstream: FakeUpstream) -> None:
    conversation, bodies = await _summarized_conversation(llm, upstream)

    [first] = [n for n, body in enumerate(bodies) if _is_summary(body)]
    summary_text = _long_answer(first).strip()
    transcript = bodies[first]["messages"][1]["content"]
    assert bodies[first]["messages"][1]["role"] == "user"
    assert transcript.startswith(f"USER: {_question(0)}\n\nASSISTANT: {_long_answer(0).strip()}")
    assert bodies[first]["max_completion_tokens"] <= SUMMARY_WINDOW // 8

    # The call right after the summary: system prompt, the summary, only the recent turns, the message.
    stored = await _messages(llm, conversation.id)
    view = await llm.services.conversations.get(conversation.id, SYSTEM)
    assert (view.summary, view.context_strategy) == (summary_text, "summarize")
    through = view.summary_through
    assert through > 0
    assert all(f"{m.role.upper()}: {m.content.strip()}" in transcript for m in stored if m.seq <= through)
    for body, question in ((bodies[first + 1], stored[-4]), (bodies[first + 2], stored[-2])):
        sent = body["messages"]
        assert sent[0] == {"role": "system", "content": "Be brief."}
        assert sent[1] == {"role": "system", "content": SUMMARY_PREFIX + summary_text}
        recent = [m for m in stored if through < m.seq < question.seq]
        assert sent[2:] == [_wire(m) for m in recent] + [_wire(question)]
        assert sum(message_tokens(m["content"]) for m in sent) + MAX_TOKENS <= SUMMARY_WINDOW
    reply = stored[-3]
    assert reply.context is not None
    assert reply.context["summarized_through"] == through
    later = stored[-1].context
    assert later is not None
    assert later["summarized_through"] is None, "the next call reuses the summary"

    rows = await _usage(llm, conversation.id)
    [summarize_row] = [row for row in rows if row.operation == "summarize"]
    assert summarize_row.status == "ok"
    assert {row.operation for row in rows} == {"conversation", "summarize"}
    assert view.prompt_tokens == sum(row.prompt_tokens for row in rows)
    assert view.completion_tokens == sum(row.completion_tokens for row in rows)
    assert view.cost == sum((row.cost or Decimal(0)) for row in rows)
    assert summarize_row.cost
    assert view.cost == sum((m.cost or Decimal(0)) for m in stored) + summarize_row.cost
    assert view.message_count == len(stored)


async def test_a_pinned_message_survives_the_summary(llm: LLMManager, upstream: FakeUpstream) -> None:
    pinned = "My name is Ada; remember it."
    conversation, bodies = await _summarized_conversation(llm, upstream, first=pinned)

    calls = [body["messages"] for body in bodies if not _is_summary(body)]
    assert len(calls) < len(bodies), "no summary was made"
    for sent in calls:
        assert {"role": "user", "content": pinned} in sent
    [summary] = [body for body in bodies if _is_summary(body)]
    assert pinned not in summary["messages"][1]["content"], "a pinned message is sent as it is"
    assert (await llm.services.conversations.get(conversation.id, SYSTEM)).summary_through > 1


async def test_a_small_window_is_summarised_from_the_dropped_turns(
    llm: LLMManager, upstream: FakeUpstream
) -> None:
    upstream.add("POST", openai.CHAT_PATH, *(_completion(_answer(n)) for n in range(20)))
    await _openai(llm, upstream, context_length=WINDOW)
    conversation = await _start(llm, "gpt", context_strategy="summarize", params={"max_tokens": MAX_TOKENS})

    for number in range(10):
        await llm.services.replies.send(conversation.id, SYSTEM, _question(number))

    [summary, *_] = [request.json() for request in upstream.requests if _is_summary(request.json())]
    assert _question(0) in summary["messages"][1]["content"]


# -- stop, errors and refusals -----------------------------------------------------------------


async def test_stop_keeps_and_bills_the_partial_reply(llm: LLMManager) -> None:
    await _demo(llm, delay_ms=30)
    conversation = await _start(llm, "demo")

    stream = await llm.services.replies.stream(conversation.id, SYSTEM, "tell me a long story")
    received: list[str] = []
    async for event in stream:
        if isinstance(event, TextDelta):
            received.append(event.text)
            if len(received) == 3:
                break
    await stream.aclose()

    assert stream.exchange is not None
    reply = stream.exchange.reply
    assert reply.status == "interrupted"
    assert reply.content == "".join(received)
    assert reply.completion_tokens > 0
    assert reply.cost is not None
    assert reply.cost > 0
    [question, stored] = await _messages(llm, conversation.id)
    assert (question.content, question.status) == ("tell me a long story", "complete")
    assert (stored.id, stored.status, stored.content) == (reply.id, "interrupted", "".join(received))
    [row] = await _usage(llm, conversation.id)
    assert (row.status, row.operation, row.id) == ("cancelled", "conversation", reply.usage_log_id)
    assert row.completion_tokens == reply.completion_tokens
    view = await llm.services.conversations.get(conversation.id, SYSTEM)
    assert view.message_count == 2
    assert (view.prompt_tokens, view.completion_tokens) == (row.prompt_tokens, row.completion_tokens)
    assert view.cost == row.cost


async def test_a_cancelled_send_keeps_the_reply_as_interrupted(llm: LLMManager) -> None:
    await _demo(llm, delay_ms=30)
    conversation = await _start(llm, "demo")

    task = asyncio.create_task(llm.services.replies.send(conversation.id, SYSTEM, "a long answer please"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [question, reply] = await _messages(llm, conversation.id)
    assert question.content == "a long answer please"
    assert reply.status == "interrupted"
    [row] = await _usage(llm, conversation.id)
    assert (row.status, row.id) == ("cancelled", reply.usage_log_id)
    assert (await llm.services.conversations.get(conversation.id, SYSTEM)).message_count == 2


async def test_an_interrupted_reply_stays_in_the_history(llm: LLMManager, upstream: FakeUpstream) -> None:
    upstream.add("POST", openai.CHAT_PATH, openai.text_stream(chunk_delay=0.05), _completion("Sure."))
    await _openai(llm, upstream)
    conversation = await _start(llm, "gpt")
    stream = await llm.services.replies.stream(conversation.id, SYSTEM, "Capital of the UK?")
    received: list[str] = []
    async with stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                received.append(event.text)
                if len(received) == 3:
                    break

    await llm.services.replies.send(conversation.id, SYSTEM, "Go on.")

    assert _sent(upstream)[1] == [
        {"role": "user", "content": "Capital of the UK?"},
        {"role": "assistant", "content": "".join(received)},
        {"role": "user", "content": "Go on."},
    ]


async def test_a_provider_error_is_stored_as_an_error_reply(llm: LLMManager, upstream: FakeUpstream) -> None:
    upstream.add("POST", openai.CHAT_PATH, openai.error_reply("authentication"), _completion("Better now."))
    await _openai(llm, upstream)
    conversation = await _start(llm, "gpt")

    with pytest.raises(AuthenticationError):
        await llm.services.replies.send(conversation.id, SYSTEM, "Hello?")

    [question, reply] = await _messages(llm, conversation.id)
    assert (question.role, question.status) == ("user", "complete")
    assert (reply.role, reply.status, reply.content) == ("assistant", "error", "")
    assert reply.error_message is not None
    assert "Incorrect API key" in reply.error_message
    assert API_KEY not in reply.error_message
    [row] = await _usage(llm, conversation.id)
    assert (row.status, row.id) == ("error", reply.usage_log_id)
    assert (await llm.services.conversations.get(conversation.id, SYSTEM)).message_count == 2

    await llm.services.replies.send(conversation.id, SYSTEM, "Hello again?")
    assert all(m["role"] != "assistant" for m in _sent(upstream)[1]), "a failed reply is not history"


async def test_a_stream_failing_midway_is_stored_as_an_error_with_its_text(
    llm: LLMManager, upstream: FakeUpstream
) -> None:
    upstream.add("POST", openai.CHAT_PATH, openai.mid_stream_error())
    await _openai(llm, upstream)
    conversation = await _start(llm, "gpt")

    stream = await llm.services.replies.stream(conversation.id, SYSTEM, "Capital of the UK?")
    with pytest.raises(openai.MID_STREAM_ERROR_CLASS):
        async with stream:
            async for _ in stream:
                pass

    assert stream.exchange is not None
    assert stream.exchange.reply.status == "error"
    [_, reply] = await _messages(llm, conversation.id)
    assert (reply.status, reply.content) == ("error", openai.MID_STREAM_ERROR_TEXT)
    assert reply.error_message


async def test_a_budget_refusal_stores_nothing_and_the_message_can_be_resent(llm: LLMManager) -> None:
    await _demo(llm)
    shop = await llm.applications.create("shop")
    owner = ConversationOwner(application_id=shop.id)
    conversation = await llm.services.conversations.create(owner, "demo", params={"max_tokens": 50})
    viewer = Viewer(application_id=shop.id)
    context = CallContext(application_id=shop.id)
    budget = await llm.budgets.set(BudgetSpec(application="shop", period="month", limit_tokens=5))

    with pytest.raises(BudgetExceededError):
        await llm.services.replies.send(conversation.id, viewer, "hello there", context=context)
    stream = await llm.services.replies.stream(conversation.id, viewer, "hello there", context=context)
    with pytest.raises(BudgetExceededError):
        async with stream:
            await stream.first()
    assert stream.exchange is None

    assert await _messages(llm, conversation.id) == []
    assert (await llm.services.conversations.get(conversation.id, SYSTEM)).message_count == 0
    assert await _usage(llm, conversation.id) == []

    await llm.budgets.delete(budget.id)
    reply = await llm.services.replies.send(conversation.id, viewer, "hello there", context=context)
    assert (reply.message.seq, reply.reply.seq) == (1, 2)
    [row] = await _usage(llm, conversation.id)
    assert row.application_id == shop.id


async def test_an_unusable_configuration_refuses_without_storing(llm: LLMManager) -> None:
    await _demo(llm)
    conversation = await _start(llm, "demo")
    await llm.configurations.update("demo", ConfigurationUpdate(is_active=False))

    with pytest.raises(InvalidInputError, match="inactive"):
        await llm.services.replies.send(conversation.id, SYSTEM, "anyone there?")
    await llm.configurations.delete("demo")
    with pytest.raises(NotFoundError):
        await llm.services.replies.send(conversation.id, SYSTEM, "anyone there?")
    assert await _messages(llm, conversation.id) == []

    await _demo(llm)  # the conversation keeps the slug it was started on
    await llm.services.replies.send(conversation.id, SYSTEM, "anyone there?")
    assert [m.seq for m in await _messages(llm, conversation.id)] == [1, 2]


async def test_per_call_overrides_apply_over_the_conversations_params(llm: LLMManager) -> None:
    await _demo(llm)
    conversation = await _start(llm, "demo", params={"max_tokens": 5})

    short = await llm.services.replies.send(conversation.id, SYSTEM, "hi")
    longer = await llm.services.replies.send(conversation.id, SYSTEM, "hi", overrides={"max_tokens": 8})

    assert short.reply.completion_tokens == 5
    assert longer.reply.completion_tokens == 8


# -- found while testing -----------------------------------------------------------------------


async def test_reasoning_tokens_do_not_count_as_history(llm: LLMManager, upstream: FakeUpstream) -> None:
    # The recorded o3-mini reply: ~30 tokens of text, 809 completion tokens of which 768 reasoning.
    upstream.add("POST", openai.CHAT_PATH, openai.text_completion())
    await _openai(llm, upstream, context_length=1000)
    conversation = await _start(llm, "gpt", params={"max_tokens": 100})

    first = await llm.services.replies.send(conversation.id, SYSTEM, "Are you a potato?")
    await llm.services.replies.send(conversation.id, SYSTEM, "Really?")

    assert first.reply.tokens < 100
    assert _sent(upstream)[1][:2] == [
        {"role": "user", "content": "Are you a potato?"},
        {"role": "assistant", "content": openai.TEXT_COMPLETION_TEXT},
    ]


async def test_an_empty_reply_is_never_resent_as_null_content(
    llm: LLMManager, upstream: FakeUpstream
) -> None:
    upstream.add("POST", openai.CHAT_PATH, _completion("", completion_tokens=100), _completion("Hi."))
    await _openai(llm, upstream)
    conversation = await _start(llm, "gpt")

    await llm.services.replies.send(conversation.id, SYSTEM, "Think hard.")
    await llm.services.replies.send(conversation.id, SYSTEM, "Well?")

    for message in _sent(upstream)[1]:
        assert message["content"] is not None or message.get("tool_calls"), message
