"""Server-side history through the OpenAI-compatible API: the `x-llm-manager-conversation-id` header."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.conversations import Viewer
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as transcript
from tests.server.conftest import Gateway
from tests.server.upstreams import openai_configuration

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
HEADER = "x-llm-manager-conversation-id"


def _configure(live: Gateway, upstream: FakeUpstream) -> None:
    async def setup(llm: LLMManager) -> None:
        await llm.configurations.create(openai_configuration(upstream, api_key="sk-upstream-secret-key-1234"))
        await llm.configurations.create(
            ConfigurationCreate(slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0})
        )

    live.run(setup)


def _client(live: Gateway, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.base_url}/v1", api_key=secret, max_retries=0)


def _user(content: str) -> list[Any]:
    return [{"role": "user", "content": content}]


def test_two_calls_in_a_row_send_the_first_exchange_as_history(live: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.text_completion(), transcript.text_stream())
    _configure(live, upstream)
    with _client(live, live.token()) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt", messages=_user("Are you a potato?"), user="end-user-1", extra_headers={HEADER: "new"}
        )
        first = raw.parse()
        conversation_id = raw.headers[HEADER]
        assert first.choices[0].message.content == transcript.TEXT_COMPLETION_TEXT
        assert upstream.requests[-1].json()["messages"] == _user("Are you a potato?")

        with client.chat.completions.with_streaming_response.create(
            model="gpt",
            messages=_user("Capital of the UK?"),
            stream=True,
            extra_headers={HEADER: conversation_id},
        ) as streamed:
            assert streamed.headers[HEADER] == conversation_id
            chunks = list(streamed.parse())
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == transcript.TEXT_STREAM_TEXT
    assert upstream.requests[-1].json()["messages"] == [
        {"role": "user", "content": "Are you a potato?"},
        {"role": "assistant", "content": transcript.TEXT_COMPLETION_TEXT},
        {"role": "user", "content": "Capital of the UK?"},
    ]

    async def stored(llm: LLMManager) -> tuple[Any, list[Any]]:
        conversation = await llm.services.conversations.get(conversation_id, Viewer.system())
        page = await llm.services.conversations.messages(conversation_id, Viewer.system())
        return conversation, page.items

    conversation, messages = live.run(stored)
    assert conversation.configuration == "gpt"
    assert conversation.external_user == "end-user-1"
    assert [(message.role, message.status) for message in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert messages[3].content == transcript.TEXT_STREAM_TEXT


def test_the_conversation_supplies_its_own_system_prompt(live: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.text_completion())
    _configure(live, upstream)
    secret = live.token()
    created = httpx.post(
        f"{live.base_url}/api/conversations",
        headers=live.headers(secret),
        json={"configuration": "gpt", "system_prompt": "You are a potato."},
    ).json()
    with _client(live, secret) as client:
        client.chat.completions.create(
            model="gpt", messages=_user("Hi"), extra_headers={HEADER: created["id"]}, temperature=0.5
        )
    sent = upstream.requests[-1].json()
    assert sent["messages"] == [{"role": "system", "content": "You are a potato."}, *_user("Hi")]
    assert sent["temperature"] == 0.5


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "system", "content": "Obey"}, {"role": "user", "content": "Hi"}], "messages"),
        ([{"role": "user", "content": "Hi"}, {"role": "user", "content": "again"}], "messages"),
        ([{"role": "assistant", "content": "Hi"}], "messages"),
    ],
    ids=["system", "two", "not-user"],
)
def test_only_the_new_user_message_may_be_sent(live: Gateway, messages: list[Any], param: str) -> None:
    with _client(live, live.token()) as client, pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="demo", messages=messages, extra_headers={HEADER: "new"})
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["param"] == param
    if messages[0]["role"] == "system":
        assert "system prompt" in error["message"]


def test_refusals_and_other_applications_conversations(live: Gateway, upstream: FakeUpstream) -> None:
    _configure(live, upstream)
    theirs = httpx.post(
        f"{live.base_url}/api/conversations",
        headers=live.headers(live.token("other-app")),
        json={"configuration": "demo"},
    ).json()
    mine = live.token()
    with _client(live, mine) as client:
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="demo", messages=_user("Hi"), extra_headers={HEADER: theirs["id"]}
            )
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="demo", messages=_user("Hi"), extra_headers={HEADER: "unknown"}
            )
        raw = client.chat.completions.with_raw_response.create(
            model="demo", messages=_user("Hi"), extra_headers={HEADER: "new"}
        )
        conversation_id = raw.headers[HEADER]
        with pytest.raises(openai.BadRequestError) as wrong_model:
            client.chat.completions.create(
                model="gpt", messages=_user("Hi"), extra_headers={HEADER: conversation_id}
            )
        assert isinstance(wrong_model.value.body, dict)
        assert wrong_model.value.body["param"] == "model"
        with pytest.raises(openai.BadRequestError) as bad_parameter:
            client.chat.completions.create(
                model="demo", messages=_user("Hi"), temperature=7, extra_headers={HEADER: conversation_id}
            )
        assert isinstance(bad_parameter.value.body, dict)
        assert bad_parameter.value.body["param"] == "body.temperature"

    async def count(llm: LLMManager) -> int:
        page = await llm.services.conversations.page(Viewer.system())
        return len(page.items)

    assert live.run(count) == 2  # theirs and the one started with `new`; no empty ones left behind


def test_a_refused_first_message_leaves_no_empty_conversation(live: Gateway, upstream: FakeUpstream) -> None:
    _configure(live, upstream)
    with _client(live, live.token(rpm_limit=1)) as client:
        client.chat.completions.create(model="demo", messages=_user("Hi"), extra_headers={HEADER: "new"})
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="demo", messages=_user("Hi"), extra_headers={HEADER: "new"})
    assert HEADER not in refused.value.response.headers

    async def count(llm: LLMManager) -> int:
        return len((await llm.services.conversations.page(Viewer.system())).items)

    assert live.run(count) == 1


def test_an_upstream_error_is_stored_and_names_the_conversation(
    live: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.error_reply("authentication"))
    _configure(live, upstream)
    with _client(live, live.token()) as client, pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="gpt", messages=_user("Hi"), extra_headers={HEADER: "new"})
    assert failed.value.status_code == 502
    # the upstream was asked and refused: the exchange is kept, with the error, and named
    conversation_id = failed.value.response.headers[HEADER]

    async def stored(llm: LLMManager) -> list[str]:
        page = await llm.services.conversations.messages(conversation_id, Viewer.system())
        return [message.status for message in page.items]

    assert live.run(stored) == ["complete", "error"]
