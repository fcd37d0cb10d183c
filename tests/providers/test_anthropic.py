"""The Anthropic adapter against recorded Messages API bytes served by a real socket server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator
from typing import cast

import pytest

from llm_manager.errors import InvalidInputError, ProviderError, RateLimitedError, UnavailableError
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers.anthropic import AnthropicProvider
from llm_manager.providers.base import ProviderConnection
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from llm_manager.testing.transcripts import anthropic as transcripts
from llm_manager.types import (
    ChatRequest,
    Finish,
    GenerationParams,
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolDefinition,
    UsageReport,
)
from tests.providers.streams import build, drain

KEY = "sk-ant-secret-123"
MODEL = "claude-sonnet-4-5"
HELLO = ChatRequest(model=MODEL, messages=(Message(role="user", content="Two names for a pet pelican"),))
WEATHER_TOOL = ToolDefinition(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


def make_provider(http: UpstreamClient, base_url: str, api_key: str | None = KEY) -> AnthropicProvider:
    return AnthropicProvider(ProviderConnection(base_url=base_url, api_key=api_key), http)


@pytest.fixture
def provider(upstream: FakeUpstream, http: UpstreamClient) -> AnthropicProvider:
    return make_provider(http, transcripts.base_url(upstream.url))


async def collect(provider: AnthropicProvider, request: ChatRequest = HELLO) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


async def test_streamed_text_yields_each_delta_merged_usage_and_one_finish(
    upstream: FakeUpstream, provider: AnthropicProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())

    events = await collect(provider)

    builder = build(events)
    assert builder.text == transcripts.TEXT_STREAM_TEXT
    assert sum(isinstance(event, TextDelta) for event in events) == transcripts.TEXT_STREAM_CHUNKS
    assert builder.usage == transcripts.TEXT_STREAM_USAGE
    assert [event for event in events if isinstance(event, Finish)] == [
        Finish(reason="stop", model=transcripts.TEXT_STREAM_MODEL)
    ]
    assert isinstance(events[-1], Finish)
    assert upstream.requests[0].json()["stream"] is True


async def test_complete_uses_the_plain_endpoint(upstream: FakeUpstream, provider: AnthropicProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_completion())

    completion = await provider.complete(HELLO)

    assert completion.text == transcripts.TEXT_COMPLETION_TEXT
    assert completion.usage == transcripts.TEXT_COMPLETION_USAGE
    assert completion.finish_reason == "stop"
    assert completion.model == "claude-3-opus-20240229"
    assert upstream.requests[0].json()["stream"] is False


async def test_complete_returns_tool_use_blocks_as_calls(
    upstream: FakeUpstream, provider: AnthropicProvider
) -> None:
    body = (
        b'{"id":"msg_011S3wxtqL5CVescWqS3zeg2","type":"message","role":"assistant",'
        b'"model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"Looking."},'
        b'{"type":"tool_use","id":"toolu_0167cfEnoQaPviGdVXA95zcu","name":"retrieve_entity_info",'
        b'"input":{"name":"Alice"}}],"stop_reason":"tool_use","stop_sequence":null,'
        b'"usage":{"input_tokens":423,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
        b'"output_tokens":202}}'
    )
    upstream.add("POST", transcripts.CHAT_PATH, Reply.json(body))

    completion = await provider.complete(HELLO)

    assert completion.tool_calls == (
        ToolCall(
            id="toolu_0167cfEnoQaPviGdVXA95zcu", name="retrieve_entity_info", arguments='{"name":"Alice"}'
        ),
    )
    assert completion.finish_reason == "tool_calls"


async def test_streamed_tool_call_fragments_assemble_into_the_recorded_call(
    upstream: FakeUpstream, provider: AnthropicProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.tool_call_stream())

    builder = build(await collect(provider))

    assert builder.tool_calls == transcripts.TOOL_CALL_STREAM_CALLS
    assert builder.text == transcripts.TOOL_CALL_STREAM_TEXT
    assert builder.usage == transcripts.TOOL_CALL_STREAM_USAGE
    assert builder.finish_reason == "tool_calls"


async def test_cache_tokens_count_as_part_of_the_prompt(
    upstream: FakeUpstream, provider: AnthropicProvider
) -> None:
    start = (
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-haiku-4-5",'
        b'"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":5,'
        b'"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1}}}\n\n'
    )
    delta = (
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        b'"stop_sequence":null},"usage":{"output_tokens":10}}\n\n'
    )
    *middle, _delta, stop = transcripts.text_stream().chunks[1:]
    upstream.add("POST", transcripts.CHAT_PATH, Reply.sse([start, *middle, delta, stop]))

    usage = build(await collect(provider)).usage

    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (2105, 2000, 100)
    assert usage.completion_tokens == 10


@pytest.mark.parametrize("kind", sorted(transcripts.ERROR_KINDS))
@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "complete"])
async def test_error_replies_map_to_the_error_tree(
    upstream: FakeUpstream, provider: AnthropicProvider, kind: str, streamed: bool
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply(kind))

    with pytest.raises(ProviderError) as caught:
        await (collect(provider) if streamed else provider.complete(HELLO))

    assert type(caught.value) is transcripts.ERROR_KINDS[kind]
    assert caught.value.provider == "anthropic"
    assert caught.value.status_code is not None
    assert caught.value.retry_after is None


async def test_rate_limit_carries_retry_after(upstream: FakeUpstream, provider: AnthropicProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply("rate_limited", retry_after="7"))

    with pytest.raises(RateLimitedError) as caught:
        await collect(provider)

    assert caught.value.retry_after == 7.0
    assert caught.value.upstream_code == "rate_limit_error"


async def test_error_event_mid_stream_raises_after_the_text_so_far(
    upstream: FakeUpstream, provider: AnthropicProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.mid_stream_error())
    seen: list[StreamEvent] = []

    with pytest.raises(transcripts.MID_STREAM_ERROR_CLASS) as caught:
        await drain(provider.stream(HELLO), seen)

    assert build(seen).text == transcripts.MID_STREAM_ERROR_TEXT
    assert caught.value.upstream_code == "overloaded_error"
    assert caught.value.retryable


async def test_dropped_connection_is_unavailable(upstream: FakeUpstream, provider: AnthropicProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream(drop_after=5))

    with pytest.raises(UnavailableError):
        await collect(provider)


async def test_stream_ending_without_message_stop_is_unavailable(
    upstream: FakeUpstream, provider: AnthropicProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, Reply.sse(transcripts.text_stream().chunks[:6]))

    with pytest.raises(UnavailableError, match="message_stop"):
        await collect(provider)


async def test_connection_refused_is_unavailable(http: UpstreamClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = make_provider(http, f"http://127.0.0.1:{port}")

    with pytest.raises(UnavailableError):
        await collect(provider)


async def test_closing_the_stream_early_closes_the_upstream_response(
    upstream: FakeUpstream, provider: AnthropicProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream(chunk_delay=0.05))
    stream = cast(AsyncGenerator[StreamEvent, None], provider.stream(HELLO))

    events = [await anext(stream) for _ in range(3)]
    await stream.aclose()

    assert any(isinstance(event, TextDelta) for event in events)
    assert await asyncio.to_thread(upstream.aborted.wait, 5)


async def test_request_body_maps_system_tools_results_and_params(
    upstream: FakeUpstream, provider: AnthropicProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())
    request = ChatRequest(
        model=MODEL,
        messages=(
            Message(role="system", content="Be brief."),
            Message(role="user", content="Weather in Paris and Rome?"),
            Message(
                role="assistant",
                content="Checking.",
                tool_calls=(
                    ToolCall(id="toolu_1", name="get_weather", arguments='{"location": "Paris"}'),
                    ToolCall(id="toolu_2", name="get_weather", arguments='{"location":"Rome"}'),
                ),
            ),
            Message(role="tool", content="18C", tool_call_id="toolu_1"),
            Message(role="tool", content="21C", tool_call_id="toolu_2"),
            Message(role="user", content="Thanks"),
        ),
        params=GenerationParams(temperature=0.5, top_p=0.9, top_k=40, stop="END", seed=7),
        tools=(WEATHER_TOOL,),
        tool_choice="required",
    )

    await collect(provider, request)

    assert upstream.requests[0].json() == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "get_weather",
                        "input": {"location": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "21C"},
                ],
            },
            {"role": "user", "content": "Thanks"},
        ],
        "stream": True,
        "system": "Be brief.",
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": WEATHER_TOOL.parameters,
            }
        ],
        "tool_choice": {"type": "any"},
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
async def test_tool_choice_mapping(
    upstream: FakeUpstream, provider: AnthropicProvider, choice: str, expected: dict[str, str]
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_completion())
    request = ChatRequest(model=MODEL, messages=HELLO.messages, tools=(WEATHER_TOOL,), tool_choice=choice)

    await provider.complete(request)

    assert upstream.requests[0].json()["tool_choice"] == expected


async def test_explicit_max_tokens_is_sent(upstream: FakeUpstream, provider: AnthropicProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_completion())
    request = ChatRequest(model=MODEL, messages=HELLO.messages, params=GenerationParams(max_tokens=256))

    await provider.complete(request)

    body = upstream.requests[0].json()
    assert body["max_tokens"] == 256
    assert "system" not in body
    assert "tools" not in body


async def test_tool_call_arguments_that_are_not_an_object_are_refused(provider: AnthropicProvider) -> None:
    bad = ToolCall(id="toolu_1", name="get_weather", arguments="[1, 2]")
    request = ChatRequest(
        model=MODEL, messages=(*HELLO.messages, Message(role="assistant", tool_calls=(bad,)))
    )

    with pytest.raises(InvalidInputError):
        await provider.complete(request)


async def test_auth_headers(upstream: FakeUpstream, provider: AnthropicProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())

    await collect(provider)

    headers = upstream.requests[0].headers
    assert headers["x-api-key"] == KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["content-type"] == "application/json"
    assert "authorization" not in headers


async def test_list_models(upstream: FakeUpstream, provider: AnthropicProvider) -> None:
    upstream.add("GET", transcripts.MODELS_PATH, transcripts.models_reply())

    models = await provider.list_models()

    assert tuple(model.id for model in models) == transcripts.MODEL_IDS
    assert models[0].name == "Claude Sonnet 4.5"
    assert models[1].context_length == 200000
    assert upstream.requests[0].headers["x-api-key"] == KEY


async def test_list_models_follows_pagination(upstream: FakeUpstream, provider: AnthropicProvider) -> None:
    first = {"data": [{"type": "model", "id": "a", "display_name": "A"}], "has_more": True, "last_id": "a"}
    second = {"data": [{"type": "model", "id": "b", "display_name": "B"}], "has_more": False, "last_id": "b"}
    upstream.add("GET", transcripts.MODELS_PATH, Reply.json(first), Reply.json(second))

    models = await provider.list_models()

    assert [model.id for model in models] == ["a", "b"]
    assert "after_id=a" in upstream.requests[1].path


async def test_no_secret_in_error_messages(upstream: FakeUpstream, http: UpstreamClient) -> None:
    secret = "plain-key-without-prefix-42"
    body = (
        '{"type":"error","error":{"type":"authentication_error",'
        f'"message":"invalid x-api-key {KEY} (also {secret})"}}}}'
    ).encode()
    upstream.add("POST", transcripts.CHAT_PATH, Reply.json(body, status=401))
    provider = make_provider(http, upstream.url, api_key=secret)

    with pytest.raises(ProviderError) as caught:
        await collect(provider)

    for text in (str(caught.value), repr(caught.value), caught.value.message):
        assert KEY not in text
        assert secret not in text
    assert secret not in repr(provider)


async def test_usage_reports_arrive_as_events(upstream: FakeUpstream, provider: AnthropicProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())

    reports = [event for event in await collect(provider) if isinstance(event, UsageReport)]

    assert [report.usage.prompt_tokens for report in reports] == [17, 17]
    assert [report.usage.completion_tokens for report in reports] == [1, 10]


async def test_malformed_event_is_unavailable(upstream: FakeUpstream, provider: AnthropicProvider) -> None:
    first, *_rest = transcripts.text_stream().chunks
    upstream.add(
        "POST", transcripts.CHAT_PATH, Reply.sse([first, b"event: content_block_delta\ndata: {oops\n\n"])
    )

    with pytest.raises(UnavailableError, match="malformed"):
        await collect(provider)
