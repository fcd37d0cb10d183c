"""The OpenAI-compatible API with the official SDK: what reaches the upstream (parameters over the
configuration's defaults, tool choice, a whole tools loop), redirecting fields and configuration
scopes refused on every inference route, and the async client for chat and embeddings."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as transcript
from tests.server.conftest import Gateway
from tests.server.upstreams import openai_configuration

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DEFAULTS = {"temperature": 0.2, "max_tokens": 64, "top_p": 0.5}
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
COUNTRY: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_user_country", "description": "The user's country"},
}
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def _configure(live: Gateway, upstream: FakeUpstream | None = None) -> None:
    async def setup(llm: LLMManager) -> None:
        for slug in ("demo", "other"):
            await llm.configurations.create(
                ConfigurationCreate(slug=slug, provider="demo", model="demo-chat", options={"delay_ms": 0})
            )
        if upstream is not None:
            await llm.configurations.create(
                openai_configuration(upstream, api_key="sk-upstream-secret-key-1234", default_params=DEFAULTS)
            )

    live.run(setup)


def _client(live: Gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.base_url}/v1", api_key=secret, max_retries=0)


def _forwarded(upstream: FakeUpstream, path: str = transcript.CHAT_PATH) -> list[dict[str, Any]]:
    return [request.json() for request in upstream.requests if request.path == path]


def test_request_parameters_override_the_configuration_defaults(
    live: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.text_completion())
    _configure(live, upstream)
    with _client(live, live.token()) as client:
        plain = client.chat.completions.create(model="gpt", messages=HI)
        tuned = client.chat.completions.create(model="gpt", messages=HI, temperature=1.3, max_tokens=7)
        newer = client.chat.completions.create(model="gpt", messages=HI, max_completion_tokens=9)
    assert plain.choices[0].message.content == transcript.TEXT_COMPLETION_TEXT
    assert tuned.choices[0].message.content == transcript.TEXT_COMPLETION_TEXT
    assert newer.model == "gpt"
    first, second, third = _forwarded(upstream)
    # OpenAI's adapter sends `max_tokens` as `max_completion_tokens`.
    assert (first["temperature"], first["max_completion_tokens"], first["top_p"]) == (0.2, 64, 0.5)
    assert (second["temperature"], second["max_completion_tokens"], second["top_p"]) == (1.3, 7, 0.5)
    assert (third["temperature"], third["max_completion_tokens"], third["top_p"]) == (0.2, 9, 0.5)
    assert all("max_tokens" not in body for body in (first, second, third))
    assert {body["model"] for body in (first, second, third)} == {"gpt-4o-mini"}
    assert {body["stream"] for body in (first, second, third)} == {False}


def test_a_named_function_tool_choice_is_forwarded_as_such(live: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.tool_call_completion())
    _configure(live, upstream)
    with _client(live, live.token()) as client:
        completion = client.chat.completions.create(
            model="gpt",
            messages=HI,
            tools=[WEATHER, COUNTRY],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    assert completion.choices[0].finish_reason == "tool_calls"
    forwarded = _forwarded(upstream)[0]
    assert forwarded["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert [tool["function"]["name"] for tool in forwarded["tools"]] == ["get_weather", "get_user_country"]
    assert forwarded["tools"][0]["function"]["parameters"] == WEATHER["function"]["parameters"]


@pytest.mark.parametrize("mode", ["required", "none", "auto"])
def test_a_tool_choice_mode_is_forwarded_as_such(
    live: Gateway, upstream: FakeUpstream, mode: Literal["required", "none", "auto"]
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.tool_call_completion())
    _configure(live, upstream)
    with _client(live, live.token()) as client:
        client.chat.completions.create(
            model="gpt",
            messages=HI,
            tools=[WEATHER],
            tool_choice=mode,
        )
    assert _forwarded(upstream)[0]["tool_choice"] == mode


def test_a_named_tool_choice_without_a_name_is_refused(live: Gateway, upstream: FakeUpstream) -> None:
    _configure(live, upstream)
    response = httpx.post(
        f"{live.base_url}/v1/chat/completions",
        json={
            "model": "gpt",
            "messages": HI,
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {}},
        },
        headers=live.headers(live.token()),
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tool_choice.function.name"
    assert upstream.requests == []


@pytest.mark.parametrize("mode", ["none", "auto", "required"])
def test_a_tool_named_like_a_mode_cannot_be_chosen_by_name(
    live: Gateway, upstream: FakeUpstream, mode: str
) -> None:
    """Sent on as the bare name, it would read as the mode: "none" would forbid the very tool."""
    _configure(live, upstream)
    response = httpx.post(
        f"{live.base_url}/v1/chat/completions",
        json={
            "model": "gpt",
            "messages": HI,
            "tools": [{"type": "function", "function": {"name": mode}}],
            "tool_choice": {"type": "function", "function": {"name": mode}},
        },
        headers=live.headers(live.token()),
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "tool_choice.function.name"
    assert "rename the tool" in error["message"]
    assert upstream.requests == []


def test_a_developer_message_reaches_the_upstream_as_the_system_message(
    live: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.text_completion())
    _configure(live, upstream)
    with _client(live, live.token()) as client:
        client.chat.completions.create(
            model="gpt",
            messages=[
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": "hi"},
            ],
        )
    [sent] = upstream.requests
    assert sent.json()["messages"][:2] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
    ]


def test_the_full_tools_loop_sends_the_call_and_its_result_back(
    live: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add(
        "POST", transcript.CHAT_PATH, transcript.tool_call_completion(), transcript.text_completion()
    )
    _configure(live, upstream)
    question: ChatCompletionMessageParam = {"role": "user", "content": "Where am I?"}
    with _client(live, live.token()) as client:
        first = client.chat.completions.create(model="gpt", messages=[question], tools=[COUNTRY])
        assert first.choices[0].finish_reason == "tool_calls"
        calls = first.choices[0].message.tool_calls or []
        assert len(calls) == 1
        call = calls[0]
        assert call.type == "function"
        expected = transcript.TOOL_CALL_COMPLETION_CALLS[0]
        assert (call.id, call.function.name, call.function.arguments) == (
            expected.id,
            expected.name,
            expected.arguments,
        )
        result = json.dumps({"country": "UK"})
        second = client.chat.completions.create(
            model="gpt",
            messages=[
                question,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.function.name, "arguments": call.function.arguments},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call.id, "content": result},
            ],
            tools=[COUNTRY],
        )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == transcript.TEXT_COMPLETION_TEXT
    forwarded = _forwarded(upstream)
    assert len(forwarded) == 2
    assert forwarded[1]["messages"] == [
        {"role": "user", "content": "Where am I?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": expected.id,
                    "type": "function",
                    "function": {"name": expected.name, "arguments": expected.arguments},
                }
            ],
        },
        {"role": "tool", "content": result, "tool_call_id": expected.id},
    ]
    assert [tool["function"]["name"] for tool in forwarded[1]["tools"]] == ["get_user_country"]


@pytest.mark.parametrize("field", ["base_url", "api_base", "api_key"])
def test_redirecting_fields_are_refused_on_embeddings(
    live: Gateway, upstream: FakeUpstream, field: str
) -> None:
    upstream.add("POST", transcript.EMBEDDINGS_PATH, transcript.embeddings_reply())
    _configure(live, upstream)
    response = httpx.post(
        f"{live.base_url}/v1/embeddings",
        json={"model": "gpt", "input": "hello", field: "http://evil.example"},
        headers=live.headers(live.token()),
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field
    assert field in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("field", ["base_url", "api_base", "api_key"])
def test_redirecting_fields_are_refused_on_post_stream(
    live: Gateway, upstream: FakeUpstream, field: str
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.text_stream())
    _configure(live, upstream)
    secret = live.token()
    top_level = httpx.post(
        f"{live.base_url}/api/stream",
        json={"configuration": "gpt", "prompt": "hi", field: "http://evil.example"},
        headers=live.headers(secret),
    )
    in_params = httpx.post(
        f"{live.base_url}/api/stream",
        json={"configuration": "gpt", "prompt": "hi", "params": {field: "http://evil.example"}},
        headers=live.headers(secret),
    )
    assert top_level.status_code == 400
    assert top_level.json()["error"]["param"] == field
    assert field in top_level.json()["error"]["message"]
    assert in_params.status_code == 400
    assert in_params.json()["error"]["param"] == f"params.{field}"
    assert upstream.requests == []


def test_a_token_for_one_configuration_cannot_embed_with_another(live: Gateway) -> None:
    _configure(live)
    with _client(live, live.token(configurations=["demo"])) as client:
        with pytest.raises(openai.NotFoundError) as refused:
            client.embeddings.create(model="other", input="hello")
        allowed = client.embeddings.create(model="demo", input="hello", encoding_format="float")
    assert "other" in str(refused.value)
    assert len(allowed.data[0].embedding) == 16


def test_a_token_for_one_configuration_cannot_stream_with_another(live: Gateway) -> None:
    _configure(live)
    secret = live.token(configurations=["demo"])
    refused = httpx.post(
        f"{live.base_url}/api/stream",
        json={"configuration": "other", "prompt": "hi", "params": {"max_tokens": 2}},
        headers=live.headers(secret),
    )
    allowed = httpx.post(
        f"{live.base_url}/api/stream",
        json={"configuration": "demo", "prompt": "hi", "params": {"max_tokens": 2}},
        headers=live.headers(secret),
    )
    assert refused.status_code == 404
    assert refused.json()["error"]["type"] == "not_found_error"
    assert "other" in refused.json()["error"]["message"]
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("text/event-stream")
    assert '"type":"done"' in allowed.text.replace(" ", "")


async def test_async_client_non_streaming_chat(live: Gateway) -> None:
    _configure(live)
    async with openai.AsyncOpenAI(
        base_url=f"{live.base_url}/v1", api_key=live.token(), max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hello async"}], max_tokens=5
        )
    assert completion.object == "chat.completion"
    assert completion.model == "demo"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5


async def test_async_client_embeddings(live: Gateway) -> None:
    _configure(live)
    async with openai.AsyncOpenAI(
        base_url=f"{live.base_url}/v1", api_key=live.token(), max_retries=0
    ) as client:
        floats = await client.embeddings.create(model="demo", input=["one", "two"], encoding_format="float")
        packed = await client.embeddings.create(model="demo", input="one")  # base64 by default
    assert [row.index for row in floats.data] == [0, 1]
    assert all(len(row.embedding) == 16 for row in floats.data)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert packed.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)
    assert floats.usage.prompt_tokens > 0
