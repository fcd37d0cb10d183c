"""The OpenAI adapters against recorded Chat Completions bytes served by a real socket server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from contextlib import aclosing

import pytest

from llm_manager.errors import (
    AuthenticationError,
    InvalidInputError,
    OverloadedError,
    ProviderError,
    RateLimitedError,
    UnavailableError,
)
from llm_manager.providers import _wire
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers.base import ProviderConnection
from llm_manager.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from llm_manager.testing.transcripts import openai as transcripts
from llm_manager.types import (
    ChatRequest,
    CompletionBuilder,
    Finish,
    GenerationParams,
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    UsageReport,
)
from tests.providers.conftest import CountingUpstream

KEY = "sk-proj-Zx81secretKEY0123456789"
MODEL = "gpt-4o-mini"
HELLO = ChatRequest(model=MODEL, messages=(Message(role="user", content="What is the capital of the UK?"),))
CAPITAL_TOOL = ToolDefinition(
    name="get_capital",
    description="The capital of a country",
    parameters={"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]},
)


def make_provider(
    http: UpstreamClient,
    base_url: str,
    *,
    api_key: str | None = KEY,
    kind: type[OpenAIProvider] = OpenAIProvider,
    headers: dict[str, str] | None = None,
) -> OpenAIProvider:
    connection = ProviderConnection(base_url=base_url, api_key=api_key, headers=headers or {})
    return kind(connection, http)


@pytest.fixture
def provider(upstream: FakeUpstream, http: UpstreamClient) -> OpenAIProvider:
    return make_provider(http, transcripts.base_url(upstream.url))


async def collect(provider: OpenAIProvider, request: ChatRequest = HELLO) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


async def drain(provider: OpenAIProvider, seen: list[StreamEvent]) -> None:
    """Read the stream into `seen`, so what arrived before an error can be checked."""
    async for event in provider.stream(HELLO):
        seen.append(event)


def built(events: list[StreamEvent]) -> CompletionBuilder:
    builder = CompletionBuilder()
    builder.add_all(events)
    return builder


# -- streaming ----------------------------------------------------------------------------------


async def test_streamed_text_yields_each_delta_then_finish_then_usage(
    upstream: FakeUpstream, provider: OpenAIProvider
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


async def test_stream_without_usage_chunk_ends_normally_without_usage(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream_without_usage())

    events = await collect(provider)

    assert not any(isinstance(event, UsageReport) for event in events)
    assert built(events).text == transcripts.TEXT_STREAM_TEXT
    assert isinstance(events[-1], Finish)


async def test_streamed_tool_call_fragments_assemble_into_the_recorded_call(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.tool_call_stream())

    events = await collect(provider)

    deltas = [event for event in events if isinstance(event, ToolCallDelta)]
    assert deltas[0].id == "call_ZR5UUuTt3pf61kjwAJIYdVMj"
    assert deltas[0].name == "get_capital"
    assert all(delta.id is None and delta.name is None for delta in deltas[1:])
    builder = built(events)
    assert builder.tool_calls == transcripts.TOOL_CALL_STREAM_CALLS
    assert builder.finish_reason == "tool_calls"
    assert builder.usage == transcripts.TOOL_CALL_STREAM_USAGE


async def test_parallel_tool_calls_are_kept_apart_by_index(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.parallel_tool_call_stream())

    builder = built(await collect(provider))

    assert builder.tool_calls == transcripts.PARALLEL_TOOL_CALL_STREAM_CALLS
    assert builder.text == ""
    assert builder.usage == transcripts.PARALLEL_TOOL_CALL_STREAM_USAGE


async def test_a_server_that_ignores_stream_true_still_streams_its_answer(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_completion())

    builder = built(await collect(provider))

    assert builder.text == transcripts.TEXT_COMPLETION_TEXT
    assert builder.usage == transcripts.TEXT_COMPLETION_USAGE
    assert builder.finish_reason == "stop"


# -- non-streaming ------------------------------------------------------------------------------


async def test_complete_uses_the_plain_endpoint(upstream: FakeUpstream, provider: OpenAIProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_completion())

    completion = await provider.complete(HELLO)

    assert completion.text == transcripts.TEXT_COMPLETION_TEXT
    assert completion.usage == transcripts.TEXT_COMPLETION_USAGE
    assert completion.finish_reason == "stop"
    assert completion.model == "o3-mini-2025-01-31"
    body = upstream.requests[-1].json()
    assert body["stream"] is False
    assert "stream_options" not in body


async def test_complete_returns_tool_calls(upstream: FakeUpstream, provider: OpenAIProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.tool_call_completion())

    completion = await provider.complete(HELLO)

    assert completion.tool_calls == transcripts.TOOL_CALL_COMPLETION_CALLS
    assert completion.text == ""
    assert completion.finish_reason == "tool_calls"


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "expected"), sorted(transcripts.ERROR_KINDS.items()))
async def test_each_error_reply_maps_to_its_class(
    upstream: FakeUpstream, provider: OpenAIProvider, kind: str, expected: type[ProviderError]
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply(kind))

    with pytest.raises(ProviderError) as streamed:
        await collect(provider)
    with pytest.raises(ProviderError) as completed:
        await provider.complete(HELLO)

    assert type(streamed.value) is expected
    assert type(completed.value) is expected
    assert streamed.value.provider == "openai"
    assert streamed.value.status_code == transcripts.error_reply(kind).status
    assert streamed.value.message


async def test_rate_limit_carries_retry_after_seconds(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply("rate_limited", retry_after="27"))

    with pytest.raises(RateLimitedError) as caught:
        await collect(provider)

    assert caught.value.retry_after == 27.0
    assert caught.value.status_code == 429
    assert caught.value.upstream_code == "rate_limit_exceeded"
    assert caught.value.retryable


async def test_retry_after_ms_wins_over_retry_after(upstream: FakeUpstream, provider: OpenAIProvider) -> None:
    reply = transcripts.error_reply("rate_limited", retry_after="27")
    with_ms = dataclasses.replace(reply, headers=(*reply.headers, ("retry-after-ms", "1500")))
    upstream.add("POST", transcripts.CHAT_PATH, with_ms)

    with pytest.raises(RateLimitedError) as caught:
        await provider.complete(HELLO)

    assert caught.value.retry_after == 1.5


async def test_overloaded_503_is_retryable(upstream: FakeUpstream, provider: OpenAIProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply("overloaded"))

    with pytest.raises(OverloadedError) as caught:
        await collect(provider)

    assert caught.value.retryable


async def test_mid_stream_error_event_raises_after_the_text_before_it(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.mid_stream_error())
    seen: list[StreamEvent] = []

    with pytest.raises(transcripts.MID_STREAM_ERROR_CLASS) as caught:
        await drain(provider, seen)

    assert built(seen).text == transcripts.MID_STREAM_ERROR_TEXT
    assert "error while processing your request" in caught.value.message


async def test_dropped_connection_mid_stream_is_unavailable(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream(drop_after=4))
    seen: list[StreamEvent] = []

    with pytest.raises(UnavailableError):
        await drain(provider, seen)

    assert built(seen).text == "The capital of"


async def test_connection_refused_is_unavailable(http: UpstreamClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = make_provider(http, f"http://127.0.0.1:{port}/v1")

    with pytest.raises(UnavailableError):
        await collect(provider)
    with pytest.raises(UnavailableError):
        await provider.complete(HELLO)


async def test_closing_the_stream_hangs_up_on_the_upstream(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream(chunk_delay=0.05))
    seen: list[StreamEvent] = []

    async with aclosing(provider.stream(HELLO)) as events:
        async for event in events:
            seen.append(event)
            if len(seen) == 3:
                break

    assert await asyncio.to_thread(upstream.aborted.wait, 5)
    assert built(seen).text == "The capital of"


async def test_error_messages_never_contain_the_key(upstream: FakeUpstream, provider: OpenAIProvider) -> None:
    # OpenAI echoes (part of) the key it was given; assume the worst and echo all of it.
    body = {
        "error": {
            "message": f"Incorrect API key provided: {KEY}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    upstream.add("POST", transcripts.CHAT_PATH, Reply.json(body, status=401))

    with pytest.raises(AuthenticationError) as caught:
        await collect(provider)

    for text in (str(caught.value), repr(caught.value), caught.value.message, *map(str, caught.value.args)):
        assert KEY not in text
        assert "Zx81secret" not in text
    assert "Incorrect API key provided" in caught.value.message


async def test_masked_key_in_the_recorded_401_is_redacted(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    masked = "sk-proj-Zx81************************6789"
    body = json.loads(transcripts.error_reply("authentication").chunks[0])
    body["error"]["message"] = body["error"]["message"].replace("kk", masked)
    upstream.add("POST", transcripts.CHAT_PATH, Reply.json(body, status=401))

    with pytest.raises(AuthenticationError) as caught:
        await provider.complete(HELLO)

    assert masked not in caught.value.message


# -- what we send -------------------------------------------------------------------------------


async def test_request_body_maps_messages_tools_and_params(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())
    call = ToolCall(id="call_ZR5UUuTt3pf61kjwAJIYdVMj", name="get_capital", arguments='{"country":"UK"}')
    request = ChatRequest(
        model=MODEL,
        messages=(
            Message(role="system", content="Be brief."),
            Message(role="user", content="What is the capital of the UK? Use the tool, then answer."),
            Message(role="assistant", tool_calls=(call,)),
            Message(role="tool", content="London", tool_call_id=call.id),
        ),
        params=GenerationParams(
            temperature=0.2,
            max_tokens=64,
            top_p=0.9,
            top_k=40,
            stop="END",
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
        ),
        tools=(CAPITAL_TOOL,),
        tool_choice="get_capital",
    )

    await collect(provider, request)

    sent = upstream.requests[-1]
    assert sent.path == transcripts.CHAT_PATH
    body = sent.json()
    assert body["model"] == MODEL
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of the UK? Use the tool, then answer."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_ZR5UUuTt3pf61kjwAJIYdVMj",
                    "type": "function",
                    "function": {"name": "get_capital", "arguments": '{"country":"UK"}'},
                }
            ],
        },
        {"role": "tool", "content": "London", "tool_call_id": "call_ZR5UUuTt3pf61kjwAJIYdVMj"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_capital",
                "description": "The capital of a country",
                "parameters": CAPITAL_TOOL.parameters,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_capital"}}
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2
    assert body["max_completion_tokens"] == 64
    assert body["top_p"] == 0.9
    assert body["stop"] == ["END"]
    assert body["seed"] == 7
    assert body["presence_penalty"] == 0.5
    assert body["frequency_penalty"] == -0.5
    assert "top_k" not in body  # OpenAI's API refuses it
    assert "max_tokens" not in body


@pytest.mark.parametrize("mode", ["auto", "none", "required"])
async def test_tool_choice_modes_are_sent_as_strings(
    upstream: FakeUpstream, provider: OpenAIProvider, mode: str
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.tool_call_stream())

    await collect(
        provider, ChatRequest(model=MODEL, messages=HELLO.messages, tools=(CAPITAL_TOOL,), tool_choice=mode)
    )

    assert upstream.requests[-1].json()["tool_choice"] == mode


async def test_no_tools_means_no_tool_fields(upstream: FakeUpstream, provider: OpenAIProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())

    await collect(provider)

    body = upstream.requests[-1].json()
    assert "tools" not in body
    assert "tool_choice" not in body
    assert body["messages"] == [{"role": "user", "content": "What is the capital of the UK?"}]


async def test_openai_sends_the_key_and_extra_headers(upstream: FakeUpstream, http: UpstreamClient) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())
    provider = make_provider(
        http, transcripts.base_url(upstream.url), headers={"OpenAI-Organization": "org-1"}
    )

    await collect(provider)

    headers = upstream.requests[-1].headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["openai-organization"] == "org-1"
    assert headers["content-type"] == "application/json"


async def test_compatible_server_without_key_gets_no_authorization(
    upstream: FakeUpstream, http: UpstreamClient
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream_without_usage())
    provider = make_provider(
        http, transcripts.base_url(upstream.url), api_key=None, kind=OpenAICompatibleProvider
    )
    request = ChatRequest(
        model="local", messages=HELLO.messages, params=GenerationParams(top_k=20, max_tokens=9)
    )

    events = await collect(provider, request)

    assert built(events).text == transcripts.TEXT_STREAM_TEXT
    sent = upstream.requests[-1]
    assert "authorization" not in sent.headers
    assert sent.json()["top_k"] == 20
    assert sent.json()["max_tokens"] == 9


def test_compatible_provider_describes_itself() -> None:
    assert OpenAICompatibleProvider.name == "openai-compatible"
    assert OpenAICompatibleProvider.requires_api_key is False
    assert OpenAICompatibleProvider.default_base_url == ""
    assert OpenAIProvider.default_base_url == "https://api.openai.com/v1"
    assert OpenAIProvider.supports_embeddings


async def test_compatible_provider_without_base_url_is_refused(http: UpstreamClient) -> None:
    provider = make_provider(http, "", api_key=None, kind=OpenAICompatibleProvider)

    with pytest.raises(InvalidInputError) as caught:
        await collect(provider)

    assert caught.value.field == "base_url"


# -- embeddings and models ----------------------------------------------------------------------


async def test_embeddings_ask_for_base64_and_decode_it(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.EMBEDDINGS_PATH, transcripts.embeddings_reply("base64"))

    embeddings = await provider.embed("text-embedding-3-small", ["Hello, world!"])

    assert upstream.requests[-1].json() == {
        "model": "text-embedding-3-small",
        "input": ["Hello, world!"],
        "encoding_format": "base64",
    }
    assert embeddings.vectors == (_wire.decode_base64_floats(transcripts.EMBEDDING_BASE64),)
    assert len(embeddings.vectors[0]) == 6
    assert embeddings.vectors[0][0] == pytest.approx(-0.019193, abs=1e-6)
    assert embeddings.usage is not None
    assert embeddings.usage.prompt_tokens == transcripts.EMBEDDINGS_PROMPT_TOKENS["base64"]
    assert embeddings.model == "text-embedding-3-small"


async def test_embeddings_accept_floats_from_servers_that_ignore_the_format(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    upstream.add("POST", transcripts.EMBEDDINGS_PATH, transcripts.embeddings_reply("float"))

    embeddings = await provider.embed("text-embedding-ada-002", ["Hello"])

    assert embeddings.vectors == (transcripts.EMBEDDING_FLOATS,)
    assert embeddings.usage is not None
    assert embeddings.usage.prompt_tokens == transcripts.EMBEDDINGS_PROMPT_TOKENS["float"]


async def test_list_models(upstream: FakeUpstream, provider: OpenAIProvider) -> None:
    upstream.add("GET", transcripts.MODELS_PATH, transcripts.models_reply())

    models = await provider.list_models()

    assert tuple(model.id for model in models) == transcripts.MODEL_IDS
    assert models[0].owned_by == "system"
    assert models[0].context_length is None
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {KEY}"


async def test_list_models_error_is_mapped(upstream: FakeUpstream, provider: OpenAIProvider) -> None:
    upstream.add("GET", transcripts.MODELS_PATH, transcripts.error_reply("authentication"))

    with pytest.raises(AuthenticationError):
        await provider.list_models()


# -- connection handling ------------------------------------------------------------------------


async def test_a_finished_stream_returns_its_connection_to_the_pool(
    counting_upstream: CountingUpstream, http: UpstreamClient
) -> None:
    # Reading past `[DONE]` to the end of the body lets the next call skip a new (TLS) handshake.
    counting_upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())
    provider = make_provider(http, transcripts.base_url(counting_upstream.url))

    for _ in range(3):
        await collect(provider)

    assert len(counting_upstream.requests) == 3
    assert counting_upstream.connections == 1


async def test_an_error_sent_with_status_200_still_raises(
    upstream: FakeUpstream, provider: OpenAIProvider
) -> None:
    body = {"error": {"message": "The server had an error", "type": "server_error", "code": None}}
    upstream.add("POST", transcripts.CHAT_PATH, Reply.json(body))

    with pytest.raises(UnavailableError):
        await collect(provider)
    with pytest.raises(UnavailableError):
        await provider.complete(HELLO)


async def test_malformed_stream_data_is_unavailable(upstream: FakeUpstream, provider: OpenAIProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, Reply.sse([b"data: {not json\n\n"]))

    with pytest.raises(UnavailableError):
        await collect(provider)
