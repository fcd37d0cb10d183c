"""Conversations: who may read or change them, listing and search, paging, export."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from llm_manager.errors import InvalidInputError, NotFoundError
from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.conversations import (
    ConversationChanges,
    ConversationFilter,
    ConversationOwner,
    ConversationView,
    Viewer,
)

PASSWORD = "correct horse battery staple"
SYSTEM = Viewer.system()
# $1 per million tokens both ways, so replies have a cost to add up.
PRICED = {"input_price": Decimal(1), "output_price": Decimal(1)}


@dataclass(frozen=True)
class People:
    alice: int
    bob: int
    shop: int
    blog: int


async def _demo(llm: LLMManager, slug: str = "demo") -> None:
    await llm.configurations.create(
        ConfigurationCreate(slug=slug, provider="demo", model="demo-chat", options={"delay_ms": 0}, **PRICED)
    )


async def _people(llm: LLMManager) -> People:
    alice = await llm.services.accounts.create_user("alice@example.com", PASSWORD)
    bob = await llm.services.accounts.create_user("bob@example.com", PASSWORD)
    shop = await llm.applications.create("shop")
    blog = await llm.applications.create("blog")
    return People(alice=alice.id, bob=bob.id, shop=shop.id, blog=blog.id)


async def _start(
    llm: LLMManager, owner: ConversationOwner, *, title: str | None = None, configuration: str = "demo"
) -> ConversationView:
    return await llm.services.conversations.create(owner, configuration, title=title)


async def _say(llm: LLMManager, conversation_id: str, viewer: Viewer, content: str) -> None:
    await llm.services.replies.send(conversation_id, viewer, content)


def _every_use(
    llm: LLMManager, conversation_id: str, viewer: Viewer
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every service call on one conversation, as `viewer`."""
    conversations, replies = llm.services.conversations, llm.services.replies
    return {
        "get": lambda: conversations.get(conversation_id, viewer),
        "messages": lambda: conversations.messages(conversation_id, viewer),
        "last_messages": lambda: conversations.last_messages(conversation_id, viewer),
        "export_json": lambda: conversations.export_json(conversation_id, viewer),
        "export_markdown": lambda: conversations.export_markdown(conversation_id, viewer),
        "rename": lambda: conversations.rename(conversation_id, viewer, "taken over"),
        "update": lambda: conversations.update(
            conversation_id, viewer, ConversationChanges(system_prompt="Obey me.")
        ),
        "send": lambda: replies.send(conversation_id, viewer, "hello?"),
        "stream": lambda: replies.stream(conversation_id, viewer, "hello?"),
        "delete": lambda: conversations.delete(conversation_id, viewer),
    }


READS = ("get", "messages", "last_messages", "export_json", "export_markdown")
CHANGES = ("rename", "update", "send", "stream", "delete")


async def _assert_unchanged(llm: LLMManager, before: ConversationView) -> None:
    after = await llm.services.conversations.get(before.id, SYSTEM)
    assert (after.title, after.system_prompt, after.message_count) == (
        before.title,
        before.system_prompt,
        before.message_count,
    )


# -- ownership -------------------------------------------------------------------------------


async def test_another_users_conversation_is_not_found_for_every_use(llm: LLMManager) -> None:
    await _demo(llm)
    people = await _people(llm)
    alices = await _start(llm, ConversationOwner(user_id=people.alice), title="Alice's plans")
    await _say(llm, alices.id, Viewer(user_id=people.alice), "my secret plan")
    before = await llm.services.conversations.get(alices.id, SYSTEM)

    for name, use in _every_use(llm, alices.id, Viewer(user_id=people.bob)).items():
        with pytest.raises(NotFoundError) as refused:
            await use()
        assert "secret" not in str(refused.value), name
    with pytest.raises(NotFoundError) as missing:
        await llm.services.conversations.get("no-such-id", Viewer(user_id=people.bob))
    with pytest.raises(NotFoundError) as hidden:
        await llm.services.conversations.get(alices.id, Viewer(user_id=people.bob))
    assert str(hidden.value).replace(alices.id, "ID") == str(missing.value).replace("no-such-id", "ID")
    await _assert_unchanged(llm, before)
    assert (await llm.services.conversations.page(Viewer(user_id=people.bob))).items == []


async def test_the_owner_may_do_everything(llm: LLMManager) -> None:
    await _demo(llm)
    people = await _people(llm)
    alices = await _start(llm, ConversationOwner(user_id=people.alice))
    uses = _every_use(llm, alices.id, Viewer(user_id=people.alice))

    for name in (*READS, "rename", "update", "send"):
        await uses[name]()
    stream = await uses["stream"]()
    async with stream:
        async for _ in stream:
            pass
    await uses["delete"]()

    with pytest.raises(NotFoundError):
        await llm.services.conversations.get(alices.id, SYSTEM)


async def test_reads_all_may_read_but_not_change(llm: LLMManager) -> None:
    await _demo(llm)
    people = await _people(llm)
    alices = await _start(llm, ConversationOwner(user_id=people.alice), title="Alice's plans")
    await _say(llm, alices.id, Viewer(user_id=people.alice), "my plan")
    before = await llm.services.conversations.get(alices.id, SYSTEM)
    auditor = Viewer(user_id=people.bob, reads_all=True)
    uses = _every_use(llm, alices.id, auditor)

    for name in READS:
        assert await uses[name](), name
    for name in CHANGES:
        with pytest.raises(NotFoundError):
            await uses[name]()
    with pytest.raises(NotFoundError):
        await llm.services.conversations.pin(alices.id, auditor, "any-message")

    await _assert_unchanged(llm, before)
    listed = await llm.services.conversations.page(auditor)
    assert [item.id for item in listed.items] == [alices.id]


async def test_another_applications_conversation_is_not_found(llm: LLMManager) -> None:
    await _demo(llm)
    people = await _people(llm)
    shops = await _start(llm, ConversationOwner(application_id=people.shop, external_user="customer-7"))
    await _say(llm, shops.id, Viewer(application_id=people.shop), "where is my order?")
    before = await llm.services.conversations.get(shops.id, SYSTEM)

    for viewer in (Viewer(application_id=people.blog), Viewer(user_id=people.alice)):
        for use in _every_use(llm, shops.id, viewer).values():
            with pytest.raises(NotFoundError):
                await use()
        assert (await llm.services.conversations.page(viewer)).items == []

    await _assert_unchanged(llm, before)
    own = await llm.services.conversations.get(shops.id, Viewer(application_id=people.shop))
    assert (own.application_id, own.external_user, own.user_id) == (people.shop, "customer-7", None)


async def test_library_conversations_are_invisible_to_users_and_applications(llm: LLMManager) -> None:
    await _demo(llm)
    people = await _people(llm)
    ownerless = await _start(llm, ConversationOwner())
    await _say(llm, ownerless.id, SYSTEM, "a script's question")

    for viewer in (Viewer(user_id=people.alice), Viewer(application_id=people.shop), Viewer()):
        with pytest.raises(NotFoundError):
            await llm.services.conversations.get(ownerless.id, viewer)
        with pytest.raises(NotFoundError):
            await llm.services.replies.send(ownerless.id, viewer, "mine now")
        assert (await llm.services.conversations.page(viewer)).items == []

    assert (await llm.services.conversations.get(ownerless.id, SYSTEM)).message_count == 2
    readers = Viewer(user_id=people.alice, reads_all=True)
    assert (await llm.services.conversations.get(ownerless.id, readers)).id == ownerless.id


def test_a_conversation_cannot_belong_to_a_user_and_an_application() -> None:
    with pytest.raises(ValueError, match="not both"):
        ConversationOwner(user_id=1, application_id=2)


# -- listing and search ----------------------------------------------------------------------


async def test_search_finds_titles_and_message_text_case_insensitively(llm: LLMManager) -> None:
    await _demo(llm)
    titled = await _start(llm, ConversationOwner(), title="Quarterly Report")
    talked = await _start(llm, ConversationOwner(), title="untitled chat")
    await _say(llm, talked.id, SYSTEM, "The secret ingredient is Pineapple.")
    await _start(llm, ConversationOwner(), title="something else")

    async def found(words: str) -> set[str]:
        page = await llm.services.conversations.page(SYSTEM, ConversationFilter(search=words))
        return {item.id for item in page.items}

    assert await found("quarterly") == {titled.id}
    assert await found("REPORT") == {titled.id}
    assert await found("pineapple") == {talked.id}
    assert await found("SECRET INGREDIENT") == {talked.id}
    assert await found("demo model") == {talked.id}, "replies are searched too"
    assert await found("nothing like this") == set()
    assert len(await found("   ")) == 3, "a blank search is no filter"


async def test_search_treats_like_wildcards_literally(llm: LLMManager) -> None:
    await _demo(llm)
    percent = await _start(llm, ConversationOwner(), title="100% done")
    await _start(llm, ConversationOwner(), title="1000 things")
    underscore = await _start(llm, ConversationOwner(), title="snake_case names")
    await _start(llm, ConversationOwner(), title="snakexcase names")
    backslash = await _start(llm, ConversationOwner(), title=r"C:\temp")
    messages = await _start(llm, ConversationOwner(), title="plain")
    await _say(llm, messages.id, SYSTEM, "discount of 50% today")

    async def found(words: str) -> set[str]:
        page = await llm.services.conversations.page(SYSTEM, ConversationFilter(search=words))
        return {item.id for item in page.items}

    assert await found("100%") == {percent.id}
    assert await found("snake_case") == {underscore.id}
    assert await found("%") == {percent.id, messages.id}
    assert await found("_") == {underscore.id}
    assert await found("\\") == {backslash.id}
    assert await found("50% today") == {messages.id}


async def test_filters_narrow_the_list(llm: LLMManager) -> None:
    await _demo(llm)
    await _demo(llm, "other")
    people = await _people(llm)
    alices = await _start(llm, ConversationOwner(user_id=people.alice))
    bobs_other = await _start(llm, ConversationOwner(user_id=people.bob), configuration="other")
    shop_seven = await _start(llm, ConversationOwner(application_id=people.shop, external_user="c-7"))
    shop_eight = await _start(llm, ConversationOwner(application_id=people.shop, external_user="c-8"))
    blogs = await _start(llm, ConversationOwner(application_id=people.blog))

    async def listed(viewer: Viewer, **filters: Any) -> set[str]:
        page = await llm.services.conversations.page(viewer, ConversationFilter(**filters))
        return {item.id for item in page.items}

    assert await listed(SYSTEM, configuration="other") == {bobs_other.id}
    assert await listed(SYSTEM, user_id=people.alice) == {alices.id}
    assert await listed(SYSTEM, application_id=people.shop) == {shop_seven.id, shop_eight.id}
    assert await listed(SYSTEM, application_id=people.shop, external_user="c-8") == {shop_eight.id}
    assert await listed(Viewer(application_id=people.shop)) == {shop_seven.id, shop_eight.id}
    assert await listed(Viewer(application_id=people.shop), external_user="c-7") == {shop_seven.id}
    # A filter never widens what the viewer may see.
    assert await listed(Viewer(application_id=people.shop), application_id=people.blog) == set()
    assert await listed(Viewer(user_id=people.alice), user_id=people.bob) == set()
    assert blogs.id in await listed(SYSTEM)


async def test_keyset_pages_cover_every_conversation_once_most_recent_first(llm: LLMManager) -> None:
    await _demo(llm)
    started = [await _start(llm, ConversationOwner(), title=f"chat {number}") for number in range(7)]
    await _say(llm, started[2].id, SYSTEM, "bump")  # activity moves a conversation to the top

    seen: list[ConversationView] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await llm.services.conversations.page(SYSTEM, cursor=cursor, limit=3)
        pages += 1
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            break

    assert pages == 3
    assert [item.id for item in seen] == [started[2].id] + [
        item.id for item in reversed(started) if item != started[2]
    ]
    assert len({item.id for item in seen}) == 7
    keys = [(item.updated_at, item.id) for item in seen]
    assert keys == sorted(keys, reverse=True)


async def test_a_forged_cursor_or_limit_is_refused(llm: LLMManager) -> None:
    with pytest.raises(InvalidInputError):
        await llm.services.conversations.page(SYSTEM, cursor="not-a-cursor")
    with pytest.raises(InvalidInputError):
        await llm.services.conversations.page(SYSTEM, limit=0)
    with pytest.raises(InvalidInputError):
        await llm.services.conversations.page(SYSTEM, limit=10_000)


async def test_latest_is_the_last_active_conversation(llm: LLMManager) -> None:
    await _demo(llm)
    await _demo(llm, "other")
    assert await llm.services.conversations.latest(SYSTEM) is None
    first = await _start(llm, ConversationOwner())
    second = await _start(llm, ConversationOwner(), configuration="other")
    await _say(llm, first.id, SYSTEM, "still here")

    latest = await llm.services.conversations.latest(SYSTEM)
    assert latest is not None
    assert latest.id == first.id
    on_other = await llm.services.conversations.latest(SYSTEM, configuration="other")
    assert on_other is not None
    assert on_other.id == second.id


# -- titles, changes and messages ------------------------------------------------------------


async def test_the_first_message_titles_an_untitled_conversation(llm: LLMManager) -> None:
    await _demo(llm)
    short = await _start(llm, ConversationOwner())
    long = await _start(llm, ConversationOwner())
    titled = await _start(llm, ConversationOwner(), title="  Kept   as given ")

    await _say(llm, short.id, SYSTEM, "What is   the capital\nof France?")
    await _say(llm, short.id, SYSTEM, "And of Spain?")
    words = "Please summarise the following meeting notes for the quarterly planning review tomorrow"
    await _say(llm, long.id, SYSTEM, words)
    await _say(llm, titled.id, SYSTEM, "hello")

    assert (await llm.services.conversations.get(short.id, SYSTEM)).title == "What is the capital of France?"
    long_title = (await llm.services.conversations.get(long.id, SYSTEM)).title
    assert long_title.endswith("…")
    assert len(long_title) <= 61
    assert words.startswith(long_title.removesuffix("…"))
    assert long_title.removesuffix("…") in {words[:end] for end in range(len(words)) if words[end] == " "}
    assert (await llm.services.conversations.get(titled.id, SYSTEM)).title == "Kept as given"


async def test_rename_and_update_validate_their_input(llm: LLMManager) -> None:
    await _demo(llm)
    conversation = await _start(llm, ConversationOwner())
    conversations = llm.services.conversations

    assert (await conversations.rename(conversation.id, SYSTEM, "New name")).title == "New name"
    with pytest.raises(InvalidInputError):
        await conversations.rename(conversation.id, SYSTEM, "   ")
    with pytest.raises(InvalidInputError):
        await conversations.rename(conversation.id, SYSTEM, "x" * 201)
    changed = await conversations.update(
        conversation.id, SYSTEM, ConversationChanges(system_prompt="Be brief.", context_strategy="summarize")
    )
    assert (changed.system_prompt, changed.context_strategy, changed.title) == (
        "Be brief.",
        "summarize",
        "New name",
    )
    removed = await conversations.update(conversation.id, SYSTEM, ConversationChanges(system_prompt=""))
    assert removed.system_prompt is None
    with pytest.raises(InvalidInputError):
        await conversations.update(conversation.id, SYSTEM, ConversationChanges(context_strategy="forget"))


async def test_creating_with_an_unknown_configuration_or_strategy_is_refused(llm: LLMManager) -> None:
    await _demo(llm)
    with pytest.raises(NotFoundError):
        await _start(llm, ConversationOwner(), configuration="nope")
    with pytest.raises(InvalidInputError):
        await llm.services.conversations.create(ConversationOwner(), "demo", context_strategy="forget")
    assert (await llm.services.conversations.page(SYSTEM)).items == []


async def test_messages_are_paged_with_after(llm: LLMManager) -> None:
    await _demo(llm)
    conversation = await _start(llm, ConversationOwner())
    for number in range(4):
        await _say(llm, conversation.id, SYSTEM, f"message {number}")

    seqs: list[int] = []
    after = 0
    while True:
        page = await llm.services.conversations.messages(conversation.id, SYSTEM, after=after, limit=3)
        seqs += [message.seq for message in page.items]
        if page.next_cursor is None:
            break
        after = int(page.next_cursor)

    assert seqs == list(range(1, 9))
    first = (await llm.services.conversations.messages(conversation.id, SYSTEM, limit=2)).items
    assert [(m.role, m.seq) for m in first] == [("user", 1), ("assistant", 2)]
    assert first[0].content == "message 0"
    last = await llm.services.conversations.last_messages(conversation.id, SYSTEM, limit=3)
    assert [message.seq for message in last] == [6, 7, 8]


async def test_pin_marks_a_message_of_this_conversation_only(llm: LLMManager) -> None:
    await _demo(llm)
    first = await _start(llm, ConversationOwner())
    second = await _start(llm, ConversationOwner())
    await _say(llm, first.id, SYSTEM, "remember this")
    await _say(llm, second.id, SYSTEM, "other")
    [message, _] = (await llm.services.conversations.messages(first.id, SYSTEM)).items
    [foreign, _] = (await llm.services.conversations.messages(second.id, SYSTEM)).items

    assert (await llm.services.conversations.pin(first.id, SYSTEM, message.id)).pinned
    with pytest.raises(NotFoundError):
        await llm.services.conversations.pin(first.id, SYSTEM, foreign.id)
    assert not (await llm.services.conversations.pin(first.id, SYSTEM, message.id, pinned=False)).pinned


async def test_totals_add_up_every_reply(llm: LLMManager) -> None:
    await _demo(llm)
    conversation = await _start(llm, ConversationOwner())
    for content in ("one", "two words", "three little words"):
        await _say(llm, conversation.id, SYSTEM, content)

    view = await llm.services.conversations.get(conversation.id, SYSTEM)
    replies = [
        m
        for m in (await llm.services.conversations.messages(conversation.id, SYSTEM)).items
        if m.role == "assistant"
    ]
    assert view.message_count == 6
    assert view.prompt_tokens == sum(reply.prompt_tokens for reply in replies)
    assert view.completion_tokens == sum(reply.completion_tokens for reply in replies)
    assert view.total_tokens == view.prompt_tokens + view.completion_tokens
    assert view.cost == sum((reply.cost or Decimal(0)) for reply in replies)
    assert view.cost > 0
    assert view.unpriced_replies == 0
    usage = await llm.usage.list_page()
    assert sorted(row.id for row in usage.rows) == sorted(reply.usage_log_id or "" for reply in replies)
    assert {row.conversation_id for row in usage.rows} == {conversation.id}
    assert {row.operation for row in usage.rows} == {"conversation"}


async def test_concurrent_sends_get_distinct_seqs(llm: LLMManager) -> None:
    await _demo(llm)
    conversation = await _start(llm, ConversationOwner())

    replies = await asyncio.gather(
        *(llm.services.replies.send(conversation.id, SYSTEM, f"at once {n}") for n in range(3))
    )

    pairs = sorted((reply.message.seq, reply.reply.seq) for reply in replies)
    assert pairs == [(1, 2), (3, 4), (5, 6)]
    stored = (await llm.services.conversations.messages(conversation.id, SYSTEM)).items
    assert [message.seq for message in stored] == [1, 2, 3, 4, 5, 6]
    for reply in replies:
        assert reply.message.content in reply.reply.content  # each reply follows its own message
    view = await llm.services.conversations.get(conversation.id, SYSTEM)
    assert view.message_count == 6
    assert view.completion_tokens == sum(reply.reply.completion_tokens for reply in replies)


async def test_deleting_removes_the_messages(llm: LLMManager) -> None:
    await _demo(llm)
    conversation = await _start(llm, ConversationOwner())
    await _say(llm, conversation.id, SYSTEM, "soon gone")

    await llm.services.conversations.delete(conversation.id, SYSTEM)

    with pytest.raises(NotFoundError):
        await llm.services.conversations.messages(conversation.id, SYSTEM)
    assert (await llm.services.conversations.page(SYSTEM, ConversationFilter(search="soon gone"))).items == []


# -- export ----------------------------------------------------------------------------------


async def test_export_json_holds_the_conversation_and_every_message(llm: LLMManager) -> None:
    await _demo(llm)
    conversation = await llm.services.conversations.create(
        ConversationOwner(), "demo", title="Trip", system_prompt="You plan trips."
    )
    await _say(llm, conversation.id, SYSTEM, "Plan Rome")
    await _say(llm, conversation.id, SYSTEM, "Now Paris")

    exported = await llm.services.conversations.export_json(conversation.id, SYSTEM)

    header = exported["conversation"]
    assert (header["id"], header["title"], header["system_prompt"], header["configuration"]) == (
        conversation.id,
        "Trip",
        "You plan trips.",
        "demo",
    )
    assert header["message_count"] == 4
    assert Decimal(header["cost"]) > 0
    messages = exported["messages"]
    assert [(m["seq"], m["role"], m["status"]) for m in messages] == [
        (1, "user", "complete"),
        (2, "assistant", "complete"),
        (3, "user", "complete"),
        (4, "assistant", "complete"),
    ]
    assert messages[0]["content"] == "Plan Rome"
    assert "Now Paris" in messages[3]["content"]
    assert messages[3]["usage_log_id"]
    assert messages[3]["context"]["sent_messages"] == 4  # system, the first exchange, the new message
    assert isinstance(messages[3]["created_at"], str)


async def test_export_markdown_reads_as_a_transcript(llm: LLMManager) -> None:
    await _demo(llm)
    conversation = await llm.services.conversations.create(
        ConversationOwner(), "demo", title="Trip", system_prompt="You plan trips."
    )
    await _say(llm, conversation.id, SYSTEM, "Plan Rome")
    [question, answer] = (await llm.services.conversations.messages(conversation.id, SYSTEM)).items
    await llm.services.conversations.pin(conversation.id, SYSTEM, question.id)

    markdown = await llm.services.conversations.export_markdown(conversation.id, SYSTEM)

    assert markdown.startswith("# Trip\n")
    assert "- Configuration: `demo`" in markdown
    assert "## System\n\nYou plan trips." in markdown
    assert "## User 📌\n\nPlan Rome" in markdown
    assert f"## Assistant\n\n{answer.content}" in markdown
    assert markdown.index("## System") < markdown.index("## User") < markdown.index("## Assistant")
    assert markdown.endswith("\n")
