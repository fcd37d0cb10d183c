"""The OpenAI-compatible API, driven by the official `openai` SDK against a real socket."""

from __future__ import annotations

import base64
import struct
import time
from decimal import Decimal

import httpx
import openai
import pytest

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as transcript
from tests.server.conftest import Gateway
from tests.server.upstreams import openai_configuration

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _configure(live: Gateway, upstream: FakeUpstream | None = None) -> None:
    async def setup(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0})
        )
        await llm.configurations.create(
            ConfigurationCreate(slug="other", provider="demo", model="demo-chat", options={"delay_ms": 0})
        )
        if upstream is not None:
            await llm.configurations.create(
                openai_configuration(upstream, api_key="sk-upstream-secret-key-1234")
            )

    live.run(setup)


def _client(live: Gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.base_url}/v1", api_key=secret, max_retries=0)


def test_chat_sync_non_streaming(live: Gateway) -> None:
    _configure(live)
    with _client(live, live.token()) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="demo", messages=[{"role": "user", "content": "Hello there"}], max_tokens=5
        )
        completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert raw.headers["x-llm-manager-log-id"] == completion.id.removeprefix("chatcmpl-")
    assert Decimal(raw.headers["x-llm-manager-cost"]) == 0


async def test_chat_async_streaming_with_usage(live: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.text_stream())
    _configure(live, upstream)
    client = openai.AsyncOpenAI(base_url=f"{live.base_url}/v1", api_key=live.token(), max_retries=0)
    async with client:
        stream = await client.chat.completions.create(
            model="gpt",
            messages=[{"role": "user", "content": "Capital of the UK?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == transcript.TEXT_STREAM_TEXT
    usage = chunks[-1].usage
    assert usage is not None
    assert chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        transcript.TEXT_STREAM_USAGE.prompt_tokens,
        transcript.TEXT_STREAM_USAGE.completion_tokens,
    )
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    forwarded = upstream.requests[-1].json()
    assert forwarded["model"] == "gpt-4o-mini"
    assert forwarded["stream"] is True


def test_stream_without_include_usage_has_no_usage_chunk(live: Gateway) -> None:
    _configure(live)
    with _client(live, live.token()) as client:
        chunks = list(
            client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=3
            )
        )
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)


def test_tools_round_trip(live: Gateway, upstream: FakeUpstream) -> None:
    upstream.add(
        "POST", transcript.CHAT_PATH, transcript.tool_call_stream(), transcript.tool_call_completion()
    )
    _configure(live, upstream)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_capital",
                "description": "Capital of a country",
                "parameters": {"type": "object", "properties": {"country": {"type": "string"}}},
            },
        }
    ]
    with _client(live, live.token()) as client:
        stream = client.chat.completions.create(
            model="gpt",
            messages=[{"role": "user", "content": "UK?"}],
            tools=tools,
            stream=True,  # type: ignore[arg-type]
        )
        fragments: dict[int, dict[str, str]] = {}
        for chunk in stream:
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                entry = fragments.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
        whole = client.chat.completions.create(
            model="gpt",
            messages=[{"role": "user", "content": "UK?"}],
            tools=tools,
            tool_choice="auto",  # type: ignore[arg-type]
        )
    expected = transcript.TOOL_CALL_STREAM_CALLS[0]
    assert fragments[0] == {"id": expected.id, "name": expected.name, "arguments": expected.arguments}
    assert whole.choices[0].finish_reason == "tool_calls"
    calls = whole.choices[0].message.tool_calls or []
    assert [call.function.name for call in calls] == [
        call.name for call in transcript.TOOL_CALL_COMPLETION_CALLS
    ]  # type: ignore[union-attr]
    forwarded = upstream.requests[0].json()
    assert forwarded["tools"][0]["function"]["name"] == "get_capital"


def test_embeddings_float_and_base64(live: Gateway) -> None:
    _configure(live)
    with _client(live, live.token()) as client:
        floats = client.embeddings.create(model="demo", input=["one", "two"], encoding_format="float")
        packed = client.embeddings.create(model="demo", input="one")  # the SDK asks for base64 by default
        raw = httpx.post(
            f"{live.base_url}/v1/embeddings",
            json={"model": "demo", "input": "one", "encoding_format": "base64"},
            headers=live.headers(live.token("app")),
        )
    assert len(floats.data) == 2
    assert len(floats.data[0].embedding) == 16
    assert packed.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)
    encoded = raw.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = struct.unpack("<16f", base64.b64decode(encoded))
    assert list(decoded) == pytest.approx(floats.data[0].embedding, rel=1e-6)
    assert raw.headers["x-llm-manager-log-id"]


def test_models_lists_only_what_the_token_may_use(live: Gateway) -> None:
    _configure(live)
    with _client(live, live.token(configurations=["demo"])) as client:
        assert [model.id for model in client.models.list()] == ["demo"]
    with _client(live, live.token()) as client:
        assert {model.id for model in client.models.list()} == {"demo", "other"}


def test_token_for_one_configuration_cannot_use_another(live: Gateway) -> None:
    _configure(live)
    with _client(live, live.token(configurations=["demo"])) as client:
        with pytest.raises(openai.NotFoundError) as refused:
            client.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])
        assert client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    assert "other" in str(refused.value)


def test_redirecting_fields_are_refused_not_forwarded(live: Gateway, upstream: FakeUpstream) -> None:
    _configure(live, upstream)
    secret = live.token()
    for field in ("base_url", "api_base", "api_key"):
        response = httpx.post(
            f"{live.base_url}/v1/chat/completions",
            json={
                "model": "gpt",
                "messages": [{"role": "user", "content": "hi"}],
                field: "http://evil.example",
            },
            headers=live.headers(secret),
        )
        assert response.status_code == 400
        assert response.json()["error"]["param"] == field
    assert upstream.requests == []


def test_invalid_parameters_name_the_field(live: Gateway) -> None:
    _configure(live)
    with _client(live, live.token()) as client, pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}], temperature=3
        )
    assert refused.value.body["param"] == "body.temperature"  # type: ignore[index]


def test_upstream_error_before_first_byte_keeps_its_status(live: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.error_reply("authentication"))
    _configure(live, upstream)
    with _client(live, live.token()) as client, pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert failed.value.status_code == 502
    assert "sk-upstream-secret-key-1234" not in failed.value.response.text


def test_client_hanging_up_closes_upstream_and_bills_the_partial(
    live: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.text_stream(chunk_delay=0.3))
    _configure(live, upstream)
    body = {"model": "gpt", "messages": [{"role": "user", "content": "UK?"}], "stream": True}
    with httpx.stream(
        "POST", f"{live.base_url}/v1/chat/completions", json=body, headers=live.headers(live.token())
    ) as response:
        log_id = response.headers["x-llm-manager-log-id"]
        for line in response.iter_lines():
            if '"content":"The"' in line:
                break
    assert upstream.aborted.wait(10), "the upstream request was not closed"
    row = None
    for _ in range(200):
        row = live.run(lambda llm: llm.usage.get(log_id))
        if row is not None:
            break
        time.sleep(0.05)
    assert row is not None
    assert row.status == "cancelled"
    assert row.response_chars == len("The")
