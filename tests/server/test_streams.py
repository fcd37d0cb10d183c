"""The native SSE protocol: chunk / done / error, attach with a ticket, cancel, disconnect, heartbeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.usage import UsageRow
from llm_manager.settings import Settings
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as transcript
from tests.server.conftest import Gateway
from tests.server.upstreams import openai_configuration

_PROMPT = {"configuration": "demo", "prompt": "Tell me a story"}


def _setup(gateway: Gateway, *, delay_ms: float = 0, upstream: FakeUpstream | None = None) -> None:
    async def create(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(
                slug="demo", provider="demo", model="demo-chat", options={"delay_ms": delay_ms}
            )
        )
        if upstream is not None:
            await llm.configurations.create(openai_configuration(upstream, api_key="sk-test"))

    gateway.run(create)


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any] | str]:
    """Decoded `data:` events, and comments as the string ':comment'."""
    for line in lines:
        if line.startswith("data: "):
            yield orjson.loads(line[6:])
        elif line.startswith(":"):
            yield line


def _usage_row(gateway: Gateway, log_id: str) -> UsageRow:
    row: UsageRow | None = gateway.run(lambda llm: llm.usage.get(log_id))
    assert row is not None
    return row


def test_post_stream_sends_chunks_then_done_with_stats(client: TestClient, gateway: Gateway) -> None:
    _setup(gateway)
    secret = gateway.token()
    with client.stream("POST", "/api/stream", json=_PROMPT, headers=gateway.headers(secret)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        events = [event for event in _events(response.iter_lines()) if isinstance(event, dict)]
    chunks = [event for event in events if event["type"] == "chunk"]
    done = events[-1]
    assert done["type"] == "done"
    stats = done["stats"]
    assert stats["response"] == "".join(chunk["content"] for chunk in chunks)
    assert stats["chunks"] == len(chunks)
    assert stats["completion_tokens"] == len(chunks)
    assert stats["tokens"] == stats["prompt_tokens"] + stats["completion_tokens"]
    assert stats["status"] == "ok"
    assert stats["cost"] == "0"
    assert stats["log_id"] == response.headers["x-llm-manager-log-id"]
    row = _usage_row(gateway, stats["log_id"])
    assert row.status == "ok"
    assert row.completion_tokens == len(chunks)


def test_errors_before_the_first_byte_keep_their_status(client: TestClient, gateway: Gateway) -> None:
    _setup(gateway)
    headers = gateway.headers(gateway.token())
    missing = client.post("/api/stream", json={**_PROMPT, "configuration": "nope"}, headers=headers)
    assert missing.status_code == 404
    bad = client.post("/api/stream", json={**_PROMPT, "params": {"temperature": 9}}, headers=headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "params.temperature"
    both = client.post("/api/stream", json={**_PROMPT, "messages": []}, headers=headers)
    assert both.status_code == 400


def test_created_stream_attaches_once_with_its_ticket(client: TestClient, gateway: Gateway) -> None:
    _setup(gateway)
    created = client.post("/api/streams", json=_PROMPT, headers=gateway.headers(gateway.token()))
    assert created.status_code == 201
    body = created.json()
    # a bare GET (a cross-site page knows neither the ticket nor the token) starts nothing
    assert client.get(f"/api/streams/{body['id']}/events").status_code == 404
    assert client.get(f"/api/streams/{body['id']}/events?ticket=guess").status_code == 404
    with client.stream("GET", body["events_url"]) as response:
        assert response.status_code == 200
        events = [event for event in _events(response.iter_lines()) if isinstance(event, dict)]
    assert events[-1]["type"] == "done"
    assert events[-1]["stats"]["status"] == "ok"
    assert client.get(body["events_url"]).status_code == 404  # claimed already


def test_creator_token_attaches_another_token_cannot(client: TestClient, gateway: Gateway) -> None:
    _setup(gateway)
    creator = gateway.token()
    created = client.post("/api/streams", json=_PROMPT, headers=gateway.headers(creator)).json()
    events_path = f"/api/streams/{created['id']}/events"
    assert client.get(events_path, headers=gateway.headers(gateway.token())).status_code == 404
    assert client.get(events_path, headers=gateway.headers(gateway.token("other-app"))).status_code == 404
    with client.stream("GET", events_path, headers=gateway.headers(creator)) as response:
        assert response.status_code == 200
        # read to the end: TestClient may hang when a streaming response is left half-read
        events = [event for event in _events(response.iter_lines()) if isinstance(event, dict)]
    assert events[-1]["type"] == "done"


def test_cancel_of_another_applications_stream_is_not_found(client: TestClient, gateway: Gateway) -> None:
    _setup(gateway)
    created = client.post("/api/streams", json=_PROMPT, headers=gateway.headers(gateway.token())).json()
    other = gateway.headers(gateway.token("other-app"))
    assert client.post(created["cancel_url"], headers=other).status_code == 404
    assert client.post("/api/streams/unknown/cancel", headers=other).status_code == 404


def test_cancel_before_attach_never_starts_the_call(client: TestClient, gateway: Gateway) -> None:
    _setup(gateway)
    headers = gateway.headers(gateway.token())
    created = client.post("/api/streams", json=_PROMPT, headers=headers).json()
    assert client.post(created["cancel_url"], headers=headers).status_code == 202
    with client.stream("GET", created["events_url"]) as response:
        events = list(_events(response.iter_lines()))
    assert events == [
        {"type": "error", "message": "the stream was cancelled before it started", "code": "cancelled"}
    ]


def test_cancel_stops_a_running_stream_and_bills_the_partial(live: Gateway) -> None:
    _setup(live, delay_ms=40)
    headers = live.headers(live.token())
    created = httpx.post(f"{live.base_url}/api/streams", json=_PROMPT, headers=headers).json()
    events: list[dict[str, Any] | str] = []
    with httpx.stream("GET", live.base_url + created["events_url"], timeout=30) as response:
        for event in _events(response.iter_lines()):
            events.append(event)
            if sum(1 for item in events if isinstance(item, dict) and item["type"] == "chunk") == 3:
                cancelled = httpx.post(live.base_url + created["cancel_url"], headers=headers)
                assert cancelled.status_code == 202
    done = events[-1]
    assert isinstance(done, dict)
    assert done["type"] == "done"
    assert done["stats"]["status"] == "cancelled"
    row = _usage_row(live, done["stats"]["log_id"])
    assert row.status == "cancelled"
    assert 3 <= row.completion_tokens < 40
    assert row.completion_tokens == done["stats"]["completion_tokens"]


def test_client_disconnect_closes_upstream_and_accounts_cancelled(
    live: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.text_stream(chunk_delay=0.3))
    _setup(live, upstream=upstream)
    body = {"configuration": "gpt", "prompt": "Capital of the UK?"}
    with httpx.stream(
        "POST", f"{live.base_url}/api/stream", json=body, headers=live.headers(live.token())
    ) as response:
        log_id = response.headers["x-llm-manager-log-id"]
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # one chunk seen: hang up
    assert upstream.aborted.wait(10), "the upstream request was not closed"
    deadline = time.monotonic() + 10
    row = None
    while time.monotonic() < deadline:
        row = live.run(lambda llm: llm.usage.get(log_id))
        if row is not None:
            break
        time.sleep(0.05)
    assert row is not None
    assert row.status == "cancelled"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sse_heartbeat": 0.05})


def test_heartbeat_comments_while_the_upstream_is_silent(client: TestClient, gateway: Gateway) -> None:
    _setup(gateway, delay_ms=250)
    body = {**_PROMPT, "params": {"max_tokens": 2}}
    with client.stream(
        "POST", "/api/stream", json=body, headers=gateway.headers(gateway.token())
    ) as response:
        events = list(_events(response.iter_lines()))
    assert ": keep-alive" in events
    assert isinstance(events[-1], dict)
    assert events[-1]["type"] == "done"


def test_concurrent_streams_are_isolated(live: Gateway) -> None:
    _setup(live, delay_ms=5)
    headers = live.headers(live.token())
    results: list[str] = []

    def run(index: int) -> None:
        body = {"configuration": "demo", "prompt": f"number {index}"}
        with httpx.stream(
            "POST", f"{live.base_url}/api/stream", json=body, headers=headers, timeout=30
        ) as response:
            events = [event for event in _events(response.iter_lines()) if isinstance(event, dict)]
        results.append(events[-1]["stats"]["response"])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == sorted(result for result in results)
    assert {result.split("“")[1].split("”")[0] for result in results} == {
        f"number {index}" for index in range(8)
    }
