"""`llm-manager metrics ...`: record a metric against a call or an application, then list it."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import FAST, Cli, json_output


def test_record_against_a_call_then_list_it(cli: Cli, data_dir: Path) -> None:
    log_id = json_output(cli("chat", FAST, "hello", "--json"))["log_id"]

    recorded = cli("metrics", "record", "helpfulness", "0.75", "--log-id", log_id)

    [metric] = json_output(cli("metrics", "list", "--json"))
    assert metric["id"] in recorded.stdout
    assert (metric["name"], metric["value"], metric["usage_log_id"]) == ("helpfulness", 0.75, log_id)
    assert metric["application_id"] is None
    table = cli("metrics", "list").stdout
    assert "helpfulness" in table
    assert "0.75" in table


def test_record_against_an_application(cli: Cli, data_dir: Path) -> None:
    cli("apps", "create", "support-bot")
    [application] = json_output(cli("apps", "list", "--json"))

    cli("metrics", "record", "tickets_closed", "12", "--app", "support-bot")

    [metric] = json_output(cli("metrics", "list", "--json"))
    assert (metric["name"], metric["value"], metric["application_id"]) == (
        "tickets_closed",
        12,
        application["id"],
    )


def test_list_filters_by_name_and_log_id(cli: Cli, data_dir: Path) -> None:
    first = json_output(cli("chat", FAST, "one", "--json"))["log_id"]
    second = json_output(cli("chat", FAST, "two", "--json"))["log_id"]
    cli("metrics", "record", "score", "1", "--log-id", first)
    cli("metrics", "record", "score", "2", "--log-id", second)
    cli("metrics", "record", "other", "3", "--log-id", second)

    by_name = json_output(cli("metrics", "list", "--name", "score", "--json"))
    by_log = json_output(cli("metrics", "list", "--log-id", second, "--json"))
    limited = json_output(cli("metrics", "list", "--limit", "1", "--json"))

    assert sorted(metric["value"] for metric in by_name) == [1, 2]
    assert sorted(metric["name"] for metric in by_log) == ["other", "score"]
    assert len(limited) == 1


def test_list_without_metrics_says_so(cli: Cli, data_dir: Path) -> None:
    assert "No metrics yet" in cli("metrics", "list").stderr
    assert json_output(cli("metrics", "list", "--json")) == []


def test_record_needs_a_call_or_an_application(cli: Cli, data_dir: Path) -> None:
    result = cli("metrics", "record", "orphan", "1", exit_code=1)

    assert "usage log or an application" in result.stderr


def test_record_refuses_an_unknown_call_and_an_unknown_application(cli: Cli, data_dir: Path) -> None:
    assert "nope" in cli("metrics", "record", "m", "1", "--log-id", "nope", exit_code=1).stderr
    assert "ghost-app" in cli("metrics", "record", "m", "1", "--app", "ghost-app", exit_code=1).stderr
    assert json_output(cli("metrics", "list", "--json")) == []


def test_record_refuses_a_bad_name_or_value(cli: Cli, data_dir: Path) -> None:
    cli("apps", "create", "bot")

    assert "name" in cli("metrics", "record", "bad name!", "1", "--app", "bot", exit_code=1).stderr
    assert "finite" in cli("metrics", "record", "m", "nan", "--app", "bot", exit_code=1).stderr
    cli("metrics", "record", "m", "not-a-number", "--app", "bot", exit_code=2)
