"""`POST /v1/chat/completions` is answered in front of FastAPI's layers, with the same behaviour.

The OpenAI-compatible tests (test_openai_api.py) cover the route's features through it; these
check what the dispatcher itself decides: the body, the error shapes, and what it leaves to FastAPI.
"""

from __future__ import annotations

import httpx
import orjson
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from llm_manager.manager import LLMManager
from llm_manager.server.fast_path import MAX_BODY_BYTES, FastRoutes
from llm_manager.server.lifecycle import Lifecycle
from tests.server.conftest import Gateway

URL = "/v1/chat/completions"


def _post(live: Gateway, content: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{live.base_url}{URL}", content=content, headers=headers, timeout=30)


def test_a_body_that_is_not_json_names_no_field(live: Gateway) -> None:
    response = _post(live, b"{not json", live.headers(live.token()))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "the request body is not valid JSON",
        "type": "invalid_request_error",
        "code": "invalid_input",
        "param": None,
    }


def test_an_unknown_field_is_named(live: Gateway) -> None:
    body = b'{"model": "demo", "messages": [{"role": "user", "content": "hi"}], "surprise": 1}'
    response = _post(live, body, live.headers(live.token()))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "surprise"


def test_the_token_is_checked_before_the_body(live: Gateway) -> None:
    response = _post(live, b"{not json", {"authorization": "Bearer nonsense"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "authentication_error"


async def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read_to_the_end() -> None:
    chunk = b" " * (1024 * 1024)
    sent_chunks = 0
    messages: list[Message] = []

    async def receive() -> Message:
        nonlocal sent_chunks
        sent_chunks += 1
        return {"type": "http.request", "body": chunk, "more_body": True}  # an endless body

    async def send(message: Message) -> None:
        messages.append(message)

    async def never(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the request should not reach FastAPI")

    routes = FastRoutes(never, FastAPI(), Lifecycle(grace=1))
    scope = {"type": "http", "method": "POST", "path": URL, "headers": [], "query_string": b""}
    await routes(scope, receive, send)
    assert messages[0]["status"] == 413
    assert orjson.loads(messages[1]["body"])["error"]["code"] == "request_too_large"
    assert sent_chunks == MAX_BODY_BYTES // len(chunk) + 1


def test_other_methods_and_paths_go_through_fastapi(live: Gateway) -> None:
    secret = live.token()
    assert httpx.get(f"{live.base_url}{URL}", headers=live.headers(secret)).status_code == 405
    assert httpx.get(f"{live.base_url}/v1/models", headers=live.headers(secret)).status_code == 200


def test_the_route_is_still_documented(live: Gateway) -> None:
    schema = httpx.get(f"{live.base_url}/openapi.json").json()
    assert "post" in schema["paths"][URL]


def test_a_draining_server_refuses_new_calls_with_503(live: Gateway) -> None:
    secret = live.token()
    lifecycle: Lifecycle = live.app.state.lifecycle

    async def drain(_: LLMManager) -> None:
        lifecycle.draining.set()  # without begin_drain: no grace timer ends the test server's streams

    async def resume(_: LLMManager) -> None:
        lifecycle.draining.clear()

    live.run(drain)
    try:
        response = _post(live, b"{}", live.headers(secret))
    finally:
        live.run(resume)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "shutting_down"
