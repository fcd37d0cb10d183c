"""`llm-manager apps ...`, configurations scoped to an application, and `serve`'s process options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

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


def _applications(cli: Cli) -> dict[str, dict[str, Any]]:
    return {app["name"]: app for app in json_output(cli("apps", "list", "--json"))}


@pytest.mark.usefixtures("database")
def test_create_with_rate_limits_and_list_them(cli: Cli) -> None:
    created = cli("apps", "create", "portal", "--rpm", "60", "--tpm", "100000")
    cli("apps", "create", "batch")

    applications = _applications(cli)
    table = cli("apps", "list").stdout

    assert "60 requests/min" in created.stdout
    assert (applications["portal"]["rpm_limit"], applications["portal"]["tpm_limit"]) == (60, 100000)
    assert (applications["batch"]["rpm_limit"], applications["batch"]["tpm_limit"]) == (None, None)
    assert "rpm" in table
    assert "100,000" in table


@pytest.mark.usefixtures("database")
def test_update_changes_only_what_is_given(cli: Cli) -> None:
    cli("apps", "create", "portal", "--description", "Site", "--rpm", "60", "--tpm", "1000")

    cli("apps", "update", "portal", "--tpm", "5000")
    after_tpm = _applications(cli)["portal"]
    cli("apps", "update", "portal", "--no-rpm", "--inactive")
    after_lift = _applications(cli)["portal"]
    result = cli("apps", "update", "portal", "--active", "--description", "Support site", "--no-tpm")
    after_all = _applications(cli)["portal"]

    assert (after_tpm["rpm_limit"], after_tpm["tpm_limit"], after_tpm["is_active"]) == (60, 5000, True)
    assert (after_lift["rpm_limit"], after_lift["tpm_limit"], after_lift["is_active"]) == (None, 5000, False)
    assert after_lift["description"] == "Site"
    assert (after_all["rpm_limit"], after_all["tpm_limit"], after_all["is_active"]) == (None, None, True)
    assert after_all["description"] == "Support site"
    assert "active" in result.stdout


@pytest.mark.usefixtures("database")
def test_update_refusals_name_the_option(cli: Cli) -> None:
    cli("apps", "create", "portal", "--rpm", "60")

    assert "--no-rpm" in cli("apps", "update", "portal", "--rpm", "5", "--no-rpm", exit_code=2).stderr
    assert "--no-tpm" in cli("apps", "update", "portal", "--tpm", "5", "--no-tpm", exit_code=2).stderr
    assert "--rpm" in cli("apps", "update", "portal", "--rpm", "0", exit_code=2).stderr
    assert "--tpm" in cli("apps", "create", "batch", "--tpm", "0", exit_code=2).stderr
    assert "nothing to change" in cli("apps", "update", "portal", exit_code=2).stderr
    assert "ghost" in cli("apps", "update", "ghost", "--rpm", "5", exit_code=1).stderr
    assert _applications(cli)["portal"]["rpm_limit"] == 60
    assert "batch" not in _applications(cli)


def test_serve_help_offers_workers_and_a_graceful_timeout_but_no_reload(cli: Cli) -> None:
    result = cli("serve", "--help")

    assert "--workers" in result.stdout
    assert "--graceful-timeout" in result.stdout
    assert "--reload" not in result.stdout


def test_serve_passes_its_options_to_uvicorn(
    cli: Cli, empty_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))

    cli("serve")
    cli("serve", "--workers", "4", "--graceful-timeout", "5", "--port", "9000")

    [(default_args, defaults), (_, chosen)] = calls
    assert default_args == ("llm_manager.server.app:serve_app",)
    assert defaults["factory"] is True
    assert (defaults["workers"], defaults["timeout_graceful_shutdown"]) == (1, 30)
    assert (defaults["loop"], defaults["http"]) == ("uvloop", "httptools")
    assert (chosen["workers"], chosen["timeout_graceful_shutdown"], chosen["port"]) == (4, 5, 9000)
    assert "--workers" in cli("serve", "--workers", "0", exit_code=2).stderr
    assert len(calls) == 2
    monkeypatch.setenv("LLM_MANAGER_SHUTDOWN_GRACE", "4.5")
    cli("serve")
    assert calls[-1][1]["timeout_graceful_shutdown"] == 15  # the streams' grace, then 10 s to end them
