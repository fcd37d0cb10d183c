"""The streaming console: start with CSRF, attach from the creating session only, stop, history."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from llm_manager.manager import LLMManager
from llm_manager.services.calls import CallContext, ChatCall
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.usage import UsageRow
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as transcript
from llm_manager.types import Message
from tests.server.admin.conftest import PASSWORD, Admin, Browser
from tests.server.conftest import Gateway
from tests.server.upstreams import openai_configuration

_RUN = {"configuration": "demo", "prompt": "Tell me a story", "temperature": 0.5, "max_tokens": 200}
_CSRF = re.compile(r'"X-CSRF-Token": "([^"]+)"')
_LOGIN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _demo(gateway: Gateway, *, delay_ms: float = 0) -> None:
    async def create(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(
                slug="demo", provider="demo", model="demo-chat", options={"delay_ms": delay_ms}
            )
        )

    gateway.run(create)


def _start(browser: Browser, body: dict[str, Any] | None = None, **headers: str) -> Any:
    sent = {"X-CSRF-Token": browser.csrf, **headers}
    return browser.request("POST", "/admin/console/streams", json=body or _RUN, headers=sent)


def _decoded(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The `data:` events as they arrive (comments such as heartbeats skipped)."""
    for line in lines:
        if line.startswith("data: "):
            yield orjson.loads(line[6:])


def _events(text: str) -> list[dict[str, Any]]:
    return list(_decoded(text.splitlines()))


def _usage_row(gateway: Gateway, log_id: str) -> UsageRow:
    row: UsageRow | None = gateway.run(lambda llm: llm.usage.get(log_id))
    assert row is not None
    return row


def test_console_page_offers_active_configurations_with_a_prefilled_prompt(admin: Admin) -> None:
    _demo(admin.gateway)

    async def inactive(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(slug="sleeping", provider="demo", model="demo-chat", is_active=False)
        )

    admin.gateway.run(inactive)
    page = admin.signed_in("operator").get("/admin/console")
    assert page.status_code == 200
    assert 'value="demo"' in page.text
    assert "sleeping" not in page.text
    assert "what a large language model is" in page.text  # the prompt is pre-filled
    assert 'type="range" min="0" max="2" step="0.1"' in page.text
    assert 'max="4000"' in page.text
    assert "No console runs yet" in page.text
    assert re.search(r'<script src="/admin/static/[0-9a-f]+/js/console\.js" defer>', page.text)
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", page.text), (
        "no inline script"
    )
    assert "style=" not in page.text
    assert "onclick" not in page.text


def test_console_without_configurations_says_what_to_do(admin: Admin) -> None:
    page = admin.signed_in("operator").get("/admin/console")
    assert page.status_code == 200
    assert 'href="/admin/configurations"' in page.text
    assert "console-form" not in page.text


def test_a_run_streams_chunks_then_done_and_is_recorded_as_a_console_call(admin: Admin) -> None:
    _demo(admin.gateway)
    browser = admin.signed_in("operator")
    created = _start(browser)
    assert created.status_code == 201
    body = created.json()
    assert body["events_url"] == f"/admin/console/streams/{body['id']}/events"
    response = browser.get(body["events_url"])  # TestClient reads the whole stream
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = _events(response.text)
    chunks = [event["content"] for event in events if event["type"] == "chunk"]
    done = events[-1]
    assert done["type"] == "done"
    stats = done["stats"]
    assert stats["status"] == "ok"
    assert stats["response"] == "".join(chunks)
    assert "Tell me a story" in stats["response"]
    assert stats["chunks"] == len(chunks) == stats["completion_tokens"]
    assert stats["cost"] == "0"
    assert {"tokens", "duration_ms", "ttft_ms", "log_id"} <= stats.keys()
    row = _usage_row(admin.gateway, stats["log_id"])
    assert (row.operation, row.status, row.user_id) == ("console", "ok", "operator@example.com")
    assert browser.get(body["events_url"]).status_code == 404, "a stream runs once"
    runs = browser.get("/admin/console/runs")
    assert runs.status_code == 200
    assert f'href="/admin/usage/{row.id}"' in runs.text
    assert "operator@example.com" in runs.text
    assert '<span class="badge ok">ok</span>' in runs.text
    assert "<html" not in runs.text  # a fragment for htmx
    assert f"/admin/usage/{row.id}" in browser.get("/admin/console").text


def test_system_prompt_and_form_posts_are_accepted(admin: Admin) -> None:
    _demo(admin.gateway)
    browser = admin.signed_in("operator")
    created = browser.post(
        "/admin/console/streams",
        {
            "configuration": "demo",
            "prompt": "Hi",
            "system": "Be brief.",
            "temperature": "0",
            "max_tokens": "3",
        },
    )
    assert created.status_code == 201
    events = _events(browser.get(created.json()["events_url"]).text)
    done = events[-1]
    assert done["stats"]["completion_tokens"] == 3
    assert done["stats"]["finish_reason"] == "length"
    assert done["stats"]["prompt_tokens"] == 3  # "Be brief." + "Hi"


def test_events_refused_to_another_session_and_to_a_signed_out_visitor(admin: Admin) -> None:
    _demo(admin.gateway)
    owner = admin.signed_in("operator")
    url = _start(owner).json()["events_url"]
    same_user_elsewhere = admin.browser()
    assert same_user_elsewhere.sign_in("operator@example.com").status_code == 303
    assert same_user_elsewhere.get(url).status_code == 404
    assert admin.signed_in("admin").get(url).status_code == 404
    signed_out = admin.browser().get(url)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/admin/login")
    response = owner.get(url)  # none of the refused attempts used the stream up
    assert response.status_code == 200
    assert _events(response.text)[-1]["type"] == "done"


def test_start_without_the_csrf_token_is_refused(admin: Admin) -> None:
    _demo(admin.gateway)
    browser = admin.signed_in("operator")
    missing = browser.request("POST", "/admin/console/streams", json=_RUN)
    assert missing.status_code == 403
    forged = _start(browser, **{"X-CSRF-Token": "forged"})
    assert forged.status_code == 403
    assert browser.post("/admin/console/streams", {**_RUN, "csrf_token": "forged"}).status_code == 403
    created = _start(browser).json()
    cancel = browser.request("POST", created["cancel_url"])
    assert cancel.status_code == 403


def test_a_viewer_may_not_use_the_console(admin: Admin) -> None:
    _demo(admin.gateway)
    viewer = admin.signed_in("viewer")
    assert viewer.get("/admin/console").status_code == 403
    assert viewer.get("/admin/console/runs").status_code == 403
    assert _start(viewer).status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"max_tokens": 4001}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"prompt": "   "}, "prompt"),
        ({"configuration": "nope"}, "configuration"),
    ],
)
def test_invalid_runs_are_refused_with_the_field_named(
    admin: Admin, change: dict[str, Any], field: str
) -> None:
    _demo(admin.gateway)
    refused = _start(admin.signed_in("operator"), {**_RUN, **change})
    assert refused.status_code == 422
    assert field in refused.json()["errors"]


def test_cancel_before_attaching_never_calls_the_model(admin: Admin) -> None:
    _demo(admin.gateway)
    browser = admin.signed_in("operator")
    created = _start(browser).json()
    other = admin.signed_in("admin")
    assert (
        other.request("POST", created["cancel_url"], headers={"X-CSRF-Token": other.csrf}).status_code == 404
    )
    cancelled = browser.request("POST", created["cancel_url"], headers={"X-CSRF-Token": browser.csrf})
    assert cancelled.status_code == 202
    events = _events(browser.get(created["events_url"]).text)
    assert events == [
        {"type": "error", "message": "the run was stopped before it started", "code": "cancelled"}
    ]
    assert admin.gateway.run(lambda llm: llm.usage.list_page()).rows == []


def test_a_provider_error_is_an_event_naming_the_redacted_usage_row(
    admin: Admin, upstream: FakeUpstream
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.error_reply("authentication"))

    async def create(llm: LLMManager) -> None:
        await llm.configurations.create(openai_configuration(upstream, api_key="kk"))

    admin.gateway.run(create)
    browser = admin.signed_in("operator")
    created = _start(browser, {**_RUN, "configuration": "gpt"}).json()
    [error] = _events(browser.get(created["events_url"]).text)
    assert error["type"] == "error"
    assert error["code"] == "authentication_failed" or error["code"]
    assert "kk." not in error["message"]
    row = _usage_row(admin.gateway, error["log_id"])
    assert row.status == "error"
    assert row.operation == "console"
    detail = browser.get(f"/admin/usage/{row.id}")
    assert detail.status_code == 200
    assert "AuthenticationError" in detail.text
    assert "provided: kk" not in detail.text


def test_runs_table_pages_newest_first(admin: Admin) -> None:
    _demo(admin.gateway)

    async def runs(llm: LLMManager) -> None:
        for index in range(17):
            call = ChatCall(
                configuration="demo",
                messages=(Message(role="user", content=f"run {index}"),),
                context=CallContext(user_id=f"user{index}@example.com"),
                operation="console",
            )
            await llm.services.chat.chat(call)
        await llm.services.chat.chat(
            ChatCall(configuration="demo", messages=(Message(role="user", content="x"),))
        )

    admin.gateway.run(runs)
    browser = admin.signed_in("operator")
    first = browser.get("/admin/console/runs")
    assert first.text.count("<tr>") == 1 + 15
    assert "user16@example.com" in first.text
    assert "user1@example.com" not in first.text
    older = re.search(r'hx-get="(/admin/console/runs\?cursor=[^"]+)"', first.text)
    assert older is not None
    second = browser.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count("<tr>") == 1 + 2
    assert "user0@example.com" in second.text
    assert "user1@example.com" in second.text
    assert "« Newest" in second.text


@contextlib.contextmanager
def _live_sign_in(live: Gateway, email: str, role: str) -> Iterator[tuple[httpx.Client, str]]:
    """A real HTTP client signed in to the live server, and its CSRF token."""

    async def create(llm: LLMManager) -> None:
        await llm.services.accounts.create_user(email, PASSWORD, roles=[role])

    live.run(create)
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        form = _LOGIN_CSRF.search(client.get("/admin/login").text)
        assert form is not None
        login = {"email": email, "password": PASSWORD, "csrf_token": form.group(1), "next": "/admin"}
        assert client.post("/admin/login", data=login).status_code == 303
        token = _CSRF.search(client.get("/admin/account").text)
        assert token is not None
        yield client, token.group(1)


def test_stop_mid_stream_shows_and_records_the_partial_reply(live: Gateway) -> None:
    _demo(live, delay_ms=40)
    with _live_sign_in(live, "operator@example.com", "operator") as (client, csrf):
        created = client.post("/admin/console/streams", json=_RUN, headers={"X-CSRF-Token": csrf}).json()
        events: list[dict[str, Any]] = []
        with client.stream("GET", created["events_url"]) as response:
            assert response.status_code == 200
            for event in _decoded(response.iter_lines()):
                events.append(event)
                if sum(1 for item in events if item["type"] == "chunk") == 3:
                    stopped = client.post(created["cancel_url"], headers={"X-CSRF-Token": csrf})
                    assert stopped.status_code == 202
        done = events[-1]
        assert done["type"] == "done"
        stats = done["stats"]
        assert stats["status"] == "cancelled"
        partial = "".join(event["content"] for event in events if event["type"] == "chunk")
        assert stats["response"] == partial
        row = _usage_row(live, stats["log_id"])
        assert row.status == "cancelled"
        assert row.operation == "console"
        assert 3 <= row.completion_tokens < 40
        assert row.response_chars == len(partial)
        runs = client.get("/admin/console/runs").text
        assert f"/admin/usage/{row.id}" in runs
        assert '<span class="badge cancelled">cancelled</span>' in runs


def test_stop_while_the_model_has_not_answered_yet_closes_the_upstream_call(
    live: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.text_stream(first_byte_delay=10))

    async def create(llm: LLMManager) -> None:
        await llm.configurations.create(openai_configuration(upstream, slug="slow", api_key="sk-test"))

    live.run(create)
    with _live_sign_in(live, "operator@example.com", "operator") as (client, csrf):
        run = {**_RUN, "configuration": "slow"}
        created = client.post("/admin/console/streams", json=run, headers={"X-CSRF-Token": csrf}).json()
        started = time.monotonic()
        with client.stream("GET", created["events_url"]) as response:
            assert response.status_code == 200
            time.sleep(0.3)  # the upstream request is in flight, waiting for its first byte
            assert client.post(created["cancel_url"], headers={"X-CSRF-Token": csrf}).status_code == 202
            events = list(_decoded(response.iter_lines()))
        assert time.monotonic() - started < 5
        [stopped] = events
        assert stopped["type"] == "error"
        assert stopped["code"] == "cancelled"
        assert upstream.requests, "the call had reached the provider"
        row = _usage_row(live, stopped["log_id"])
        assert row.status == "cancelled"
        assert row.operation == "console"
