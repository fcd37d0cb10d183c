"""Our adapters read the fake bytes exactly as the official `anthropic` and `ollama` SDKs do.

If a transcript drifted from what the real APIs send, the SDKs would disagree with it (or fail),
so this guards both the fakes and the adapters. The SDKs are synchronous; they run in a thread
while the fake server answers from its own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import ollama
import pytest

from llm_manager.errors import ProviderError
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers.anthropic import AnthropicProvider
from llm_manager.providers.base import ProviderConnection
from llm_manager.providers.ollama import OllamaProvider
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import anthropic as anthropic_transcripts
from llm_manager.testing.transcripts import ollama as ollama_transcripts
from llm_manager.types import ChatRequest, CompletionBuilder, Message, TextDelta

PROMPT = [{"role": "user", "content": "hello"}]


async def our_stream(provider: AnthropicProvider | OllamaProvider, model: str) -> CompletionBuilder:
    builder = CompletionBuilder()
    request = ChatRequest(model=model, messages=(Message(role="user", content="hello"),))
    async for event in provider.stream(request):
        builder.add(event)
    return builder


# Anthropic -------------------------------------------------------------------------------------


@pytest.fixture
def anthropic_client(upstream: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant-test", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def ours_anthropic(upstream: FakeUpstream, http: UpstreamClient) -> AnthropicProvider:
    connection = ProviderConnection(
        base_url=anthropic_transcripts.base_url(upstream.url), api_key="sk-ant-test"
    )
    return AnthropicProvider(connection, http)


def sdk_anthropic_stream(client: anthropic.Anthropic) -> tuple[list[str], Any]:
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=PROMPT) as stream:  # type: ignore[arg-type]
        texts = list(stream.text_stream)
        return texts, stream.get_final_message()


def anthropic_prompt_tokens(usage: Any) -> int:
    return int(
        usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    )


@pytest.mark.parametrize("transcript", ["text_stream", "tool_call_stream"])
async def test_anthropic_stream_matches_the_sdk(
    upstream: FakeUpstream,
    anthropic_client: anthropic.Anthropic,
    ours_anthropic: AnthropicProvider,
    transcript: str,
) -> None:
    upstream.add("POST", anthropic_transcripts.CHAT_PATH, getattr(anthropic_transcripts, transcript)())

    texts, message = await asyncio.to_thread(sdk_anthropic_stream, anthropic_client)
    ours = await our_stream(ours_anthropic, "claude-haiku-4-5")

    assert ours.text == "".join(texts)
    sdk_calls = [(block.id, block.name, block.input) for block in message.content if block.type == "tool_use"]
    assert [(call.id, call.name, json.loads(call.arguments)) for call in ours.tool_calls] == sdk_calls
    assert ours.usage is not None
    assert ours.usage.prompt_tokens == anthropic_prompt_tokens(message.usage)
    assert ours.usage.completion_tokens == message.usage.output_tokens
    assert ours.usage.cached_tokens == (message.usage.cache_read_input_tokens or 0)
    assert ours.model == message.model


async def test_anthropic_text_chunks_match_the_sdk(
    upstream: FakeUpstream, anthropic_client: anthropic.Anthropic, ours_anthropic: AnthropicProvider
) -> None:
    upstream.add("POST", anthropic_transcripts.CHAT_PATH, anthropic_transcripts.text_stream())

    texts, _message = await asyncio.to_thread(sdk_anthropic_stream, anthropic_client)
    request = ChatRequest(model="claude-haiku-4-5", messages=(Message(role="user", content="hello"),))
    ours = [event.text async for event in ours_anthropic.stream(request) if isinstance(event, TextDelta)]

    assert ours == texts
    assert len(ours) == anthropic_transcripts.TEXT_STREAM_CHUNKS


async def test_anthropic_complete_matches_the_sdk(
    upstream: FakeUpstream, anthropic_client: anthropic.Anthropic, ours_anthropic: AnthropicProvider
) -> None:
    upstream.add("POST", anthropic_transcripts.CHAT_PATH, anthropic_transcripts.text_completion())

    def create() -> Any:
        return anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=PROMPT)  # type: ignore[arg-type]

    message = await asyncio.to_thread(create)
    ours = await ours_anthropic.complete(
        ChatRequest(model="claude-haiku-4-5", messages=(Message(role="user", content="hello"),))
    )

    assert ours.text == "".join(block.text for block in message.content if block.type == "text")
    assert ours.usage is not None
    assert ours.usage.prompt_tokens == anthropic_prompt_tokens(message.usage)
    assert ours.usage.completion_tokens == message.usage.output_tokens


async def test_anthropic_error_event_raises_in_both(
    upstream: FakeUpstream, anthropic_client: anthropic.Anthropic, ours_anthropic: AnthropicProvider
) -> None:
    upstream.add("POST", anthropic_transcripts.CHAT_PATH, anthropic_transcripts.mid_stream_error())

    with pytest.raises(anthropic.APIStatusError) as sdk_error:
        await asyncio.to_thread(sdk_anthropic_stream, anthropic_client)
    with pytest.raises(anthropic_transcripts.MID_STREAM_ERROR_CLASS) as our_error:
        await our_stream(ours_anthropic, "claude-haiku-4-5")

    assert sdk_error.value.type == our_error.value.upstream_code == "overloaded_error"


@pytest.mark.parametrize("kind", sorted(anthropic_transcripts.ERROR_KINDS))
async def test_anthropic_error_statuses_match_the_sdk(
    upstream: FakeUpstream,
    anthropic_client: anthropic.Anthropic,
    ours_anthropic: AnthropicProvider,
    kind: str,
) -> None:
    upstream.add("POST", anthropic_transcripts.CHAT_PATH, anthropic_transcripts.error_reply(kind))

    with pytest.raises(anthropic.APIStatusError) as sdk_error:
        await asyncio.to_thread(sdk_anthropic_stream, anthropic_client)
    with pytest.raises(ProviderError) as our_error:
        await our_stream(ours_anthropic, "claude-haiku-4-5")

    assert our_error.value.status_code == sdk_error.value.status_code
    assert our_error.value.upstream_code == sdk_error.value.type


async def test_anthropic_models_match_the_sdk(
    upstream: FakeUpstream, anthropic_client: anthropic.Anthropic, ours_anthropic: AnthropicProvider
) -> None:
    upstream.add("GET", anthropic_transcripts.MODELS_PATH, anthropic_transcripts.models_reply())

    sdk_models = await asyncio.to_thread(
        lambda: [(m.id, m.display_name) for m in anthropic_client.models.list()]
    )
    ours = await ours_anthropic.list_models()

    assert [(model.id, model.name) for model in ours] == sdk_models


# Ollama ----------------------------------------------------------------------------------------


@pytest.fixture
def ollama_client(upstream: FakeUpstream) -> Iterator[ollama.Client]:
    client = ollama.Client(host=upstream.url)
    yield client
    client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def ours_ollama(upstream: FakeUpstream, http: UpstreamClient) -> OllamaProvider:
    return OllamaProvider(ProviderConnection(base_url=ollama_transcripts.base_url(upstream.url)), http)


def sdk_ollama_stream(client: ollama.Client) -> list[Any]:
    return list(client.chat(model="llama3.2", messages=PROMPT, stream=True))


@pytest.mark.parametrize("transcript", ["text_stream", "tool_call_stream"])
async def test_ollama_stream_matches_the_sdk(
    upstream: FakeUpstream, ollama_client: ollama.Client, ours_ollama: OllamaProvider, transcript: str
) -> None:
    upstream.add("POST", ollama_transcripts.CHAT_PATH, getattr(ollama_transcripts, transcript)())

    parts = await asyncio.to_thread(sdk_ollama_stream, ollama_client)
    ours = await our_stream(ours_ollama, "llama3.2")

    assert ours.text == "".join(part.message.content or "" for part in parts)
    sdk_calls = [
        (call.function.name, dict(call.function.arguments))
        for part in parts
        for call in part.message.tool_calls or ()
    ]
    assert [(call.name, json.loads(call.arguments)) for call in ours.tool_calls] == sdk_calls
    final = parts[-1]
    assert final.done
    assert ours.usage is not None
    assert (ours.usage.prompt_tokens, ours.usage.completion_tokens) == (
        final.prompt_eval_count,
        final.eval_count,
    )
    assert ours.model == final.model


async def test_ollama_error_line_raises_in_both(
    upstream: FakeUpstream, ollama_client: ollama.Client, ours_ollama: OllamaProvider
) -> None:
    upstream.add("POST", ollama_transcripts.CHAT_PATH, ollama_transcripts.mid_stream_error())

    with pytest.raises(ollama.ResponseError) as sdk_error:
        await asyncio.to_thread(sdk_ollama_stream, ollama_client)
    with pytest.raises(ollama_transcripts.MID_STREAM_ERROR_CLASS) as our_error:
        await our_stream(ours_ollama, "llama3.2")

    assert sdk_error.value.error == our_error.value.message


@pytest.mark.parametrize("kind", sorted(ollama_transcripts.ERROR_KINDS))
async def test_ollama_error_statuses_match_the_sdk(
    upstream: FakeUpstream, ollama_client: ollama.Client, ours_ollama: OllamaProvider, kind: str
) -> None:
    upstream.add("POST", ollama_transcripts.CHAT_PATH, ollama_transcripts.error_reply(kind))

    with pytest.raises(ollama.ResponseError) as sdk_error:
        await asyncio.to_thread(sdk_ollama_stream, ollama_client)
    with pytest.raises(ProviderError) as our_error:
        await our_stream(ours_ollama, "llama3.2")

    assert our_error.value.status_code == sdk_error.value.status_code
    assert our_error.value.message == sdk_error.value.error


async def test_ollama_embed_matches_the_sdk(
    upstream: FakeUpstream, ollama_client: ollama.Client, ours_ollama: OllamaProvider
) -> None:
    upstream.add("POST", ollama_transcripts.EMBED_PATH, ollama_transcripts.embeddings_reply())

    sdk = await asyncio.to_thread(ollama_client.embed, model="all-minilm", input=["Why is the sky blue?"])
    ours = await ours_ollama.embed("all-minilm", ["Why is the sky blue?"])

    assert [list(vector) for vector in ours.vectors] == [list(vector) for vector in sdk.embeddings]
    assert ours.usage is not None
    assert ours.usage.prompt_tokens == sdk.prompt_eval_count


async def test_ollama_models_match_the_sdk(
    upstream: FakeUpstream, ollama_client: ollama.Client, ours_ollama: OllamaProvider
) -> None:
    upstream.add("GET", ollama_transcripts.MODELS_PATH, ollama_transcripts.models_reply())

    sdk = await asyncio.to_thread(ollama_client.list)
    ours = await ours_ollama.list_models()

    assert [model.id for model in ours] == [model.model for model in sdk.models]
