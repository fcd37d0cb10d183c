"""The Ollama adapter against documented native-API bytes served by a real socket server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator
from typing import cast

import pytest

from llm_manager.errors import ProviderError, RateLimitedError, UnavailableError
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers.base import ProviderConnection
from llm_manager.providers.ollama import OllamaProvider
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from llm_manager.testing.transcripts import ollama as transcripts
from llm_manager.types import (
    ChatRequest,
    Finish,
    GenerationParams,
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolDefinition,
    Usage,
)
from tests.providers.streams import build, drain

MODEL = "llama3.2"
HELLO = ChatRequest(model=MODEL, messages=(Message(role="user", content="why is the sky blue?"),))
WEATHER_TOOL = ToolDefinition(
    name="get_weather",
    description="Get the weather in a given city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def make_provider(http: UpstreamClient, base_url: str, api_key: str | None = None) -> OllamaProvider:
    return OllamaProvider(ProviderConnection(base_url=base_url, api_key=api_key), http)


@pytest.fixture
def provider(upstream: FakeUpstream, http: UpstreamClient) -> OllamaProvider:
    return make_provider(http, transcripts.base_url(upstream.url))


async def collect(provider: OllamaProvider, request: ChatRequest = HELLO) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


def test_capabilities() -> None:
    assert OllamaProvider.requires_api_key is False
    assert OllamaProvider.supports_embeddings is True
    assert OllamaProvider.free is True


async def test_streamed_text_yields_each_line_usage_and_one_finish(
    upstream: FakeUpstream, provider: OllamaProvider
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


async def test_complete_uses_stream_false(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_completion())

    completion = await provider.complete(HELLO)

    assert completion.text == transcripts.TEXT_COMPLETION_TEXT
    assert completion.usage == transcripts.TEXT_COMPLETION_USAGE
    assert completion.finish_reason == "stop"
    assert completion.model == MODEL
    assert upstream.requests[0].json()["stream"] is False


async def test_complete_returns_tool_calls(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    body = (
        b'{"model":"llama3.2","created_at":"2025-07-07T20:32:53.844124Z","message":{"role":"assistant",'
        b'"content":"","tool_calls":[{"id":"call_k3h8s0qz","function":{"index":0,"name":"get_weather",'
        b'"arguments":{"city":"Tokyo"}}}]},"done":true,"done_reason":"stop","total_duration":3244883583,'
        b'"load_duration":2969184542,"prompt_eval_count":169,"prompt_eval_duration":141656333,'
        b'"eval_count":18,"eval_duration":133293625}'
    )
    upstream.add("POST", transcripts.CHAT_PATH, Reply.json(body))

    completion = await provider.complete(HELLO)

    assert completion.tool_calls == transcripts.TOOL_CALL_STREAM_CALLS
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == Usage(prompt_tokens=169, completion_tokens=18)


async def test_streamed_whole_tool_calls_become_deltas(
    upstream: FakeUpstream, provider: OllamaProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.tool_call_stream())

    builder = build(await collect(provider))

    assert builder.tool_calls == transcripts.TOOL_CALL_STREAM_CALLS
    assert builder.usage == transcripts.TOOL_CALL_STREAM_USAGE
    assert builder.finish_reason == "tool_calls"


async def test_tool_calls_without_ids_get_distinct_ones(
    upstream: FakeUpstream, provider: OllamaProvider
) -> None:
    """Servers before mid-2025 send neither `id` nor `function.index`."""
    lines = [
        b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19.184789Z","message":{"role":"assistant",'
        b'"content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Tokyo"}}}]},'
        b'"done":false}\n',
        b'{"model":"llama3.2","created_at":"2025-07-07T20:22:19.184789Z","message":{"role":"assistant",'
        b'"content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},'
        b'"done":false}\n',
        transcripts.tool_call_stream().chunks[-1],
    ]
    upstream.add("POST", transcripts.CHAT_PATH, Reply.ndjson(lines))

    calls = build(await collect(provider)).tool_calls

    assert calls == (
        ToolCall(id="call_0", name="get_weather", arguments='{"city":"Tokyo"}'),
        ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
    )


async def test_done_reason_length_maps_to_length(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    *lines, done = transcripts.text_stream().chunks
    upstream.add("POST", transcripts.CHAT_PATH, Reply.ndjson([*lines, done.replace(b'"stop"', b'"length"')]))

    assert build(await collect(provider)).finish_reason == "length"


@pytest.mark.parametrize("kind", sorted(transcripts.ERROR_KINDS))
@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "complete"])
async def test_error_replies_map_to_the_error_tree(
    upstream: FakeUpstream, provider: OllamaProvider, kind: str, streamed: bool
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply(kind))

    with pytest.raises(ProviderError) as caught:
        await (collect(provider) if streamed else provider.complete(HELLO))

    assert type(caught.value) is transcripts.ERROR_KINDS[kind]
    assert caught.value.provider == "ollama"
    assert caught.value.status_code is not None
    assert caught.value.message


async def test_older_model_not_found_message(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add(
        "POST",
        transcripts.CHAT_PATH,
        Reply.json({"error": "model 'llama3' not found, try pulling it first"}, status=404),
    )

    with pytest.raises(ProviderError, match="llama3") as caught:
        await collect(provider)

    assert caught.value.code == "model_not_found"


async def test_rate_limit_carries_retry_after(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.error_reply("rate_limited", retry_after="12"))

    with pytest.raises(RateLimitedError) as caught:
        await collect(provider)

    assert caught.value.retry_after == 12.0


async def test_error_line_mid_stream_raises_after_the_text_so_far(
    upstream: FakeUpstream, provider: OllamaProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.mid_stream_error())
    seen: list[StreamEvent] = []

    with pytest.raises(transcripts.MID_STREAM_ERROR_CLASS, match="error was encountered"):
        await drain(provider.stream(HELLO), seen)

    assert build(seen).text == transcripts.MID_STREAM_ERROR_TEXT


async def test_dropped_connection_is_unavailable(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream(drop_after=2))

    with pytest.raises(UnavailableError):
        await collect(provider)


async def test_stream_ending_without_done_is_unavailable(
    upstream: FakeUpstream, provider: OllamaProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, Reply.ndjson(transcripts.text_stream().chunks[:3]))

    with pytest.raises(UnavailableError, match="final line"):
        await collect(provider)


async def test_connection_refused_is_unavailable(http: UpstreamClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = make_provider(http, f"http://127.0.0.1:{port}")

    with pytest.raises(UnavailableError):
        await collect(provider)
    with pytest.raises(UnavailableError):
        await provider.embed("all-minilm", ["x"])


async def test_closing_the_stream_early_closes_the_upstream_response(
    upstream: FakeUpstream, provider: OllamaProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream(chunk_delay=0.05))
    stream = cast(AsyncGenerator[StreamEvent, None], provider.stream(HELLO))

    events = [await anext(stream) for _ in range(3)]
    await stream.aclose()

    assert all(isinstance(event, TextDelta) for event in events)
    assert await asyncio.to_thread(upstream.aborted.wait, 5)


async def test_request_body_maps_messages_tools_and_options(
    upstream: FakeUpstream, provider: OllamaProvider
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())
    request = ChatRequest(
        model=MODEL,
        messages=(
            Message(role="system", content="Be brief."),
            Message(role="user", content="what is the weather in tokyo?"),
            Message(
                role="assistant",
                tool_calls=(ToolCall(id="call_k3h8s0qz", name="get_weather", arguments='{"city": "Tokyo"}'),),
            ),
            Message(role="tool", content="11 degrees celsius", tool_call_id="call_k3h8s0qz"),
        ),
        params=GenerationParams(
            temperature=0.2,
            max_tokens=100,
            top_p=0.9,
            top_k=40,
            stop=("\n\n",),
            seed=42,
            presence_penalty=0.5,
            frequency_penalty=0.25,
        ),
        tools=(WEATHER_TOOL,),
        tool_choice="auto",
    )

    await collect(provider, request)

    assert upstream.requests[0].json() == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "what is the weather in tokyo?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_k3h8s0qz",
                        "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}},
                    }
                ],
            },
            {
                "role": "tool",
                "content": "11 degrees celsius",
                "tool_name": "get_weather",
                "tool_call_id": "call_k3h8s0qz",
            },
        ],
        "stream": True,
        "options": {
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "seed": 42,
            "stop": ["\n\n"],
            "num_predict": 100,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.25,
        },
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the weather in a given city",
                    "parameters": WEATHER_TOOL.parameters,
                },
            }
        ],
    }


async def test_minimal_body_and_tool_choice_none(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_completion())
    request = ChatRequest(model=MODEL, messages=HELLO.messages, tools=(WEATHER_TOOL,), tool_choice="none")

    await provider.complete(request)

    assert upstream.requests[0].json() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "why is the sky blue?"}],
        "stream": False,
    }


async def test_no_authorization_without_a_key(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())

    await collect(provider)

    assert "authorization" not in upstream.requests[0].headers


async def test_bearer_key_for_ollama_cloud(upstream: FakeUpstream, http: UpstreamClient) -> None:
    upstream.add("GET", transcripts.MODELS_PATH, transcripts.models_reply())
    provider = make_provider(http, upstream.url, api_key="ollama-cloud-key")

    await provider.list_models()

    assert upstream.requests[0].headers["authorization"] == "Bearer ollama-cloud-key"


async def test_embed(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add("POST", transcripts.EMBED_PATH, transcripts.embeddings_reply())

    embeddings = await provider.embed("all-minilm", ["Why is the sky blue?"])

    assert embeddings.vectors == transcripts.EMBEDDINGS_VECTORS
    assert embeddings.usage == transcripts.EMBEDDINGS_USAGE
    assert embeddings.model == "all-minilm"
    assert upstream.requests[0].json() == {"model": "all-minilm", "input": ["Why is the sky blue?"]}


async def test_embed_error_maps(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add("POST", transcripts.EMBED_PATH, transcripts.error_reply("context_length"))

    with pytest.raises(ProviderError) as caught:
        await provider.embed("all-minilm", ["long"])

    assert type(caught.value) is transcripts.ERROR_KINDS["context_length"]


async def test_list_models(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add("GET", transcripts.MODELS_PATH, transcripts.models_reply())

    models = await provider.list_models()

    assert tuple(model.id for model in models) == transcripts.MODEL_IDS


async def test_no_secret_in_error_messages(upstream: FakeUpstream, http: UpstreamClient) -> None:
    key = "sk-ant-secret-123"
    plain = "plain-cloud-key-without-prefix"
    upstream.add(
        "POST", transcripts.CHAT_PATH, Reply.json({"error": f"unauthorized key {key} / {plain}"}, status=401)
    )
    provider = make_provider(http, upstream.url, api_key=plain)

    with pytest.raises(ProviderError) as caught:
        await collect(provider)

    for text in (str(caught.value), repr(caught.value), caught.value.message):
        assert key not in text
        assert plain not in text


async def test_malformed_line_is_unavailable(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    first, *_rest = transcripts.text_stream().chunks
    upstream.add("POST", transcripts.CHAT_PATH, Reply.ndjson([first, b"<html>bad gateway</html>\n"]))

    with pytest.raises(UnavailableError, match="malformed JSON"):
        await collect(provider)


async def test_non_json_success_body_is_unavailable(upstream: FakeUpstream, provider: OllamaProvider) -> None:
    upstream.add("GET", transcripts.MODELS_PATH, Reply(status=200, chunks=(b"<html></html>",)))

    with pytest.raises(UnavailableError, match="malformed"):
        await provider.list_models()
