"""`llm-manager apps ...` and configurations scoped to an application with `config add --app`."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, json_output


def test_create_and_list_applications(cli: Cli, data_dir: Path) -> None:
    created = cli("apps", "create", "support-bot", "--description", "Answers tickets")
    cli("apps", "create", "analytics")

    applications = json_output(cli("apps", "list", "--json"))
    table = cli("apps", "list").stdout

    assert "support-bot" in created.stdout
    assert [(app["name"], app["description"], app["is_active"]) for app in applications] == [
        ("analytics", "", True),
        ("support-bot", "Answers tickets", True),
    ]
    assert "support-bot" in table
    assert "Answers tickets" in table


def test_create_refuses_a_duplicate_and_a_bad_name(cli: Cli, data_dir: Path) -> None:
    cli("apps", "create", "bot")

    assert "already exists" in cli("apps", "create", "bot", exit_code=1).stderr
    assert "name" in cli("apps", "create", "bad/name", exit_code=1).stderr
    assert [app["name"] for app in json_output(cli("apps", "list", "--json"))] == ["bot"]


def test_config_add_scoped_to_an_application(cli: Cli, data_dir: Path) -> None:
    cli("apps", "create", "support-bot")

    cli("config", "add", "support", "--provider", "demo", "--model", "demo-chat", "--app", "support-bot")

    view = json_output(cli("config", "show", "support", "--json"))
    assert view["application"] == "support-bot"
    assert json_output(cli("config", "show", "demo", "--json"))["application"] is None
    assert "support-bot" in cli("config", "list").stdout


def test_config_add_refuses_an_unknown_application(cli: Cli, data_dir: Path) -> None:
    result = cli(
        "config",
        "add",
        "support",
        "--provider",
        "demo",
        "--model",
        "demo-chat",
        "--app",
        "ghost",
        exit_code=1,
    )

    assert "ghost" in result.stderr
    cli("config", "show", "support", exit_code=1)
