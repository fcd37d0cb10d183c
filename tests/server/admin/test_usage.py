"""Usage logs: filters, keyset pages, the detail page with its metrics, and secrets kept out."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta

from llm_manager.errors import ProviderError
from llm_manager.manager import LLMManager
from llm_manager.services.calls import CallContext, ChatCall
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as transcript
from llm_manager.types import Message
from tests.server.admin.conftest import Admin
from tests.server.conftest import Gateway
from tests.server.upstreams import openai_configuration

_ROW = re.compile(r'href="/admin/usage/([0-9a-f-]{36})"')


def _call(content: str, **options: object) -> ChatCall:
    return ChatCall(messages=(Message(role="user", content=content),), **options)  # type: ignore[arg-type]


def _calls(gateway: Gateway) -> dict[str, str]:
    """Four calls: chat for an application, a console run, another configuration, a cancelled stream."""

    async def run(llm: LLMManager) -> dict[str, str]:
        application = await llm.applications.create("billing")
        for slug in ("demo", "other"):
            await llm.configurations.create(
                ConfigurationCreate(slug=slug, provider="demo", model=f"{slug}-chat", options={"delay_ms": 0})
            )
        chat = await llm.services.chat.chat(
            _call("hello", configuration="demo", context=CallContext(application_id=application.id))
        )
        console = await llm.services.chat.chat(
            _call(
                "hi",
                configuration="demo",
                operation="console",
                context=CallContext(user_id="ada@example.com"),
            )
        )
        other = await llm.services.chat.chat(_call("hey", configuration="other"))
        stream = llm.services.chat.stream(_call("bye", configuration="demo", operation="stream"))
        await stream.first()
        await stream.aclose()
        return {
            "chat": chat.log_id,
            "console": console.log_id,
            "other": other.log_id,
            "cancelled": stream.log_id,
        }

    ids: dict[str, str] = gateway.run(run)
    return ids


def _listed(html: str) -> list[str]:
    return _ROW.findall(html)


def test_usage_lists_every_call_newest_first_and_filters(admin: Admin) -> None:
    ids = _calls(admin.gateway)
    browser = admin.signed_in("viewer")
    page = browser.get("/admin/usage")
    assert page.status_code == 200
    assert _listed(page.text) == [ids["cancelled"], ids["other"], ids["console"], ids["chat"]]
    assert "billing" in page.text
    checks = {
        "operation=console": [ids["console"]],
        "status=cancelled": [ids["cancelled"]],
        "configuration=other": [ids["other"]],
        "model=other-chat": [ids["other"]],
        "provider=demo": [ids["cancelled"], ids["other"], ids["console"], ids["chat"]],
        "application=billing": [ids["chat"]],
        "status=ok&configuration=demo": [ids["console"], ids["chat"]],
    }
    for query, expected in checks.items():
        assert _listed(browser.get(f"/admin/usage?{query}").text) == expected, query
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    future = browser.get(f"/admin/usage?from={tomorrow}")
    assert _listed(future.text) == []
    assert "No calls match these filters" in future.text
    assert len(_listed(browser.get(f"/admin/usage?from={yesterday}T00:00&to={tomorrow}").text)) == 4
    assert _listed(browser.get(f"/admin/usage?to={yesterday}").text) == []
    today = datetime.now(UTC).date().isoformat()
    assert len(_listed(browser.get(f"/admin/usage?from={today}&to={today}").text)) == 4, (
        "a `to` day is included"
    )


def test_an_unreadable_date_is_shown_beside_its_field(admin: Admin) -> None:
    page = admin.signed_in("viewer").get("/admin/usage?from=last+tuesday")
    assert page.status_code == 422
    assert 'id="e-since"' in page.text
    assert "use a date like" in page.text


def test_keyset_pages_keep_the_filters_and_never_repeat_a_row(admin: Admin) -> None:
    ids = _calls(admin.gateway)
    browser = admin.signed_in("viewer")
    first = browser.get("/admin/usage?provider=demo&limit=3")
    assert _listed(first.text) == [ids["cancelled"], ids["other"], ids["console"]]
    older = re.search(r'href="(/admin/usage\?[^"]*cursor=[^"]+)"', first.text)
    assert older is not None
    next_url = older.group(1).replace("&amp;", "&")
    assert "provider=demo" in next_url
    assert "limit=3" in next_url
    second = browser.get(next_url)
    assert _listed(second.text) == [ids["chat"]]
    assert "Older »" not in second.text
    assert "« Newest" in second.text
    broken = browser.get("/admin/usage?cursor=not-a-cursor")
    assert broken.status_code == 422
    assert "cursor is not valid" in broken.text


def test_detail_page_shows_the_call_and_its_metrics(admin: Admin) -> None:
    ids = _calls(admin.gateway)

    async def metric(llm: LLMManager) -> None:
        await llm.services.metrics.record(
            "quality.score", value=0.75, data={"note": "<b>fine</b>"}, usage_log_id=ids["console"]
        )

    admin.gateway.run(metric)
    browser = admin.signed_in("viewer")
    page = browser.get(f"/admin/usage/{ids['console']}")
    assert page.status_code == 200
    text = page.text
    for expected in (
        "console",
        "ada@example.com",
        "demo-chat",
        "quality.score",
        "0.75",
        "Time to first token",
    ):
        assert expected in text, expected
    assert "characters" in text  # what is stored instead of the text
    assert "<b>fine</b>" not in text  # metric data is escaped
    assert "\\u003cb\\u003efine" in text
    cancelled = browser.get(f"/admin/usage/{ids['cancelled']}")
    assert '<span class="badge cancelled">cancelled</span>' in cancelled.text
    assert "billing" in browser.get(f"/admin/usage/{ids['chat']}").text


def test_an_error_row_shows_its_redacted_message_and_never_the_key(
    admin: Admin, upstream: FakeUpstream
) -> None:
    upstream.add("POST", transcript.CHAT_PATH, transcript.error_reply("authentication"))

    async def failing(llm: LLMManager) -> str:
        await llm.configurations.create(openai_configuration(upstream, api_key="kk"))
        stream = llm.services.chat.stream(_call("hi", configuration="gpt"))
        with contextlib.suppress(ProviderError):  # the failure is what the page shows
            await stream.first()
        return stream.log_id

    log_id = admin.gateway.run(failing)
    page = admin.signed_in("viewer").get(f"/admin/usage/{log_id}")
    assert page.status_code == 200
    assert "AuthenticationError" in page.text
    assert "[redacted]" in page.text
    assert "provided: kk" not in page.text


def test_unknown_call_is_a_404_page(admin: Admin) -> None:
    page = admin.signed_in("viewer").get("/admin/usage/00000000-0000-0000-0000-000000000000")
    assert page.status_code == 404
    assert "Not found" in page.text


def test_empty_log_says_what_to_do_and_stats_permission_is_needed(admin: Admin) -> None:
    page = admin.signed_in("viewer").get("/admin/usage")
    assert "No calls have been made yet" in page.text
    assert 'href="/admin/console"' in page.text

    async def bare_role(llm: LLMManager) -> None:
        await llm.services.accounts.create_role("nothing")

    admin.gateway.run(bare_role)
    nobody = admin.signed_in("nothing")
    assert nobody.get("/admin/usage").status_code == 403
    assert nobody.get("/admin/usage/00000000-0000-0000-0000-000000000000").status_code == 403
