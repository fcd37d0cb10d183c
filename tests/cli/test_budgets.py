"""`llm-manager budgets ...`: set, list, explain, events and delete, on real calls' spend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_manager.manager import LLMManager
from llm_manager.services.calls import CallContext
from llm_manager.settings import load_settings
from tests.cli.conftest import FAST, Cli, json_output

UNPRICED = "mystery"


def _application_id(cli: Cli, name: str) -> int:
    [found] = [app["id"] for app in json_output(cli("apps", "list", "--json")) if app["name"] == name]
    return int(found)


def _call_as(application_id: int, *, max_tokens: int) -> None:
    """A real call attributed to an application, as the server makes them (the CLI's chat has no app)."""

    async def call() -> None:
        async with LLMManager.open(load_settings()) as llm:
            context = CallContext(application_id=application_id)
            await llm.chat(FAST, "hello", context=context, max_tokens=max_tokens)

    asyncio.run(call())


def _budgets(cli: Cli, *options: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json_output(cli("budgets", "list", *options, "--json"))
    return found


@pytest.mark.usefixtures("portal")
def test_set_then_list_shows_limits_spend_and_reset(cli: Cli) -> None:
    result = cli("budgets", "set", "--app", "portal", "--period", "day", "--usd", "5", "--tokens", "1000")

    assert "per UTC day" in result.stdout
    [budget] = _budgets(cli)
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert budget["application"] == "portal"
    assert (budget["configuration"], budget["token"], budget["period"]) == (None, None, "day")
    assert (budget["limit_usd"], budget["limit_tokens"], budget["hard"]) == ("5", 1000, True)
    assert (budget["spent_usd"], budget["spent_tokens"]) == ("0", 0)
    assert (budget["reserved_usd"], budget["reserved_tokens"]) == ("0", 0)
    assert (budget["remaining_usd"], budget["remaining_tokens"]) == ("5", 1000)
    assert datetime.fromisoformat(budget["resets_at"]) in (
        datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC),
        datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC) + timedelta(days=1),
    )
    table = cli("budgets", "list").stdout
    for expected in ("portal", "day", "$5.00", "1,000", "0%", "hard", "without $ are tokens"):
        assert expected in table


@pytest.mark.usefixtures("portal")
def test_set_again_replaces_the_limits_of_the_same_scope_and_period(cli: Cli) -> None:
    cli("budgets", "set", "--app", "portal", "--period", "month", "--usd", "5")
    cli("budgets", "set", "--app", "portal", "--period", "month", "--tokens", "2000", "--soft")
    cli("budgets", "set", "--app", "portal", "--period", "total", "--config", FAST, "--tokens", "10")

    budgets = _budgets(cli)

    assert [
        (b["period"], b["configuration"], b["limit_usd"], b["limit_tokens"], b["hard"]) for b in budgets
    ] == [
        ("month", None, None, 2000, False),
        ("total", FAST, None, 10, True),
    ]
    assert "soft" in cli("budgets", "list").stdout


@pytest.mark.usefixtures("portal")
def test_a_budget_on_a_token(cli: Cli) -> None:
    token = json_output(cli("tokens", "create", "--app", "portal", "--json"))

    cli("budgets", "set", "--app", "portal", "--token", token["prefix"], "--period", "day", "--tokens", "50")

    [budget] = _budgets(cli)
    assert budget["token"] == token["prefix"]
    explained = json_output(
        cli("budgets", "explain", "--app", "portal", "--token", token["prefix"], "--json")
    )
    assert [check["budget"]["id"] for check in explained["checks"]] == [budget["id"]]
    assert json_output(cli("budgets", "explain", "--app", "portal", "--json"))["checks"] == []


@pytest.mark.usefixtures("portal")
def test_explain_a_fresh_budget(cli: Cli) -> None:
    cli("budgets", "set", "--app", "portal", "--period", "day", "--tokens", "100000")

    explained = json_output(cli("budgets", "explain", "--app", "portal", "--config", FAST, "--json"))
    text = cli("budgets", "explain", "--app", "portal", "--config", FAST).stdout

    assert (explained["application"], explained["configuration"], explained["token"]) == (
        "portal",
        FAST,
        None,
    )
    assert explained["allowed"] is True
    assert explained["next_call_ceiling"]["tokens"] > 0
    assert explained["next_call_ceiling"]["usd"] == "0"
    [check] = explained["checks"]
    assert (check["blocks_next_call"], check["reason"]) == (False, None)
    assert check["budget"]["remaining_tokens"] == 100000
    assert "allowed" in text
    assert "100,000" in text


@pytest.mark.usefixtures("portal")
def test_explain_in_words_for_a_token_and_a_soft_budget_it_may_go_over(cli: Cli) -> None:
    prefix = json_output(cli("tokens", "create", "--app", "portal", "--json"))["prefix"]
    cli("budgets", "set", "--app", "portal", "--period", "day", "--tokens", "10", "--soft")
    cli("budgets", "set", "--app", "portal", "--token", prefix, "--period", "month", "--tokens", "1000000")

    text = cli("budgets", "explain", "--app", "portal", "--token", prefix, "--config", FAST).stdout
    without_configuration = cli("budgets", "explain", "--app", "portal", "--token", prefix).stdout

    assert f"token {prefix}" in text
    assert "may go over (soft)" in text
    assert "allowed" in text
    assert "never refused" in text
    assert "no --config given" in without_configuration
    assert "allowed" in without_configuration


@pytest.mark.usefixtures("portal")
def test_explain_without_budgets_says_nothing_applies(cli: Cli) -> None:
    text = cli("budgets", "explain", "--app", "portal").stdout

    assert "No budgets apply" in text
    assert json_output(cli("budgets", "explain", "--app", "portal", "--json"))["allowed"] is True


@pytest.mark.usefixtures("portal")
def test_a_usd_budget_on_an_unpriced_configuration_is_explained(cli: Cli) -> None:
    cli(
        "config",
        "add",
        UNPRICED,
        "--provider",
        "openai-compatible",
        "--model",
        "mystery-1",
        "--base-url",
        "http://127.0.0.1:9/v1",
    )
    cli("budgets", "set", "--app", "portal", "--config", UNPRICED, "--period", "month", "--usd", "2")

    explained = json_output(cli("budgets", "explain", "--app", "portal", "--config", UNPRICED, "--json"))
    text = cli("budgets", "explain", "--app", "portal", "--config", UNPRICED).stdout

    assert explained["allowed"] is False
    assert explained["next_call_ceiling"]["usd"] is None
    [check] = explained["checks"]
    assert check["blocks_next_call"] is True
    assert "no price" in check["reason"]
    assert "refused" in text
    assert "price override" in text
    assert "unpriced" in text


@pytest.mark.usefixtures("portal")
def test_spend_from_real_calls_shows_in_list_events_and_explain(cli: Cli) -> None:
    # Each call holds its ceiling (66 tokens: "hello" bounded at 21, plus max_tokens) and spends
    # 46 (the demo's reply to "hello" is 1+45 tokens): three fit in 158, crossing 50 and 80 %.
    cli("budgets", "set", "--app", "portal", "--period", "day", "--tokens", "158")
    cli("budgets", "set", "--app", "portal", "--period", "total", "--tokens", "1000000", "--soft")

    for _ in range(3):
        _call_as(_application_id(cli, "portal"), max_tokens=45)

    day, total = _budgets(cli, "--app", "portal")
    assert 0.8 * 158 <= day["spent_tokens"] <= 158
    assert day["reserved_tokens"] == 0
    assert day["remaining_tokens"] == 158 - day["spent_tokens"]
    assert total["spent_tokens"] == day["spent_tokens"]
    events = json_output(cli("budgets", "events", "--json"))
    assert sorted(event["threshold"] for event in events) == [50, 80]
    assert {event["budget_id"] for event in events} == {day["id"]}
    assert "80 %" in cli("budgets", "events", "--app", "portal").stdout
    table = cli("budgets", "list").stdout
    assert f"{day['spent_tokens']:,}" in table
    assert f"{int(day['spent_tokens'] * 100 / 158)}%" in table
    explained = json_output(cli("budgets", "explain", "--app", "portal", "--config", FAST, "--json"))
    assert explained["allowed"] is False
    blocking = [check for check in explained["checks"] if check["blocks_next_call"]]
    assert [check["budget"]["id"] for check in blocking] == [day["id"]]
    assert "tokens left" in blocking[0]["reason"]
    text = cli("budgets", "explain", "--app", "portal", "--config", FAST).stdout
    assert "refused" in text
    assert f"budget {day['id']}" in text


@pytest.mark.usefixtures("portal")
def test_list_and_events_filter_by_application(cli: Cli) -> None:
    cli("apps", "create", "batch")
    cli("budgets", "set", "--app", "portal", "--period", "day", "--tokens", "10")
    cli("budgets", "set", "--app", "batch", "--period", "day", "--tokens", "10")

    assert [budget["application"] for budget in _budgets(cli, "--app", "batch")] == ["batch"]
    assert len(_budgets(cli)) == 2
    assert json_output(cli("budgets", "events", "--app", "batch", "--json")) == []
    assert "No budget events" in cli("budgets", "events").stderr
    assert "ghost" in cli("budgets", "list", "--app", "ghost", exit_code=1).stderr


@pytest.mark.usefixtures("portal")
def test_delete(cli: Cli) -> None:
    cli("budgets", "set", "--app", "portal", "--period", "day", "--tokens", "10")
    [budget] = _budgets(cli)

    assert str(budget["id"]) in cli("budgets", "delete", str(budget["id"])).stdout

    assert _budgets(cli) == []
    assert "No budgets" in cli("budgets", "list").stderr
    assert "not found" in cli("budgets", "delete", str(budget["id"]), exit_code=1).stderr


@pytest.mark.usefixtures("portal")
def test_refusals_name_the_option(cli: Cli) -> None:
    def refused(*options: str, exit_code: int) -> str:
        return cli("budgets", "set", "--app", "portal", *options, exit_code=exit_code).stderr

    assert "--tokens" in refused("--period", "day", exit_code=2)
    assert "--period" in refused("--period", "week", "--usd", "1", exit_code=2)
    assert "--usd" in refused("--period", "day", "--usd", "0", exit_code=1)
    assert "--usd" in refused("--period", "day", "--usd", "lots", exit_code=2)
    assert "--tokens" in refused("--period", "day", "--tokens", "0", exit_code=1)
    assert "not both" in refused(
        "--period", "day", "--usd", "1", "--config", FAST, "--token", "llmm_12345678", exit_code=1
    )
    assert "llmm_12345678" in refused(
        "--period", "day", "--usd", "1", "--token", "llmm_12345678", exit_code=1
    )
    assert "nope" in refused("--period", "day", "--usd", "1", "--config", "nope", exit_code=1)
    assert (
        "ghost"
        in cli("budgets", "set", "--app", "ghost", "--period", "day", "--usd", "1", exit_code=1).stderr
    )
    assert "nope" in cli("budgets", "explain", "--app", "portal", "--config", "nope", exit_code=1).stderr
    assert _budgets(cli) == []
