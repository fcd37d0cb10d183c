"""`llm-manager conversations`: list (search, filters), show, export, rename and delete."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from llm_manager.manager import LLMManager
from llm_manager.services.conversations import ConversationOwner
from llm_manager.settings import load_settings
from tests.cli.conftest import FAST, Cli, json_output


def _chat(cli: Cli, configuration: str, prompt: str, *args: str) -> dict[str, Any]:
    reply: dict[str, Any] = json_output(cli("chat", configuration, prompt, "--json", *args))
    return reply


def _listed(cli: Cli, *args: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json_output(cli("conversations", "list", "--json", *args))
    return listed


def test_list_shows_conversations_newest_first_and_filters_them(cli: Cli, database: None) -> None:
    pasta = _chat(cli, FAST, "a recipe for pasta")["conversation_id"]
    _chat(cli, FAST, "more sauce please", "-c")
    weather = _chat(cli, "demo", "the weather today", "-p", "max_tokens=2")["conversation_id"]

    everything = _listed(cli)
    table = cli("conversations", "list").stdout

    assert [c["id"] for c in everything] == [weather, pasta]
    assert [c["message_count"] for c in everything] == [2, 4]
    assert (
        everything[1]["total_tokens"] == everything[1]["prompt_tokens"] + everything[1]["completion_tokens"]
    )
    assert "a recipe for pasta" in table
    assert "local" in table
    assert [c["id"] for c in _listed(cli, "--search", "SAUCE")] == [pasta]  # in a message, any case
    assert [c["id"] for c in _listed(cli, "--search", "weather")] == [weather]  # in the title
    assert [c["id"] for c in _listed(cli, "--config", FAST)] == [pasta]
    assert [c["id"] for c in _listed(cli, "--limit", "1")] == [weather]
    assert _listed(cli, "--search", "nothing like this") == []


def test_list_names_the_owners(cli: Cli, data_dir: Path) -> None:
    cli("apps", "create", "portal")
    cli("users", "create", "ada@example.com", "--password-stdin", input="correct horse battery\n")
    asyncio.run(_owned_conversations())

    table = cli("conversations", "list").stdout

    assert "app portal (customer-42)" in table
    assert "user ada@example.com" in table


async def _owned_conversations() -> None:
    async with LLMManager.open(load_settings()) as llm:
        app = await llm.applications.get("portal")
        user = await llm.services.accounts.user_by_email("ada@example.com")
        owners = (
            ConversationOwner(application_id=app.id, external_user="customer-42"),
            ConversationOwner(user_id=user.id),
        )
        for owner in owners:
            await llm.conversation(FAST, owner=owner, title="owned")


def test_an_empty_list_says_how_to_start(cli: Cli, data_dir: Path) -> None:
    result = cli("conversations", "list")

    assert "llm-manager chat" in result.stderr
    assert result.stdout == ""


def test_show_prints_every_message_with_role_status_tokens_and_cost(cli: Cli, database: None) -> None:
    first = _chat(cli, FAST, "hello", "--system", "You are terse.")
    second = _chat(cli, FAST, "again", "-c")
    conversation_id = first["conversation_id"]

    shown = json_output(cli("conversations", "show", conversation_id, "--json"))
    text = cli("conversations", "show", conversation_id).stdout

    assert shown["conversation"]["system_prompt"] == "You are terse."
    assert [(m["seq"], m["role"], m["status"]) for m in shown["messages"]] == [
        (1, "user", "complete"),
        (2, "assistant", "complete"),
        (3, "user", "complete"),
        (4, "assistant", "complete"),
    ]
    reply = shown["messages"][3]
    assert (reply["prompt_tokens"], reply["completion_tokens"], reply["cost"]) == (
        second["usage"]["prompt_tokens"],
        second["usage"]["completion_tokens"],
        "0",
    )
    assert reply["usage_log_id"] == second["log_id"]
    for fragment in ("#1 user", "#2 assistant", "You are terse.", "again", second["log_id"], "demo-chat"):
        assert fragment in text


def test_export_as_markdown_and_as_json(cli: Cli, database: None, tmp_path: Path) -> None:
    conversation_id = _chat(cli, FAST, "export me")["conversation_id"]
    target = tmp_path / "conversation.json"

    markdown = cli("conversations", "export", conversation_id).stdout
    written = cli("conversations", "export", conversation_id, "--format", "json", "--output", str(target))

    assert markdown.startswith("# export me\n")
    assert "## User\n\nexport me" in markdown
    assert "## Assistant\n\nThis is the LLM Manager demo model" in markdown
    exported = json.loads(target.read_text(encoding="utf-8"))
    assert exported["conversation"]["id"] == conversation_id
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    assert str(target) in written.stderr
    assert written.stdout == ""


def test_export_json_to_stdout(cli: Cli, data_dir: Path) -> None:
    conversation_id = _chat(cli, FAST, "export me")["conversation_id"]

    exported = json_output(cli("conversations", "export", conversation_id, "-f", "json"))

    assert exported["messages"][0]["content"] == "export me"


def test_export_to_an_unwritable_place_is_an_error(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    conversation_id = _chat(cli, FAST, "export me")["conversation_id"]

    result = cli(
        "conversations", "export", conversation_id, "-o", str(tmp_path / "missing" / "x.md"), exit_code=1
    )

    assert "cannot write" in result.stderr


def test_rename_changes_the_title(cli: Cli, data_dir: Path) -> None:
    conversation_id = _chat(cli, FAST, "first words")["conversation_id"]

    result = cli("conversations", "rename", conversation_id, "Pasta plans")

    assert "Pasta plans" in result.stdout
    assert _listed(cli)[0]["title"] == "Pasta plans"
    assert (
        "title must not be empty" in cli("conversations", "rename", conversation_id, " ", exit_code=1).stderr
    )


def test_delete_asks_first_unless_told_yes(cli: Cli, database: None) -> None:
    kept = _chat(cli, FAST, "keep me")["conversation_id"]
    doomed = _chat(cli, FAST, "delete me")["conversation_id"]

    refused = cli("conversations", "delete", kept, input="n\n", exit_code=1)
    cli("conversations", "delete", doomed, input="y\n")

    assert "delete me" not in refused.stdout
    assert [c["id"] for c in _listed(cli)] == [kept]
    cli("conversations", "delete", kept, "--yes")
    assert _listed(cli) == []
    # The calls stay billed.
    assert len(json_output(cli("usage", "--json"))) == 2


@pytest.mark.parametrize(
    "command",
    [
        ("show", "no-such-id"),
        ("export", "no-such-id"),
        ("rename", "no-such-id", "title"),
        ("delete", "no-such-id", "--yes"),
        ("delete", "no-such-id"),
    ],
)
def test_an_unknown_conversation_is_an_error(cli: Cli, data_dir: Path, command: tuple[str, ...]) -> None:
    result = cli("conversations", *command, exit_code=1)

    assert "conversation 'no-such-id' not found" in result.stderr
