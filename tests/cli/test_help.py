"""Every command and group explains itself with --help."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli

GROUPS = {
    (): (
        "init",
        "chat",
        "models",
        "usage",
        "serve",
        "config",
        "keys",
        "metrics",
        "apps",
        "tokens",
        "budgets",
        "users",
        "conversations",
        "templates",
    ),
    ("config",): ("add", "list", "show", "test", "remove"),
    ("keys",): ("status", "rotate", "generate"),
    ("metrics",): ("list", "record"),
    ("conversations",): ("list", "show", "export", "rename", "delete"),
    ("templates",): ("list", "show", "add", "render", "label", "stats", "delete"),
    ("apps",): ("create", "list", "update"),
    ("tokens",): ("create", "list", "revoke"),
    ("budgets",): ("set", "list", "delete", "explain", "events"),
}
COMMANDS = [
    (*group, command)
    for group, commands in GROUPS.items()
    for command in commands
    if (*group, command) not in GROUPS
]


@pytest.mark.parametrize("group", list(GROUPS), ids=lambda group: " ".join(group) or "root")
def test_group_help_lists_its_commands(cli: Cli, group: tuple[str, ...]) -> None:
    result = cli(*group, "--help")

    for command in GROUPS[group]:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_help(cli: Cli, command: tuple[str, ...]) -> None:
    result = cli(*command, "--help")

    assert "Usage" in result.stdout
