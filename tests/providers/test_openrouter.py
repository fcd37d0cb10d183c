"""The OpenRouter adapter against recorded OpenRouter bytes served by a real socket server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from contextlib import aclosing
from decimal import Decimal
from typing import Any

import pytest

from llm_manager.errors import BadRequestError, ProviderError, RateLimitedError, UnavailableError
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers.base import ProviderConnection
from llm_manager.providers.openrouter import OpenRouterPricing, OpenRouterProvider
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from llm_manager.testing.transcripts import openrouter as transcripts
from llm_manager.types import (
    ChatRequest,
    CompletionBuilder,
    Finish,
    GenerationParams,
    Message,
    StreamEvent,
    TextDelta,
    Usage,
    UsageReport,
)

KEY = "sk-or-v1-0123456789abcdefsecret"
MODEL = "x-ai/grok-4"
HELLO = ChatRequest(model=MODEL, messages=(Message(role="user", content="Who are you"),))


def make_provider(
    http: UpstreamClient, base_url: str, *, options: Mapping[str, Any] | None = None
) -> OpenRouterProvider:
    return OpenRouterProvider(ProviderConnection(base_url=base_url, api_key=KEY, options=options or {}), http)


@pytest.fixture
def provider(upstream: FakeUpstream, http: UpstreamClient) -> OpenRouterProvider:
    return make_provider(http, transcripts.base_url(upstream.url))


async def collect(provider: OpenRouterProvider, request: ChatRequest = HELLO) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


async def drain(provider: OpenRouterProvider, seen: list[StreamEvent]) -> None:
    """Read the stream into `seen`, so what arrived before an error can be checked."""
    async for event in provider.stream(HELLO):
        seen.append(event)


def built(events: list[StreamEvent]) -> CompletionBuilder:
    builder = CompletionBuilder()
    builder.add_all(events)
    return builder


def test_provider_describes_itself() -> None:
    assert OpenRouterProvider.name == "openrouter"
    assert OpenRouterProvider.label == "OpenRouter"
    assert OpenRouterProvider.default_base_url == "https://openrouter.ai/api/v1"


# -- streaming ----------------------------------------------------------------------------------


async def test_streamed_text_skips_keepalive_comments_and_reports_cost(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())

    events = await collect(provider)

    texts = [event for event in events if isinstance(event, TextDelta)]
    assert len(texts) == transcripts.TEXT_STREAM_CHUNKS
    assert "".join(event.text for event in texts) == transcripts.TEXT_STREAM_TEXT
    assert events[-2:] == [
        Finish(reason="stop", model=transcripts.TEXT_STREAM_MODEL),
        UsageReport(usage=transcripts.TEXT_STREAM_USAGE),
    ]
    assert transcripts.TEXT_STREAM_USAGE.reported_cost == Decimal("0.00333825")


async def test_streamed_tool_call_assembles(upstream: FakeUpstream, provider: OpenRouterProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.tool_call_stream())

    builder = built(await collect(provider))

    assert builder.tool_calls == transcripts.TOOL_CALL_STREAM_CALLS
    assert builder.finish_reason == "tool_calls"
    assert builder.usage == transcripts.TOOL_CALL_STREAM_USAGE


async def test_complete_reports_cost_and_reasoning_tokens(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_completion())

    completion = await provider.complete(HELLO)

    assert completion.text == transcripts.TEXT_COMPLETION_TEXT
    assert completion.usage == transcripts.TEXT_COMPLETION_USAGE
    assert completion.finish_reason == "stop"
    assert completion.model == "openai/gpt-5-mini"


def test_bring_your_own_key_cost_adds_the_upstream_charge(provider: OpenRouterProvider) -> None:
    # The usage-accounting example of OpenRouter's docs, with `is_byok` set.
    usage = {
        "completion_tokens": 2,
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cost": 0.95,
        "is_byok": True,
        "cost_details": {"upstream_inference_cost": 19},
        "prompt_tokens": 194,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100, "audio_tokens": 0},
        "total_tokens": 196,
    }

    assert provider.parse_usage(usage) == Usage(
        prompt_tokens=194, completion_tokens=2, cache_write_tokens=100, reported_cost=Decimal("19.95")
    )
    assert provider.parse_usage({**usage, "is_byok": False}).reported_cost == Decimal("0.95")


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "expected"), sorted(transcripts.ERROR_KINDS.items()))
async def test_each_error_reply_maps_to_its_class(
    upstream: FakeUpstream, provider: OpenRouterProvider, kind: str, expected: type[ProviderError]
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply(kind))

    with pytest.raises(ProviderError) as streamed:
        await collect(provider)
    with pytest.raises(ProviderError) as completed:
        await provider.complete(HELLO)

    assert type(streamed.value) is expected
    assert type(completed.value) is expected
    assert streamed.value.status_code == transcripts.error_reply(kind).status
    assert streamed.value.provider == "openrouter"


async def test_upstream_reason_and_retry_after_reach_the_error(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply("rate_limited", retry_after="12"))

    with pytest.raises(RateLimitedError) as caught:
        await collect(provider)

    assert caught.value.retry_after == 12.0
    assert caught.value.upstream_code == "429"
    assert caught.value.message.startswith("Provider returned error (Google: ")
    assert "temporarily rate-limited upstream" in caught.value.message


async def test_a_moderation_refusal_is_not_an_authentication_error(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply("moderation"))

    with pytest.raises(BadRequestError) as caught:
        await provider.complete(HELLO)

    assert caught.value.status_code == 403
    assert caught.value.upstream_code == "moderation"
    assert "(flagged: harassment)" in caught.value.message


async def test_mid_stream_error_chunk_raises_after_text_and_reports_its_usage(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.mid_stream_error())
    seen: list[StreamEvent] = []

    with pytest.raises(transcripts.MID_STREAM_ERROR_CLASS) as caught:
        await drain(provider, seen)

    assert built(seen).text == transcripts.MID_STREAM_ERROR_TEXT
    assert seen[-1] == UsageReport(usage=transcripts.MID_STREAM_ERROR_USAGE)
    assert caught.value.message == "Token limit reached"
    assert caught.value.status_code == 400


async def test_recorded_mid_stream_error_raises_after_its_length_finish(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.mid_stream_error_recorded())
    seen: list[StreamEvent] = []

    with pytest.raises(transcripts.MID_STREAM_ERROR_CLASS):
        await drain(provider, seen)

    assert not any(isinstance(event, TextDelta) for event in seen)
    assert Finish(reason="length", model="minimax/minimax-m2:free") in seen


async def test_dropped_connection_mid_stream_is_unavailable(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream(drop_after=6))

    with pytest.raises(UnavailableError):
        await collect(provider)


async def test_connection_refused_is_unavailable(http: UpstreamClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(UnavailableError):
        await collect(make_provider(http, f"http://127.0.0.1:{port}/api/v1"))


async def test_closing_the_stream_hangs_up_on_the_upstream(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream(chunk_delay=0.05))
    seen: list[StreamEvent] = []

    async with aclosing(provider.stream(HELLO)) as events:
        async for event in events:
            seen.append(event)
            if len(seen) == 3:
                break

    assert await asyncio.to_thread(upstream.aborted.wait, 5)
    assert built(seen).text == "I'm Grok"


async def test_error_messages_never_contain_the_key(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    body = {"error": {"message": f"Invalid key {KEY}", "code": 401}}
    upstream.add("POST", transcripts.CHAT_PATH, Reply.json(body, status=401))

    with pytest.raises(ProviderError) as caught:
        await provider.complete(HELLO)

    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)


# -- what we send -------------------------------------------------------------------------------


async def test_attribution_headers_come_from_options(upstream: FakeUpstream, http: UpstreamClient) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())
    options = {"referer": "https://apps.example.org", "title": "Support Desk"}
    provider = make_provider(http, transcripts.base_url(upstream.url), options=options)

    await collect(provider)

    headers = upstream.requests[-1].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["http-referer"] == "https://apps.example.org"
    assert headers["x-title"] == "Support Desk"
    assert headers["x-openrouter-title"] == "Support Desk"


async def test_attribution_defaults_and_non_ascii_titles(
    upstream: FakeUpstream, http: UpstreamClient
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())

    await collect(make_provider(http, transcripts.base_url(upstream.url)))
    await collect(make_provider(http, transcripts.base_url(upstream.url), options={"title": "Café Bot"}))

    default, accented = (request.headers for request in upstream.requests[-2:])
    assert default["x-title"] == default["x-openrouter-title"] == "LLM Manager"
    assert "http-referer" not in default
    assert accented["x-title"] == "Caf Bot"


async def test_request_body_keeps_top_k_and_max_tokens(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())
    request = ChatRequest(
        model=MODEL, messages=HELLO.messages, params=GenerationParams(top_k=30, max_tokens=100)
    )

    await collect(provider, request)

    sent = upstream.requests[-1]
    assert sent.path == transcripts.CHAT_PATH
    body = sent.json()
    assert body["top_k"] == 30
    assert body["max_tokens"] == 100
    assert body["stream_options"] == {"include_usage": True}


# -- models -------------------------------------------------------------------------------------


async def test_models_carry_context_length_and_prices(
    upstream: FakeUpstream, provider: OpenRouterProvider
) -> None:
    upstream.add("GET", transcripts.MODELS_PATH, transcripts.models_reply())

    priced = await provider.list_priced_models()
    models = await provider.list_models()

    assert [model.id for model in models] == list(transcripts.MODEL_IDS)
    assert models[0].name == "OpenAI: GPT-4"
    assert models[0].context_length == 8192
    assert models[0].owned_by == "openai"
    assert priced[0].info == models[0]
    assert priced[0].pricing == OpenRouterPricing(
        prompt=Decimal("0.00003"),
        completion=Decimal("0.00006"),
        request=Decimal("0"),
        cache_read=Decimal("0"),
        cache_write=Decimal("0"),
    )
