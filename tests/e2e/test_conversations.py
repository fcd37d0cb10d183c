"""Chatting in a real browser: stream a reply, Stop it, keep the partial; a plain reply; phone width."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.conversations import ConversationOwner, ConversationPage, Viewer
from tests.e2e.conftest import ADMIN_EMAIL, PHONE, Site

pytestmark = pytest.mark.browser

CHAT_DEMO = "chat-demo"
"""A demo configuration that streams a token every 40 ms: the reply takes ~2 s, time to press Stop."""


def _chat_demo(site: Site) -> None:
    async def create(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(
                slug=CHAT_DEMO, name="Chat demo", provider="demo", model="demo-chat", options={"delay_ms": 40}
            )
        )

    site.run(create)


def _new_conversation(page: Page, title: str, configuration: str = CHAT_DEMO) -> None:
    page.goto("/admin/conversations")
    page.get_by_role("button", name="New conversation").first.click()
    page.get_by_label("Configuration").select_option(configuration)
    page.get_by_label("Title").fill(title)
    page.get_by_role("button", name="Start the conversation").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)


def _box(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Message")


def _messages(page: Page) -> tuple[int, int]:
    """(articles in the log, the log's own scroll height) — to check only the log grows."""
    count: int = page.locator("#chat-messages article").count()
    return count, page.evaluate("document.getElementById('chat-log').scrollHeight")


def test_stream_a_reply_stop_it_and_find_the_partial_after_a_reload(site: Site) -> None:
    _chat_demo(site)
    page = site.page(signed_in_as=ADMIN_EMAIL)
    _new_conversation(page, "Browser chat")
    expect(page.get_by_role("switch", name="Stream the reply")).to_be_checked()

    _box(page).fill("Tell me about **streams**.")
    page.get_by_role("button", name="Send").click()
    pending = page.locator("article.chat-pending.chat-assistant")
    expect(pending).to_contain_text("This is the LLM Manager demo")  # text arrives while streaming
    expect(_box(page)).to_have_value("")
    page.get_by_role("button", name="Stop").click()

    reply = page.locator("article.chat-assistant").last
    expect(reply.locator(".badge.interrupted")).to_have_text("interrupted")
    expect(page.locator("article.chat-pending")).to_have_count(0)
    partial = reply.locator(".chat-markdown").inner_text()
    assert partial.startswith("This is the LLM Manager demo")
    assert "before adding a real provider" not in partial, "the whole reply arrived: Stop did nothing"
    expect(reply.locator("footer")).to_contain_text(re.compile(r"\d+ in · \d+ out"))
    expect(page.locator("#chat-totals")).to_contain_text("2 messages")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    user_message = page.locator("article.chat-user").last
    expect(user_message).to_contain_text("Tell me about **streams**.")  # the user's text, as typed

    page.reload()
    reply = page.locator("article.chat-assistant").last
    expect(reply.locator(".badge.interrupted")).to_be_visible()
    assert reply.locator(".chat-markdown").inner_text() == partial

    async def stored(llm: LLMManager) -> ConversationPage:
        return await llm.services.conversations.page(Viewer.system())

    [conversation] = site.run(stored).items
    assert (conversation.title, conversation.message_count) == ("Browser chat", 2)


def test_a_plain_reply_is_rendered_as_markdown_and_the_totals_follow(site: Site) -> None:
    page = site.page(signed_in_as=ADMIN_EMAIL)
    _new_conversation(page, "Plain chat", "demo")  # the seeded demo: 15 ms a token
    page.get_by_role("switch", name="Stream the reply").uncheck()
    _box(page).fill("Say *this* <script>window.hacked = 1</script>")
    _box(page).press("Control+Enter")

    reply = page.locator("article.chat-assistant").last
    expect(reply).to_contain_text("before adding a real provider")
    expect(reply.locator(".chat-markdown em")).to_have_text("this")
    expect(reply.locator(".chat-markdown")).to_contain_text("<script>window.hacked = 1</script>")
    assert page.evaluate("window.hacked") is None
    expect(page.locator("#chat-totals")).to_contain_text("2 messages")
    expect(reply.locator(".badge")).to_have_count(0)

    reply.get_by_role("button", name="Pin").click()
    expect(page.locator("article.chat-assistant").last.locator(".badge.pinned")).to_have_text("pinned")

    _box(page).fill("And again")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-totals")).to_contain_text("4 messages")
    expect(page.locator("#chat-messages article")).to_have_count(4)


def test_the_chat_fits_a_phone_and_only_the_log_scrolls(site: Site) -> None:
    _chat_demo(site)

    async def history(llm: LLMManager) -> str:
        admin = await llm.services.accounts.user_by_email(ADMIN_EMAIL)
        view = await llm.services.conversations.create(
            ConversationOwner(user_id=admin.id),
            CHAT_DEMO,
            title="A conversation with a rather long title that has to wrap on a phone",
            system_prompt="Be brief.",
        )
        for index in range(4):  # short replies (3 tokens), so the history is quick to make
            text = f"Question {index}, long enough to wrap on a narrow screen: {'word ' * 30}"
            await llm.services.replies.send(
                view.id, Viewer(user_id=admin.id), text, overrides={"max_tokens": 3}
            )
        return view.id

    conversation_id = site.run(history)
    page = site.page(signed_in_as=ADMIN_EMAIL, viewport=PHONE)
    page.goto(f"/admin/conversations/{conversation_id}")
    _box(page).fill("Third")
    page.get_by_role("button", name="Send").click()  # Playwright scrolls the button into view first
    pending = page.locator("article.chat-pending.chat-assistant")
    expect(pending).to_contain_text("demo model")
    before = page.evaluate("window.scrollY")
    expect(pending).to_contain_text("priced at zero")  # many tokens later
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=15_000)
    assert page.evaluate("window.scrollY") == before, "streaming moved the page"
    count, height = _messages(page)
    assert count == 10
    log_box = page.evaluate("document.getElementById('chat-log').clientHeight")
    assert height > log_box, "the log scrolls in its own box"
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport + 1
    for path in ("/admin/conversations", "/admin/conversations/new"):
        page.goto(path)
        width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= viewport + 1, path


def test_a_refused_message_stays_in_the_box_with_the_reason(site: Site) -> None:
    async def limited(llm: LLMManager) -> str:
        await llm.configurations.create(
            ConfigurationCreate(
                slug="one-a-minute", provider="demo", model="demo-chat", options={"delay_ms": 0}, rpm_limit=1
            )
        )
        admin = await llm.services.accounts.user_by_email(ADMIN_EMAIL)
        view = await llm.services.conversations.create(ConversationOwner(user_id=admin.id), "one-a-minute")
        await llm.services.replies.send(view.id, Viewer(user_id=admin.id), "This uses up the minute.")
        return view.id

    conversation_id = site.run(limited)
    page = site.page(signed_in_as=ADMIN_EMAIL)
    page.goto(f"/admin/conversations/{conversation_id}")
    _box(page).fill("Please answer this one too")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-error")).to_contain_text(re.compile("rate limit|per minute", re.IGNORECASE))
    expect(_box(page)).to_have_value("Please answer this one too")
    expect(page.locator("#chat-messages article")).to_have_count(2)
    expect(page.locator("article.chat-pending")).to_have_count(0)
