"""Our fakes and our adapter agree with the official `openai` SDK on the same bytes.

If the SDK parses a fake reply into the same text, tool calls and usage as our adapter does,
then the fake is a faithful upstream and our adapter reads it as OpenAI's own client would.
"""

from __future__ import annotations

from types import ModuleType

import openai
import pytest

from llm_manager.errors import ProviderError
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers.base import ProviderConnection
from llm_manager.providers.openai import OpenAIProvider
from llm_manager.providers.openrouter import OpenRouterProvider
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as openai_transcripts
from llm_manager.testing.transcripts import openrouter as openrouter_transcripts
from llm_manager.types import ChatRequest, CompletionBuilder, Message, ToolCall, Usage

MODEL = "gpt-4o-mini"
PROMPT = "What is the capital of the UK?"
HELLO = ChatRequest(model=MODEL, messages=(Message(role="user", content=PROMPT),))
SDK_MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]


def sdk(transcripts: ModuleType, upstream: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=transcripts.base_url(upstream.url), api_key="sk-test", max_retries=0)


async def ours(
    kind: type[OpenAIProvider], transcripts: ModuleType, upstream: FakeUpstream, http: UpstreamClient
) -> CompletionBuilder:
    provider = kind(ProviderConnection(base_url=transcripts.base_url(upstream.url), api_key="sk-test"), http)
    builder = CompletionBuilder()
    async for event in provider.stream(HELLO):
        builder.add(event)
    return builder


def sdk_usage(usage: openai.types.CompletionUsage | None) -> tuple[int, int, int, int]:
    assert usage is not None
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else None
    reasoning = usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else None
    return usage.prompt_tokens, usage.completion_tokens, cached or 0, reasoning or 0


def our_usage(usage: Usage | None) -> tuple[int, int, int, int]:
    assert usage is not None
    return usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens


def sdk_stream_text_and_usage(client: openai.OpenAI) -> tuple[str, tuple[int, int, int, int], str | None]:
    text: list[str] = []
    usage = None
    finish = None
    with client.chat.completions.create(
        model=MODEL, messages=SDK_MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
            usage = chunk.usage or usage
    return "".join(text), sdk_usage(usage), finish


@pytest.mark.parametrize(
    ("kind", "transcripts"),
    [(OpenAIProvider, openai_transcripts), (OpenRouterProvider, openrouter_transcripts)],
    ids=["openai", "openrouter"],
)
async def test_streamed_text_and_usage_match_the_sdk(
    upstream: FakeUpstream, http: UpstreamClient, kind: type[OpenAIProvider], transcripts: ModuleType
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())

    builder = await ours(kind, transcripts, upstream, http)
    text, usage, finish = sdk_stream_text_and_usage(sdk(transcripts, upstream))

    assert builder.text == text == transcripts.TEXT_STREAM_TEXT
    assert our_usage(builder.usage) == usage
    assert builder.finish_reason == finish


async def test_openrouter_cost_matches_the_sdk_extra_field(
    upstream: FakeUpstream, http: UpstreamClient
) -> None:
    transcripts = openrouter_transcripts
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream())

    builder = await ours(OpenRouterProvider, transcripts, upstream, http)
    with sdk(transcripts, upstream).chat.completions.create(
        model=MODEL, messages=SDK_MESSAGES, stream=True
    ) as stream:
        usages = [chunk.usage for chunk in stream if chunk.usage]

    assert builder.usage is not None
    assert builder.usage.reported_cost is not None
    assert float(builder.usage.reported_cost) == usages[-1].model_extra["cost"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (openai_transcripts.tool_call_stream, openai_transcripts.TOOL_CALL_STREAM_CALLS),
        (openai_transcripts.parallel_tool_call_stream, openai_transcripts.PARALLEL_TOOL_CALL_STREAM_CALLS),
    ],
    ids=["single", "parallel"],
)
async def test_streamed_tool_calls_match_the_sdk_accumulator(
    upstream: FakeUpstream, http: UpstreamClient, reply: object, expected: tuple[ToolCall, ...]
) -> None:
    transcripts = openai_transcripts
    upstream.add("POST", transcripts.CHAT_PATH, reply())  # type: ignore[operator]

    builder = await ours(OpenAIProvider, transcripts, upstream, http)
    with sdk(transcripts, upstream).chat.completions.stream(model=MODEL, messages=SDK_MESSAGES) as stream:
        final = stream.get_final_completion()

    message = final.choices[0].message
    assert message.tool_calls is not None
    sdk_calls = tuple(
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
        for call in message.tool_calls
        if call.type == "function"
    )
    assert builder.tool_calls == sdk_calls == expected
    assert builder.finish_reason == final.choices[0].finish_reason == "tool_calls"
    assert our_usage(builder.usage) == sdk_usage(final.usage)


@pytest.mark.parametrize(
    ("kind", "transcripts"),
    [(OpenAIProvider, openai_transcripts), (OpenRouterProvider, openrouter_transcripts)],
    ids=["openai", "openrouter"],
)
async def test_non_streamed_text_matches_the_sdk(
    upstream: FakeUpstream, http: UpstreamClient, kind: type[OpenAIProvider], transcripts: ModuleType
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_completion())
    provider = kind(ProviderConnection(base_url=transcripts.base_url(upstream.url), api_key="sk-test"), http)

    completion = await provider.complete(HELLO)
    response = sdk(transcripts, upstream).chat.completions.create(model=MODEL, messages=SDK_MESSAGES)

    assert completion.text == response.choices[0].message.content == transcripts.TEXT_COMPLETION_TEXT
    assert our_usage(completion.usage) == sdk_usage(response.usage)
    assert completion.model == response.model
    assert completion.finish_reason == response.choices[0].finish_reason


async def test_base64_embeddings_match_the_sdk(upstream: FakeUpstream, http: UpstreamClient) -> None:
    transcripts = openai_transcripts
    upstream.add("POST", transcripts.EMBEDDINGS_PATH, transcripts.embeddings_reply("base64"))
    provider = OpenAIProvider(
        ProviderConnection(base_url=transcripts.base_url(upstream.url), api_key="k"), http
    )

    ours_ = await provider.embed("text-embedding-3-small", ["Hello, world!"])
    theirs = sdk(transcripts, upstream).embeddings.create(
        model="text-embedding-3-small", input=["Hello, world!"]
    )

    # The SDK asks for base64 too, so the fake's reply is exactly what it expects to decode.
    assert upstream.requests[-1].json()["encoding_format"] == "base64"
    assert ours_.vectors == (tuple(theirs.data[0].embedding),)
    assert ours_.usage is not None
    assert ours_.usage.prompt_tokens == theirs.usage.prompt_tokens


@pytest.mark.parametrize(
    ("kind", "transcripts"),
    [(OpenAIProvider, openai_transcripts), (OpenRouterProvider, openrouter_transcripts)],
    ids=["openai", "openrouter"],
)
async def test_mid_stream_error_raises_in_the_sdk_as_in_our_adapter(
    upstream: FakeUpstream, http: UpstreamClient, kind: type[OpenAIProvider], transcripts: ModuleType
) -> None:
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.mid_stream_error())
    client = sdk(transcripts, upstream)

    with pytest.raises(ProviderError):
        await ours(kind, transcripts, upstream, http)
    with pytest.raises(openai.APIError):
        sdk_stream_text_and_usage(client)


async def test_async_sdk_reads_the_same_stream(upstream: FakeUpstream, http: UpstreamClient) -> None:
    transcripts = openai_transcripts
    upstream.add("POST", transcripts.CHAT_PATH, transcripts.text_stream(chunk_delay=0.001))
    client = openai.AsyncOpenAI(base_url=transcripts.base_url(upstream.url), api_key="sk-test", max_retries=0)

    builder = await ours(OpenAIProvider, transcripts, upstream, http)
    text: list[str] = []
    usage = None
    async with client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=SDK_MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            text.extend(choice.delta.content or "" for choice in chunk.choices)
            usage = chunk.usage or usage

    assert builder.text == "".join(text)
    assert our_usage(builder.usage) == sdk_usage(usage)
