"""Conversation pages: list and search, create, chat (plain, streamed, stopped), ownership, CSRF, export."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from llm_manager.manager import LLMManager
from llm_manager.server.admin import _markdown
from llm_manager.services.accounts import PERMISSIONS
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.conversations import ConversationOwner, ConversationView, Viewer
from tests.server.admin.conftest import PASSWORD, Admin, Browser
from tests.server.conftest import Gateway

BASE = "/admin/conversations"
_CSRF = re.compile(r'"X-CSRF-Token": "([^"]+)"')
_LOGIN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_HX = {"HX-Request": "true"}
_PAYLOAD = "**bold** <script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3))"


def _demo(gateway: Gateway, slug: str = "demo", *, delay_ms: float = 0, **fields: Any) -> None:
    async def create(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(
                slug=slug, provider="demo", model="demo-chat", options={"delay_ms": delay_ms}, **fields
            )
        )

    gateway.run(create)


def _conversation(gateway: Gateway, user_id: int, *messages: str, **options: Any) -> ConversationView:
    """A conversation of `user_id` on `demo`, with each message sent and answered."""

    async def create(llm: LLMManager) -> ConversationView:
        view = await llm.services.conversations.create(
            ConversationOwner(user_id=user_id), options.pop("configuration", "demo"), **options
        )
        for message in messages:
            await llm.services.replies.send(view.id, Viewer(user_id=user_id), message)
        return await llm.services.conversations.get(view.id, Viewer.system())

    view: ConversationView = gateway.run(create)
    return view


def _chatter(admin: Admin, email: str) -> tuple[Browser, int]:
    """A user who may chat but not read others' conversations (no default role is like that)."""

    async def role(llm: LLMManager) -> None:
        if "chatter" not in {view.name for view in await llm.services.accounts.list_roles()}:
            await llm.services.accounts.create_role("chatter", permissions=["test-llm-configs"])

    admin.gateway.run(role)
    user_id = admin.user(email, roles=["chatter"])
    browser = admin.browser()
    assert browser.sign_in(email).status_code == 303
    return browser, user_id


def _user_id(admin: Admin, email: str) -> int:
    async def find(llm: LLMManager) -> int:
        return (await llm.services.accounts.user_by_email(email)).id

    found: int = admin.gateway.run(find)
    return found


def _send(browser: Browser, conversation_id: str, content: str, after: int = 0) -> Any:
    return browser.post(
        f"{BASE}/{conversation_id}/messages", {"content": content, "after": after}, headers=_HX
    )


def _events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.startswith("data: "):
            yield orjson.loads(line[6:])


# --- markdown -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("<script>alert(1)</script>", "<script"),
        ("<img src=x onerror=alert(1)>", "<img"),
        ("[x](javascript:alert(1))", "href"),
        ("[x](JaVaScRiPt:alert(1))", "href"),
        ("[x](&#106;avascript:alert(1))", "href"),
        ("[x](data:text/html;base64,PHNjcmlwdD4=)", "href"),
        ("[x](vbscript:msgbox)", "href"),
        ("<javascript:alert(1)>", "href"),
        ("![x](data:image/png;base64,AAAA)", "<img"),
        ('<a href="https://example.com">x</a>', "<a "),
        ("`<b>` and\n\n```html\n<b onmouseover=x>\n```", "<b"),
    ],
)
def test_markdown_renders_unsafe_input_inert(source: str, forbidden: str) -> None:
    html = str(_markdown.render(source))
    assert forbidden not in html.lower()
    assert "javascript:" not in html.lower() or "href" not in html


def test_markdown_links_are_nofollow_and_images_become_links() -> None:
    html = str(
        _markdown.render("**b** [site](https://example.com/a?b=1&c=2) ![chart](https://example.com/c.png)")
    )
    assert "<strong>b</strong>" in html
    assert (
        '<a href="https://example.com/a?b=1&amp;c=2" rel="nofollow noopener" target="_blank">site</a>' in html
    )
    assert '<a href="https://example.com/c.png" rel="nofollow noopener" target="_blank">chart</a>' in html
    assert "<img" not in html


def test_markdown_keeps_tables_and_code() -> None:
    html = str(_markdown.render("| a | b |\n|---|---|\n| 1 | ~~2~~ |\n\n```py\nprint('<x>')\n```"))
    assert "<table>" in html
    assert "<s>2</s>" in html
    assert "<code class=\"language-py\">print('&lt;x&gt;')" in html


# --- the list -------------------------------------------------------------------------------------


def test_list_shows_own_conversations_with_totals_and_searches_titles_and_messages(admin: Admin) -> None:
    _demo(admin.gateway)
    _demo(admin.gateway, "other")
    browser, me = _chatter(admin, "me@example.com")
    _, someone = _chatter(admin, "someone@example.com")
    trip = _conversation(admin.gateway, me, "Plan a trip to Lisbon", title="Holidays")
    _conversation(admin.gateway, me, "Explain recursion", configuration="other")
    _conversation(admin.gateway, someone, "Lisbon secrets")

    page = browser.get(BASE)
    assert page.status_code == 200
    assert (
        page.text.count('href="/admin/conversations/') - page.text.count('href="/admin/conversations/new')
        == 2
    )
    assert "Holidays" in page.text
    assert "Explain recursion" in page.text
    assert "Lisbon secrets" not in page.text
    row = re.search(rf'href="{BASE}/{trip.id}">Holidays</a>.*?</tr>', page.text, re.S)
    assert row is not None
    assert '<td class="num">2</td>' in row.group(0)  # messages
    assert f'<td class="num">{trip.total_tokens}</td>' in row.group(0)
    assert "$0.0000" in row.group(0)
    assert "Owner" not in page.text  # a chatter sees only their own: no owner column or filter

    found = browser.get(f"{BASE}?q=lisbon")  # in a message, any case
    assert "Holidays" in found.text
    assert "Explain recursion" not in found.text
    assert "Holidays" in browser.get(f"{BASE}?q=holi").text  # in the title
    assert "No conversation matches" in browser.get(f"{BASE}?q=nowhere").text
    by_configuration = browser.get(f"{BASE}?configuration=other")
    assert "Explain recursion" in by_configuration.text
    assert "Holidays" not in by_configuration.text


def test_readers_of_everything_see_owners_and_filter_by_owner(admin: Admin) -> None:
    _demo(admin.gateway)
    _, someone = _chatter(admin, "someone@example.com")
    _conversation(admin.gateway, someone, "Lisbon secrets")
    operator = admin.signed_in("operator")
    page = operator.get(BASE)
    assert "Lisbon secrets" in page.text
    assert "someone@example.com" in page.text
    assert 'name="owner"' in page.text
    assert "Lisbon secrets" in operator.get(f"{BASE}?owner=user:{someone}").text
    assert "Lisbon secrets" not in operator.get(f"{BASE}?owner=me").text
    assert operator.get(f"{BASE}?owner=nobody").status_code == 422
    assert 'href="/admin/conversations"' in operator.get("/admin").text

    viewer = admin.signed_in("viewer")  # reads everyone's, chats in none
    assert "Lisbon secrets" in viewer.get(BASE).text
    assert 'href="/admin/conversations"' in viewer.get("/admin").text
    assert viewer.get(f"{BASE}/new").status_code == 403

    nothing = admin.signed_in("admin")
    admin.gateway.run(_strip_conversation_permissions)
    assert nothing.get(BASE).status_code == 403, "neither chats nor reads others': no page"
    assert 'href="/admin/conversations"' not in nothing.get("/admin").text


async def _strip_conversation_permissions(llm: LLMManager) -> None:
    kept = [
        permission
        for permission in PERMISSIONS
        if permission not in ("test-llm-configs", "view-llm-conversations")
    ]
    await llm.services.accounts.set_permissions({"admin": kept})


def test_the_list_pages_with_a_keyset_cursor(admin: Admin) -> None:
    _demo(admin.gateway)
    browser, me = _chatter(admin, "me@example.com")
    for index in range(27):
        _conversation(admin.gateway, me, title=f"Topic {index:02d}")
    first = browser.get(BASE)
    assert first.text.count("<tr>") == 1 + 25
    assert "Topic 26" in first.text
    assert "Topic 01" not in first.text
    older = re.search(r'href="(/admin/conversations\?cursor=[^"]+)">Older', first.text)
    assert older is not None
    second = browser.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count("<tr>") == 1 + 2
    assert "Topic 00" in second.text
    assert "Topic 01" in second.text
    assert "« Newest" in second.text
    assert browser.get(f"{BASE}?cursor=garbage").status_code == 422


# --- create ---------------------------------------------------------------------------------------


def test_create_a_conversation_from_the_form(admin: Admin) -> None:
    _demo(admin.gateway)
    _demo(admin.gateway, "asleep", is_active=False)
    browser, me = _chatter(admin, "me@example.com")
    form = browser.get(f"{BASE}/new")
    assert form.status_code == 200
    assert 'value="demo"' in form.text
    assert "asleep" not in form.text
    assert 'value="summarize"' in form.text

    created = browser.post(
        f"{BASE}/new",
        {
            "configuration": "demo",
            "title": "Ideas",
            "system_prompt": "Be brief.",
            "context_strategy": "summarize",
        },
    )
    assert created.status_code == 303
    conversation_id = created.headers["location"].rsplit("/", 1)[1]
    view: ConversationView = admin.gateway.run(
        lambda llm: llm.services.conversations.get(conversation_id, Viewer(user_id=me))
    )
    assert (view.title, view.system_prompt, view.context_strategy, view.configuration) == (
        "Ideas",
        "Be brief.",
        "summarize",
        "demo",
    )
    page = browser.get(created.headers["location"])
    assert page.status_code == 200
    assert "<h1>Ideas</h1>" in page.text
    assert "<summary>System prompt</summary>" in page.text
    assert "Be brief." in page.text
    assert 'id="chat-form"' in page.text
    assert re.search(r'<script src="/admin/static/[0-9a-f]+/js/chat\.js" defer>', page.text)
    assert "style=" not in page.text


def test_create_refuses_bad_fields_beside_the_field(admin: Admin) -> None:
    _demo(admin.gateway)
    _demo(admin.gateway, "asleep", is_active=False)
    browser, _ = _chatter(admin, "me@example.com")
    for change in ({"configuration": "asleep"}, {"context_strategy": "forget"}):
        refused = browser.post(f"{BASE}/new", {"configuration": "demo", "title": "x", **change})
        assert refused.status_code == 422
        assert 'aria-invalid="true"' in refused.text
        assert 'class="field-error"' in refused.text
        assert "Please correct the field" in refused.text


# --- chatting -------------------------------------------------------------------------------------


def test_a_plain_send_answers_with_the_exchange_and_sanitized_markdown(admin: Admin) -> None:
    _demo(admin.gateway)
    browser, me = _chatter(admin, "me@example.com")
    view = _conversation(admin.gateway, me)
    sent = _send(browser, view.id, _PAYLOAD)
    assert sent.status_code == 200
    html = sent.text
    assert "<html" not in html  # a fragment
    assert html.count('<article class="chat-message') == 2
    assert 'id="m-1"' in html
    assert 'id="m-2"' in html
    user_part, reply_part = html.split('id="m-2"')
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in user_part  # the user's text, as typed
    assert "**bold**" in user_part
    assert "<strong>bold</strong>" in reply_part  # the demo model echoes it: markdown, rendered
    assert "&lt;script&gt;" in reply_part
    assert "&lt;img src=x onerror=alert(2)&gt;" in reply_part
    assert "<script" not in html
    assert "<img" not in html
    assert 'href="javascript' not in html
    assert "[click](javascript:alert(3))" in reply_part
    assert re.search(r"\d+ in · \d+ out", reply_part)
    assert 'id="chat-totals" class="chat-totals" hx-swap-oob="true">2 messages' in html
    assert 'class="badge' not in reply_part.split("</header>")[0].split("<strong>")[1]  # complete: no badge

    page = browser.get(f"{BASE}/{view.id}")
    assert "<strong>bold</strong>" in page.text
    assert "<script>alert" not in page.text
    assert 'value="2" id="f-after"' in page.text

    again = _send(browser, view.id, "Second", after=2)
    assert again.text.count('<article class="chat-message') == 2
    assert 'id="m-3"' in again.text
    assert 'id="m-1"' not in again.text

    without_htmx = browser.post(f"{BASE}/{view.id}/messages", {"content": "Third"})  # no JavaScript
    assert without_htmx.status_code == 303
    assert without_htmx.headers["location"] == f"{BASE}/{view.id}#m-6"
    assert browser.post(f"{BASE}/{view.id}/messages", {"content": "  "}).status_code == 303
    assert "Not sent" in browser.get(f"{BASE}/{view.id}").text


def test_a_refused_message_stores_nothing_and_says_why(admin: Admin) -> None:
    _demo(admin.gateway, rpm_limit=1)
    browser, me = _chatter(admin, "me@example.com")
    view = _conversation(admin.gateway, me)
    assert _send(browser, view.id, "first").status_code == 200
    refused = _send(browser, view.id, "second", after=2)
    assert refused.status_code == 429
    assert '<p class="error" role="alert">' in refused.text
    stored: ConversationView = admin.gateway.run(
        lambda llm: llm.services.conversations.get(view.id, Viewer.system())
    )
    assert stored.message_count == 2
    streamed = browser.request(
        "POST", f"{BASE}/{view.id}/streams", json={"content": "third"}, headers={"X-CSRF-Token": browser.csrf}
    )
    [error] = list(_events(browser.get(streamed.json()["events_url"]).text.splitlines()))
    assert (error["type"], error["code"]) == ("error", "rate_limit_exceeded")
    assert browser.get(f"{BASE}/{view.id}/messages?after=2").text.count("<article") == 0


def test_a_streamed_reply_relays_chunks_then_stores_the_exchange(admin: Admin) -> None:
    _demo(admin.gateway)
    browser, me = _chatter(admin, "me@example.com")
    view = _conversation(admin.gateway, me)
    created = browser.request(
        "POST",
        f"{BASE}/{view.id}/streams",
        json={"content": "Stream *this*"},
        headers={"X-CSRF-Token": browser.csrf},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["events_url"] == f"{BASE}/{view.id}/streams/{body['id']}/events"
    assert body["cancel_url"] == f"{BASE}/{view.id}/cancel?stream={body['id']}"
    response = browser.get(body["events_url"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = list(_events(response.text.splitlines()))
    chunks = "".join(event["content"] for event in events if event["type"] == "chunk")
    assert events[-1]["type"] == "done"
    assert events[-1]["stats"]["status"] == "ok"
    assert "Stream *this*" in chunks
    assert browser.get(body["events_url"]).status_code == 404, "a reply stream runs once"

    stored = browser.get(f"{BASE}/{view.id}/messages?after=0", headers=_HX)
    assert stored.text.count('<article class="chat-message') == 2
    assert "Stream <em>this</em>" in stored.text
    assert "hx-swap-oob" in stored.text

    empty = browser.request(
        "POST", f"{BASE}/{view.id}/streams", json={"content": "  "}, headers={"X-CSRF-Token": browser.csrf}
    )
    assert empty.status_code == 422
    assert "content" in empty.json()["errors"]


def test_a_reply_stream_is_for_the_session_that_registered_it(admin: Admin) -> None:
    _demo(admin.gateway)
    owner, me = _chatter(admin, "me@example.com")
    view = _conversation(admin.gateway, me)
    url = owner.request(
        "POST", f"{BASE}/{view.id}/streams", json={"content": "hi"}, headers={"X-CSRF-Token": owner.csrf}
    ).json()["events_url"]
    elsewhere = admin.browser()
    assert elsewhere.sign_in("me@example.com").status_code == 303
    assert elsewhere.get(url).status_code == 404
    assert admin.signed_in("admin").get(url).status_code == 404
    assert owner.get(url).status_code == 200


@contextlib.contextmanager
def _live_sign_in(live: Gateway, email: str) -> Iterator[tuple[httpx.Client, str]]:
    """A real HTTP client signed in to the live server, and its CSRF token."""

    async def create(llm: LLMManager) -> None:
        await llm.services.accounts.create_user(email, PASSWORD, roles=["operator"])

    live.run(create)
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        form = _LOGIN_CSRF.search(client.get("/admin/login").text)
        assert form is not None
        login = {"email": email, "password": PASSWORD, "csrf_token": form.group(1), "next": "/admin"}
        assert client.post("/admin/login", data=login).status_code == 303
        token = _CSRF.search(client.get("/admin/account").text)
        assert token is not None
        yield client, token.group(1)


def test_stop_keeps_the_partial_reply_as_interrupted(live: Gateway) -> None:
    _demo(live, delay_ms=40)
    with _live_sign_in(live, "operator@example.com") as (client, csrf):
        created = client.post(
            f"{BASE}/new", data={"configuration": "demo", "csrf_token": csrf}, follow_redirects=False
        )
        page = created.headers["location"]
        stream = client.post(
            f"{page}/streams", json={"content": "Tell me more"}, headers={"X-CSRF-Token": csrf}
        )
        body = stream.json()
        events: list[dict[str, Any]] = []
        with client.stream("GET", body["events_url"]) as response:
            for event in _events(response.iter_lines()):
                events.append(event)
                if sum(1 for item in events if item["type"] == "chunk") == 3:
                    stopped = client.post(f"{page}/cancel", headers={"X-CSRF-Token": csrf})
                    assert stopped.status_code == 202
        assert events[-1]["type"] == "done"
        assert events[-1]["stats"]["status"] == "cancelled"
        partial = "".join(event["content"] for event in events if event["type"] == "chunk")
        stored = client.get(f"{page}/messages?after=0").text
        assert '<span class="badge interrupted"' in stored
        assert partial.strip() in stored
        assert "before adding a real provider" not in stored
        reloaded = client.get(page).text
        assert "badge interrupted" in reloaded


# --- ownership ------------------------------------------------------------------------------------


def test_another_users_conversation_is_not_found_unless_reading_everything(admin: Admin) -> None:
    _demo(admin.gateway)
    _, someone = _chatter(admin, "someone@example.com")
    theirs = _conversation(admin.gateway, someone, "Secret plans")
    message_id = admin.gateway.run(
        lambda llm: llm.services.conversations.last_messages(theirs.id, Viewer.system())
    )[0].id
    stranger, _ = _chatter(admin, "stranger@example.com")
    for url in ("", "/messages?after=0", "/messages?before=2", "/export.json", "/export.md"):
        assert stranger.get(f"{BASE}/{theirs.id}{url}").status_code == 404, url

    operator = admin.signed_in("operator")  # holds view-llm-conversations: reads, read-only
    page = operator.get(f"{BASE}/{theirs.id}")
    assert page.status_code == 200
    assert "Secret plans" in page.text
    assert "belongs to someone@example.com" in page.text
    assert 'id="chat-form"' not in page.text
    assert "Rename" not in page.text
    assert ">Pin<" not in page.text
    assert operator.get(f"{BASE}/{theirs.id}/export.json").status_code == 200
    for browser in (operator, stranger):
        assert _send(browser, theirs.id, "hijack").status_code == 404
        assert (
            browser.request(
                "POST",
                f"{BASE}/{theirs.id}/streams",
                json={"content": "x"},
                headers={"X-CSRF-Token": browser.csrf},
            ).status_code
            == 404
        )
        for action, data in (
            ("rename", {"title": "mine now"}),
            ("delete", {}),
            ("cancel", {}),
            (f"messages/{message_id}/pin", {"pinned": "1"}),
        ):
            assert browser.post(f"{BASE}/{theirs.id}/{action}", data).status_code == 404, action
    after: ConversationView = admin.gateway.run(
        lambda llm: llm.services.conversations.get(theirs.id, Viewer.system())
    )
    assert (after.title, after.message_count) == (theirs.title, 2)


def test_every_post_needs_the_csrf_token(admin: Admin) -> None:
    _demo(admin.gateway)
    browser, me = _chatter(admin, "me@example.com")
    view = _conversation(admin.gateway, me, "Hello")
    message_id = admin.gateway.run(
        lambda llm: llm.services.conversations.last_messages(view.id, Viewer.system())
    )[0].id
    posts = {
        f"{BASE}/new": {"configuration": "demo"},
        f"{BASE}/{view.id}/messages": {"content": "hi"},
        f"{BASE}/{view.id}/streams": {"content": "hi"},
        f"{BASE}/{view.id}/cancel": {},
        f"{BASE}/{view.id}/rename": {"title": "x"},
        f"{BASE}/{view.id}/messages/{message_id}/pin": {"pinned": "1"},
        f"{BASE}/{view.id}/delete": {},
    }
    for url, data in posts.items():
        assert browser.post(url, {**data, "csrf_token": ""}).status_code == 403, url
        assert browser.post(url, {**data, "csrf_token": "forged"}).status_code == 403, url
    assert browser.request("POST", f"{BASE}/{view.id}/streams", json={"content": "hi"}).status_code == 403
    still: ConversationView = admin.gateway.run(
        lambda llm: llm.services.conversations.get(view.id, Viewer.system())
    )
    assert (still.title, still.message_count) == ("Hello", 2)


# --- the rest -------------------------------------------------------------------------------------


def test_rename_pin_and_delete(admin: Admin) -> None:
    _demo(admin.gateway)
    browser, me = _chatter(admin, "me@example.com")
    view = _conversation(admin.gateway, me, "Remember: my name is Ada")
    renamed = browser.post(f"{BASE}/{view.id}/rename", {"title": "About Ada"})
    assert renamed.status_code == 303
    page = browser.get(f"{BASE}/{view.id}").text
    assert "<h1>About Ada</h1>" in page
    assert "Conversation renamed." in page
    assert browser.post(f"{BASE}/{view.id}/rename", {"title": "  "}).status_code == 303
    assert "Not renamed" in browser.get(f"{BASE}/{view.id}").text

    first = admin.gateway.run(lambda llm: llm.services.conversations.last_messages(view.id, Viewer.system()))[
        0
    ]
    pinned = browser.post(f"{BASE}/{view.id}/messages/{first.id}/pin", {"pinned": "1"}, headers=_HX)
    assert pinned.status_code == 200
    assert pinned.text.count("<article") == 1
    assert 'class="badge pinned"' in pinned.text
    assert ">Unpin<" in pinned.text
    unpinned = browser.post(f"{BASE}/{view.id}/messages/{first.id}/pin", {"pinned": "0"})
    assert unpinned.status_code == 303
    assert unpinned.headers["location"].endswith("#m-1")
    assert 'class="badge pinned"' not in browser.get(f"{BASE}/{view.id}").text

    deleted = browser.post(f"{BASE}/{view.id}/delete")
    assert deleted.status_code == 303
    assert deleted.headers["location"] == BASE
    assert "About Ada" in browser.get(BASE).text  # the flash names it…
    assert browser.get(f"{BASE}/{view.id}").status_code == 404  # …and it is gone


def test_export_as_json_and_markdown_downloads(admin: Admin) -> None:
    _demo(admin.gateway)
    browser, me = _chatter(admin, "me@example.com")
    view = _conversation(admin.gateway, me, "Export me", title="Exported")
    as_json = browser.get(f"{BASE}/{view.id}/export.json")
    assert as_json.status_code == 200
    assert as_json.headers["content-disposition"] == f'attachment; filename="conversation-{view.id}.json"'
    exported = as_json.json()
    assert exported["conversation"]["title"] == "Exported"
    assert [message["role"] for message in exported["messages"]] == ["user", "assistant"]
    as_markdown = browser.get(f"{BASE}/{view.id}/export.md")
    assert as_markdown.headers["content-type"].startswith("text/markdown")
    assert as_markdown.headers["content-disposition"].endswith('.md"')
    assert as_markdown.text.startswith("# Exported")
    assert "Export me" in as_markdown.text


def test_a_long_conversation_opens_on_its_newest_page_and_loads_earlier_ones(admin: Admin) -> None:
    _demo(admin.gateway)
    browser, me = _chatter(admin, "me@example.com")
    view = _conversation(admin.gateway, me, *[f"message number {index}" for index in range(26)])
    page = browser.get(f"{BASE}/{view.id}").text
    assert page.count('<article class="chat-message') == 50
    assert 'id="m-3"' in page
    assert 'id="m-2"' not in page
    assert f'hx-get="{BASE}/{view.id}/messages?before=3"' in page
    earlier = browser.get(f"{BASE}/{view.id}/messages?before=3", headers=_HX).text
    assert earlier.count('<article class="chat-message') == 2
    assert 'id="m-1"' in earlier
    assert "Load earlier" not in earlier
