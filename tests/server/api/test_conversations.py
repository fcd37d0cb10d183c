"""`/api/conversations`: ownership, listing and search, sending (whole and streamed), cancel, export."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.usage import UsageRow
from tests.server.api.conftest import Api
from tests.server.conftest import Gateway

SLOW = {"delay_ms": 50}


@pytest.fixture
def chat(api: Api) -> Api:
    """An instant `demo` configuration beside the fixture's `priced` one."""
    api.create_configuration("demo")
    return api


def _inference(api: Api, application: str = "alpha") -> dict[str, str]:
    return api.token(application, groups=("inference",))


def _create(api: Api, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = api.client.post(
        "/api/conversations", headers=headers, json={"configuration": "demo", **fields}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _send(api: Api, headers: dict[str, str], conversation_id: str, content: str) -> dict[str, Any]:
    response = api.client.post(
        f"/api/conversations/{conversation_id}/messages", headers=headers, json={"content": content}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _usage_row(gateway: Gateway, log_id: str) -> UsageRow:
    async def read(llm: LLMManager) -> UsageRow | None:
        await llm.services.writer.flush()
        return await llm.usage.get(log_id)

    row: UsageRow | None = gateway.run(read)
    assert row is not None
    return row


def _events(lines: Iterator[str]) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in lines if line.startswith("data: ")]


def test_create_send_and_read_back_with_totals(chat: Api) -> None:
    alpha = _inference(chat)
    created = _create(chat, alpha, system_prompt="Be brief.", user="end-user-7", params={"max_tokens": 8})
    assert created["title"] == ""
    assert created["user"] == "end-user-7"
    assert created["message_count"] == 0
    assert created["cost"] == "0"

    first = _send(chat, alpha, created["id"], "What is the capital of France?")
    assert first["message"]["role"] == "user"
    assert first["reply"]["role"] == "assistant"
    assert first["reply"]["status"] == "complete"
    assert first["usage"]["completion_tokens"] == 8  # the conversation's own max_tokens
    assert first["reply"]["log_id"] == first["log_id"]
    second = _send(chat, alpha, created["id"], "And of Spain?")
    assert second["reply"]["context"]["history_messages"] == 2  # the first exchange went with it

    conversation = chat.client.get(f"/api/conversations/{created['id']}", headers=alpha).json()
    assert conversation["title"] == "What is the capital of France?"
    assert conversation["message_count"] == 4
    assert conversation["completion_tokens"] == 16
    assert conversation["total_tokens"] == conversation["prompt_tokens"] + 16

    row = _usage_row(chat.gateway, second["log_id"])
    assert row.operation == "conversation"
    assert row.conversation_id == created["id"]
    assert row.application_id == chat.application_id("alpha")
    assert row.api_token_id is not None
    assert row.user_id == "end-user-7"


def test_validation_errors_name_the_field(chat: Api) -> None:
    alpha = _inference(chat)

    def error(path: str, body: dict[str, Any], method: str = "POST") -> tuple[int, str | None]:
        response = chat.client.request(method, path, headers=alpha, json=body)
        return response.status_code, response.json()["error"]["param"]

    assert error("/api/conversations", {"configuration": "demo", "context_strategy": "all"}) == (
        400,
        "context_strategy",
    )
    assert error("/api/conversations", {"configuration": "demo", "params": {"temperature": 9}}) == (
        400,
        "params.temperature",
    )
    assert error("/api/conversations", {"configuration": "demo", "colour": "red"}) == (400, "colour")
    assert error("/api/conversations", {"configuration": "demo", "title": "x" * 201}) == (400, "title")
    assert error("/api/conversations", {}) == (400, "configuration")
    assert (
        chat.client.post("/api/conversations", headers=alpha, json={"configuration": "nope"}).status_code
        == 404
    )
    conversation = _create(chat, alpha)
    path = f"/api/conversations/{conversation['id']}"
    assert error(f"{path}/messages", {"content": ""}) == (400, "content")
    assert error(f"{path}/messages", {"content": "hi", "params": {"top_p": 7}}) == (400, "params.top_p")
    assert error(path, {"context_strategy": "forget"}, "PATCH") == (400, "context_strategy")
    assert error(path, {"title": ""}, "PATCH") == (400, "title")
    assert chat.client.get("/api/conversations?limit=0", headers=alpha).json()["error"]["param"] == "limit"
    assert (
        chat.client.get("/api/conversations?cursor=junk", headers=alpha).json()["error"]["param"] == "cursor"
    )


def test_a_token_limited_to_other_configurations_cannot_use_one(chat: Api) -> None:
    limited = chat.gateway.headers(chat.gateway.token("alpha", configurations=["priced"]))
    assert (
        chat.client.post("/api/conversations", headers=limited, json={"configuration": "demo"}).status_code
        == 404
    )
    assert _create(chat, limited, configuration="priced")["configuration"] == "priced"


def test_another_applications_conversation_is_not_found_on_every_route(chat: Api) -> None:
    alpha = _inference(chat)
    conversation = _create(chat, alpha)
    message = _send(chat, alpha, conversation["id"], "hello")["message"]
    path = f"/api/conversations/{conversation['id']}"
    routes = [
        ("GET", path, None),
        ("PATCH", path, {"title": "mine now"}),
        ("GET", f"{path}/messages", None),
        ("GET", f"{path}/export?format=json", None),
        ("GET", f"{path}/export?format=markdown", None),
        ("POST", f"{path}/messages/{message['id']}/pin", None),
        ("POST", f"{path}/messages/{message['id']}/unpin", None),
        ("POST", f"{path}/messages", {"content": "hi"}),
        ("POST", f"{path}/messages", {"content": "hi", "stream": True}),
        ("POST", f"{path}/cancel", None),
        ("DELETE", path, None),
    ]
    for headers in (_inference(chat, "beta"), chat.beta):
        for method, route, body in routes:
            response = chat.client.request(method, route, headers=headers, json=body)
            assert response.status_code == 404, (method, route, response.text)
            assert response.json()["error"]["type"] == "not_found_error"
    listed = chat.client.get("/api/conversations", headers=_inference(chat, "beta")).json()
    assert listed["data"] == []
    assert chat.client.get("/api/conversations?application=alpha", headers=chat.beta).status_code == 404

    # an admin token reads every application's conversations, but changes and sends only in its own
    for method, route, body in routes:
        response = chat.client.request(method, route, headers=chat.admin, json=body)
        expected = 200 if method == "GET" else 404
        assert response.status_code == expected, (method, route, response.text)
    assert chat.client.get(path, headers=alpha).json()["message_count"] == 2


def test_list_filters_search_and_pages(chat: Api) -> None:
    alpha = _inference(chat)
    ids = []
    for index in range(5):
        conversation = _create(
            chat, alpha, title=f"Chat {index}", user="ann" if index % 2 else "bob", configuration="demo"
        )
        ids.append(conversation["id"])
    on_priced = _create(chat, alpha, configuration="priced")
    _send(chat, alpha, ids[0], "Tell me about platypus eggs")
    _create(chat, _inference(chat, "beta"), title="Chat beta")

    pages: list[str] = []
    cursor = None
    while True:
        query = "/api/conversations?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = chat.client.get(query, headers=alpha).json()
        pages += [item["id"] for item in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages[0] == ids[0]  # most recently active first
    assert sorted(pages) == sorted([*ids, on_priced["id"]])

    def found(query: str, headers: dict[str, str] = alpha) -> set[str]:
        response = chat.client.get(f"/api/conversations?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["data"]}

    assert found("search=platypus") == {ids[0]}  # in a message
    assert found("search=chat%203") == {ids[3]}  # in a title
    assert found("search=100%25") == set()  # LIKE wildcards are taken literally
    assert found("configuration=priced") == {on_priced["id"]}
    assert found("user=ann") == {ids[1], ids[3]}
    admin_view = found("application=alpha", chat.admin)
    assert admin_view == {*ids, on_priced["id"]}
    assert len(found("", chat.admin)) == 7


def test_messages_are_paged_oldest_first(chat: Api) -> None:
    alpha = _inference(chat)
    conversation = _create(chat, alpha)
    for index in range(3):
        _send(chat, alpha, conversation["id"], f"message {index}")
    seen: list[int] = []
    after = 0
    while True:
        page = chat.client.get(
            f"/api/conversations/{conversation['id']}/messages?after={after}&limit=4", headers=alpha
        ).json()
        seen += [message["seq"] for message in page["data"]]
        if page["next_cursor"] is None:
            break
        after = int(page["next_cursor"])
    assert seen == [1, 2, 3, 4, 5, 6]


def test_rename_change_pin_export_and_delete(chat: Api) -> None:
    alpha = _inference(chat)
    conversation = _create(chat, alpha, system_prompt="Old rules")
    path = f"/api/conversations/{conversation['id']}"
    exchange = _send(chat, alpha, conversation["id"], "Remember: my name is Ada")

    changed = chat.client.patch(
        path,
        headers=alpha,
        json={"title": "Ada's chat", "system_prompt": "New rules", "context_strategy": "summarize"},
    ).json()
    assert (changed["title"], changed["system_prompt"], changed["context_strategy"]) == (
        "Ada's chat",
        "New rules",
        "summarize",
    )
    assert (
        chat.client.patch(path, headers=alpha, json={"system_prompt": None}).json()["system_prompt"] is None
    )

    pinned = chat.client.post(f"{path}/messages/{exchange['message']['id']}/pin", headers=alpha)
    assert pinned.status_code == 200
    assert pinned.json()["pinned"] is True
    unpinned = chat.client.post(f"{path}/messages/{exchange['message']['id']}/unpin", headers=alpha).json()
    assert unpinned["pinned"] is False
    assert chat.client.post(f"{path}/messages/unknown/pin", headers=alpha).status_code == 404

    markdown = chat.client.get(f"{path}/export?format=markdown", headers=alpha)
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert f'filename="conversation-{conversation["id"]}.md"' in markdown.headers["content-disposition"]
    assert markdown.text.startswith("# Ada's chat")
    assert "## User\n\nRemember: my name is Ada" in markdown.text
    exported = chat.client.get(f"{path}/export", headers=alpha)
    assert exported.headers["content-type"] == "application/json"
    assert exported.headers["content-disposition"].endswith('.json"')
    data = exported.json()
    assert data["conversation"]["id"] == conversation["id"]
    assert [message["role"] for message in data["messages"]] == ["user", "assistant"]
    assert chat.client.get(f"{path}/export?format=pdf", headers=alpha).json()["error"]["param"] == "format"

    assert chat.client.delete(path, headers=alpha).status_code == 204
    assert chat.client.get(path, headers=alpha).status_code == 404


def test_a_management_token_looks_after_its_applications_conversations(chat: Api) -> None:
    conversation = _create(chat, _inference(chat))
    path = f"/api/conversations/{conversation['id']}"
    assert chat.client.get(path, headers=chat.alpha).status_code == 200
    assert chat.client.patch(path, headers=chat.alpha, json={"title": "Renamed"}).json()["title"] == "Renamed"


def test_streamed_reply_ends_with_done_naming_the_stored_messages(chat: Api) -> None:
    alpha = _inference(chat)
    conversation = _create(chat, alpha)
    path = f"/api/conversations/{conversation['id']}/messages"
    with chat.client.stream(
        "POST", path, headers=alpha, json={"content": "Stream it", "stream": True}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-llm-manager-conversation-id"] == conversation["id"]
        events = _events(response.iter_lines())
    chunks = [event["content"] for event in events if event["type"] == "chunk"]
    done = events[-1]
    assert done["type"] == "done"
    stats = done["stats"]
    assert stats["status"] == "ok"
    assert stats["conversation_id"] == conversation["id"]
    assert stats["response"] == "".join(chunks)
    assert stats["log_id"] == response.headers["x-llm-manager-log-id"]
    messages = chat.client.get(path, headers=alpha).json()["data"]
    assert [message["id"] for message in messages] == [stats["message_id"], stats["reply_id"]]
    assert messages[1]["content"] == stats["response"]
    assert messages[1]["status"] == "complete"
    assert _usage_row(chat.gateway, stats["log_id"]).conversation_id == conversation["id"]


def test_a_refusal_before_streaming_keeps_its_status_and_stores_nothing(chat: Api) -> None:
    alpha = _inference(chat)
    conversation = _create(chat, alpha)
    path = f"/api/conversations/{conversation['id']}"
    refused = chat.client.post(
        f"{path}/messages",
        headers=alpha,
        json={"content": "x", "stream": True, "params": {"temperature": -1}},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "params.temperature"
    assert chat.client.get(path, headers=alpha).json()["message_count"] == 0


# --- on a real socket: cancel from another request, and a client that hangs up ------------------------


def _live_setup(live: Gateway) -> tuple[dict[str, str], str]:
    async def setup(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(slug="slow", provider="demo", model="demo-chat", options=SLOW)
        )

    live.run(setup)
    headers = live.headers(live.token("alpha"))
    created = httpx.post(
        f"{live.base_url}/api/conversations", headers=headers, json={"configuration": "slow"}
    )
    assert created.status_code == 201, created.text
    conversation_id: str = created.json()["id"]
    return headers, conversation_id


def _stored_reply(live: Gateway, headers: dict[str, str], conversation_id: str) -> dict[str, Any]:
    """The reply once it is stored (a hung-up stream is stored moments after the client left)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        messages = httpx.get(
            f"{live.base_url}/api/conversations/{conversation_id}/messages", headers=headers
        ).json()["data"]
        if len(messages) == 2:
            reply: dict[str, Any] = messages[1]
            return reply
        time.sleep(0.05)
    raise AssertionError("the reply was not stored")


def test_cancel_stops_a_streamed_reply_and_keeps_it_interrupted(live: Gateway) -> None:
    headers, conversation_id = _live_setup(live)
    base = f"{live.base_url}/api/conversations/{conversation_id}"
    events: list[dict[str, Any]] = []
    body = {"content": "Tell me a long story", "stream": True}
    with httpx.stream("POST", f"{base}/messages", headers=headers, json=body, timeout=30) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(orjson.loads(line[6:]))
            if sum(event["type"] == "chunk" for event in events) == 3:
                assert httpx.post(f"{base}/cancel", headers=headers).status_code == 202
    done = events[-1]
    assert done["type"] == "done"
    assert done["stats"]["status"] == "cancelled"
    reply = _stored_reply(live, headers, conversation_id)
    assert reply["id"] == done["stats"]["reply_id"]
    assert reply["status"] == "interrupted"
    assert reply["content"] == done["stats"]["response"]
    assert 3 <= reply["completion_tokens"] < 40
    assert _usage_row(live, done["stats"]["log_id"]).status == "cancelled"


def test_cancel_stops_a_whole_reply_too(live: Gateway) -> None:
    headers, conversation_id = _live_setup(live)
    base = f"{live.base_url}/api/conversations/{conversation_id}"
    answers: list[httpx.Response] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            httpx.post(f"{base}/messages", headers=headers, json={"content": "Take your time"}, timeout=30)
        )
    )
    started = time.monotonic()
    sender.start()
    sender.join(0.5)  # the model is writing by now (a Stop before that would store nothing: a 409)
    while sender.is_alive():  # until the send is registered, a cancel finds nothing to stop
        assert httpx.post(f"{base}/cancel", headers=headers).status_code == 202
        sender.join(0.1)
    assert time.monotonic() - started < 2.5  # the whole reply would take about 3 s
    answer = answers[0]
    assert answer.status_code == 200, answer.text
    assert answer.json()["reply"]["status"] == "interrupted"
    assert _stored_reply(live, headers, conversation_id)["status"] == "interrupted"


def test_client_disconnect_keeps_the_partial_reply_interrupted(live: Gateway) -> None:
    headers, conversation_id = _live_setup(live)
    path = f"{live.base_url}/api/conversations/{conversation_id}/messages"
    with httpx.stream("POST", path, headers=headers, json={"content": "Go on", "stream": True}) as response:
        log_id = response.headers["x-llm-manager-log-id"]
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # one chunk seen: hang up
    reply = _stored_reply(live, headers, conversation_id)
    assert reply["status"] == "interrupted"
    assert reply["content"]
    assert reply["log_id"] == log_id
    assert _usage_row(live, log_id).status == "cancelled"
