"""`llm-manager conversations ...`: list, read, export, rename and delete stored conversations.

The CLI acts for whoever holds the database (`Viewer.system()`), so it sees every conversation:
the ones started here or through the library ("local"), by users in the admin UI and by
applications through the API. `chat -c` continues only a local one (`latest_local`): continuing
an application's end-user chat by accident would mix two people's histories.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from llm_manager.cli._runtime import consoles, fail, money, print_json, run
from llm_manager.errors import InvalidInputError, LLMManagerError
from llm_manager.manager import LLMManager
from llm_manager.services.conversations import (
    MAX_PAGE,
    ConversationFilter,
    ConversationView,
    MessageView,
    Viewer,
)

VIEWER = Viewer.system()
"""The CLI reads and changes every conversation: it runs for whoever holds the database."""

app = typer.Typer(
    help="Stored conversations: list, show, export, rename, delete. Start one with `llm-manager chat`.",
    no_args_is_help=True,
)

_STATUS_STYLE = {"complete": "", "interrupted": "yellow", "error": "red"}

IdArgument = Annotated[str, typer.Argument(help="The conversation's id (see `conversations list`).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class ExportFormat(StrEnum):
    markdown = "markdown"
    json = "json"


@app.command("list")
def list_conversations(
    search: Annotated[
        str | None,
        typer.Option("--search", "-s", help="Only those with these words in the title or a message."),
    ] = None,
    configuration: Annotated[str | None, typer.Option("--config", help="Only this configuration's.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MAX_PAGE, help="How many, most recently active first.")
    ] = 20,
    as_json: JsonOption = False,
) -> None:
    """Conversations, most recently active first, with their owner, size, tokens and cost.

    Owner is a user of the admin UI, an application (with its end user's id, if it gave one), or
    "local": this command line or the Python library.
    """
    filters = ConversationFilter(search=search, configuration=configuration)
    views, owners = run(lambda llm: _listing(llm, filters, limit))
    if as_json:
        print_json([conversation_json(view) for view in views])
        return
    if not views:
        consoles()[1].print('No conversations. Start one with [bold]llm-manager chat demo "hello"[/].')
        return
    table = Table(header_style="bold")
    for column, justify in (
        ("id", "left"),
        ("active (UTC)", "left"),
        ("title", "left"),
        ("configuration", "left"),
        ("owner", "left"),
        ("messages", "right"),
        ("tokens in+out", "right"),
        ("cost", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column in ("id", "active (UTC)"))  # type: ignore[arg-type]
    for view in views:
        table.add_row(
            view.id,
            view.updated_at.strftime("%m-%d %H:%M"),
            Text(view.title or "(untitled)"),
            view.configuration,
            Text(owners[view.id]),
            str(view.message_count),
            f"{view.prompt_tokens}+{view.completion_tokens}",
            _cost(view),
        )
    consoles()[0].print(table)


@app.command("show")
def show(conversation_id: IdArgument, as_json: JsonOption = False) -> None:
    """A conversation and every message: role, status, tokens and cost."""
    view, messages, owner = run(lambda llm: _everything(llm, conversation_id))
    if as_json:
        print_json({"conversation": conversation_json(view), "messages": [asdict(m) for m in messages]})
        return
    out = consoles()[0]
    out.print(Text(view.title or "(untitled)", style="bold"))
    out.print(
        Text(
            f"{view.id} · {view.configuration} · {owner} · {view.message_count} messages · "
            f"{view.prompt_tokens}+{view.completion_tokens} tokens · {_cost(view)} · "
            f"started {view.created_at:%Y-%m-%d %H:%M} UTC",
            style="dim",
        )
    )
    if view.system_prompt:
        out.print(Rule(Text("system", style="bold"), align="left"), Text(view.system_prompt))
    if view.summary:
        out.print(
            Rule(Text(f"summary of messages up to #{view.summary_through}", style="bold"), align="left"),
            Text(view.summary),
        )
    for message in messages:
        out.print(_message(message))


@app.command("export")
def export(
    conversation_id: IdArgument,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="Markdown to read, JSON to process.")
    ] = (ExportFormat.markdown),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """Export a conversation with every message, as Markdown or JSON."""
    if fmt is ExportFormat.json:
        exported = run(lambda llm: llm.services.conversations.export_json(conversation_id, VIEWER))
        text = json.dumps(exported, indent=2, ensure_ascii=False) + "\n"
    else:
        text = run(lambda llm: llm.services.conversations.export_markdown(conversation_id, VIEWER))
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    consoles()[1].print(f"Wrote conversation {conversation_id} to {output}.", highlight=False)


@app.command("rename")
def rename(conversation_id: IdArgument, title: Annotated[str, typer.Argument(help="The new title.")]) -> None:
    """Give a conversation a title (it is named after its first message until then)."""
    view = run(lambda llm: llm.services.conversations.rename(conversation_id, VIEWER, title))
    consoles()[0].print(Text(f"Renamed conversation {view.id} to “{view.title}”."))


@app.command("delete")
def delete(
    conversation_id: IdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a conversation and its messages. The usage rows of its calls stay (they are the bill)."""
    if not yes:
        view = run(lambda llm: llm.services.conversations.get(conversation_id, VIEWER))
        typer.confirm(
            f"Delete conversation “{view.title or '(untitled)'}” ({view.message_count} messages)?", abort=True
        )
    run(lambda llm: llm.services.conversations.delete(conversation_id, VIEWER))
    consoles()[0].print(f"Deleted conversation {conversation_id}.", highlight=False)


async def find_conversation(
    llm: LLMManager,
    configuration: str,
    *,
    conversation_id: str | None,
    continue_latest: bool,
    system: str | None,
) -> ConversationView | None:
    """The conversation `chat` continues, or None for a new one.

    Checks the configuration first (unknown or inactive fails before anything is stored), and that
    a continued conversation is on it: the command line names both, and they must agree.
    """
    slug = (await llm.configurations.resolve_chain(configuration, application_id=None))[0].slug
    if conversation_id is not None:
        view = await llm.services.conversations.get(conversation_id, VIEWER)
        if view.configuration != slug:
            raise InvalidInputError(
                f"conversation {view.id} uses configuration {view.configuration!r}, not {slug!r}",
                field="configuration",
            )
    elif continue_latest:
        found = await latest_local(llm, slug)
        if found is None:
            consoles()[1].print(
                f"No earlier conversation on {slug} from the command line: starting a new one.",
                highlight=False,
            )
            return None
        view = found
    else:
        return None
    if system is not None:
        raise InvalidInputError(
            f"--system sets the system prompt of a new conversation; conversation {view.id} has its own",
            field="system",
        )
    return view


async def latest_local(llm: LLMManager, configuration: str) -> ConversationView | None:
    """The most recently active conversation on `configuration` that this CLI or the library started.

    Pages past users' and applications' conversations: the service has no filter for ownerless ones.
    """
    conversations = llm.services.conversations
    filters = ConversationFilter(configuration=configuration)
    cursor: str | None = None
    while True:
        page = await conversations.page(VIEWER, filters, cursor=cursor, limit=MAX_PAGE)
        for view in page.items:
            if view.user_id is None and view.application_id is None:
                return view
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor


async def forget_if_empty(llm: LLMManager, conversation_id: str) -> bool:
    """Delete a conversation just started whose first message was refused (a budget, a rate limit):
    a refused message stores nothing, and an empty conversation would only clutter the list."""
    conversations = llm.services.conversations
    try:
        if (await conversations.get(conversation_id, VIEWER)).message_count == 0:
            await conversations.delete(conversation_id, VIEWER)
            return True
    except LLMManagerError:
        pass  # deleted meanwhile: nothing to forget
    return False


def conversation_json(view: ConversationView) -> dict[str, Any]:
    return {**asdict(view), "total_tokens": view.total_tokens}


async def _listing(
    llm: LLMManager, filters: ConversationFilter, limit: int
) -> tuple[list[ConversationView], dict[str, str]]:
    page = await llm.services.conversations.page(VIEWER, filters, limit=limit)
    names = await _owner_names(llm, page.items)
    return page.items, {view.id: _owner(view, names) for view in page.items}


async def _everything(
    llm: LLMManager, conversation_id: str
) -> tuple[ConversationView, list[MessageView], str]:
    """The conversation and all its messages, read page by page (a long chat is never one query)."""
    conversations = llm.services.conversations
    view = await conversations.get(conversation_id, VIEWER)
    messages: list[MessageView] = []
    after = 0
    while True:
        page = await conversations.messages(conversation_id, VIEWER, after=after, limit=MAX_PAGE)
        messages += page.items
        if page.next_cursor is None:
            break
        after = int(page.next_cursor)
    return view, messages, _owner(view, await _owner_names(llm, [view]))


async def _owner_names(llm: LLMManager, views: list[ConversationView]) -> dict[tuple[str, int], str]:
    """Emails of users and names of applications, so owners read as people and apps, not ids."""
    names: dict[tuple[str, int], str] = {}
    if any(view.user_id is not None for view in views):
        names.update({("user", user.id): user.email for user in await llm.services.accounts.list_users()})
    if any(view.application_id is not None for view in views):
        names.update({("app", item.id): item.name for item in await llm.applications.list_all()})
    return names


def _owner(view: ConversationView, names: dict[tuple[str, int], str]) -> str:
    if view.user_id is not None:
        return f"user {names.get(('user', view.user_id), f'#{view.user_id}')}"
    if view.application_id is not None:
        owner = f"app {names.get(('app', view.application_id), f'#{view.application_id}')}"
        return f"{owner} ({view.external_user})" if view.external_user else owner
    return "local"


def _message(message: MessageView) -> Group:
    title = Text(f"#{message.seq} {message.role}", style="bold")
    if message.status != "complete":
        title.append(f" · {message.status}", style=_STATUS_STYLE.get(message.status, ""))
    if message.pinned:
        title.append(" · pinned")
    parts: list[Any] = [Rule(title, align="left"), Text(message.content or "(no text)")]
    if message.tool_calls:
        calls = ", ".join(f"{call.get('name')}({call.get('arguments')})" for call in message.tool_calls)
        parts.append(Text(f"tool calls: {calls}", style="cyan"))
    if message.error_message:
        parts.append(Text(f"error: {message.error_message}", style="red"))
    if message.role == "assistant":
        details = [
            f"{message.prompt_tokens}+{message.completion_tokens} tokens",
            money(message.cost),
            *([message.model] if message.model else []),
            *([f"{message.latency_ms} ms"] if message.latency_ms is not None else []),
            *([f"log {message.usage_log_id}"] if message.usage_log_id else []),
        ]
    else:
        details = [f"{message.tokens} tokens"]
    parts.append(Text(" · ".join(details), style="dim"))
    return Group(*parts)


def _cost(view: ConversationView) -> str:
    unpriced = f" (+{view.unpriced_replies} unpriced)" if view.unpriced_replies else ""
    return money(view.cost) + unpriced
