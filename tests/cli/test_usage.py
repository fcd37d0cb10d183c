"""`llm-manager usage`: the recent calls, as a table and as JSON, with filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import FAST, Cli, json_output


def test_usage_without_calls_says_so(cli: Cli, data_dir: Path) -> None:
    result = cli("usage")

    assert "No calls yet" in result.stderr
    assert json_output(cli("usage", "--json")) == []


def test_usage_table_shows_the_call(cli: Cli, data_dir: Path) -> None:
    reply = json_output(cli("chat", FAST, "hello", "--json"))

    result = cli("usage")

    assert FAST in result.stdout
    assert "demo-chat" in result.stdout
    assert reply["log_id"] in result.stdout


def test_usage_in_80_columns_keeps_one_line_a_call_and_says_where_the_rest_is(
    cli: Cli, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = json_output(cli("chat", FAST, "hello", "--json"))
    monkeypatch.setenv("COLUMNS", "80")

    lines = cli("usage").stdout.splitlines()

    assert max(len(line) for line in lines) <= 80
    [call] = [line for line in lines if FAST in line]
    assert "ok" in call
    assert reply["log_id"] not in "\n".join(lines)
    assert "--json" in lines[-1]


def test_usage_json_has_tokens_cost_latency_ttft_and_status(cli: Cli, data_dir: Path) -> None:
    cli("chat", FAST, "hello", "-p", "max_tokens=4")

    [row] = json_output(cli("usage", "--json"))

    assert row["configuration"] == FAST
    assert (row["provider"], row["model"]) == ("demo", "demo-chat")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (1, 4)
    assert row["tokens_estimated"] is False
    assert row["cost"] == "0"
    assert isinstance(row["latency_ms"], int)
    assert row["latency_ms"] >= 0
    assert isinstance(row["ttft_ms"], int)
    assert 0 <= row["ttft_ms"] <= row["latency_ms"]
    assert row["status"] == "ok"


def test_usage_newest_first_with_limit_and_configuration_filter(cli: Cli, data_dir: Path) -> None:
    cli("chat", FAST, "first", "--json")
    cli("config", "add", "other", "--provider", "demo", "--model", "demo-chat", "--option", "delay_ms=0")
    last = json_output(cli("chat", "other", "second", "--json"))

    [newest] = json_output(cli("usage", "--json", "--limit", "1"))
    only_fast = json_output(cli("usage", "--json", "--config", FAST))
    only_errors = json_output(cli("usage", "--json", "--status", "error"))

    assert newest["id"] == last["log_id"]
    assert [row["configuration"] for row in only_fast] == [FAST]
    assert only_errors == []


def test_usage_limit_out_of_range_is_a_usage_error(cli: Cli, data_dir: Path) -> None:
    cli("usage", "--limit", "0", exit_code=2)
