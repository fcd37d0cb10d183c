"""`llm-manager chat`: streaming, --no-stream, --json, parameter overrides and their errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_manager.providers.demo import demo_tokens
from tests.cli.conftest import FAST, Cli, json_output


def _usage_rows(cli: Cli) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json_output(cli("usage", "--json"))
    return rows


def test_chat_streams_the_reply_to_stdout_and_a_summary_to_stderr(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", "demo", "hello")

    assert "You said: “hello”" in result.stdout
    [row] = _usage_rows(cli)
    assert (row["configuration"], row["operation"], row["status"]) == ("demo", "conversation", "ok")
    assert row["id"] in result.stderr
    assert row["id"] not in result.stdout
    assert "tokens" in result.stderr


def test_chat_no_stream_prints_the_whole_reply(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", FAST, "hello", "--no-stream")

    assert "You said: “hello”" in result.stdout
    [row] = _usage_rows(cli)
    assert row["operation"] == "conversation"
    assert row["id"] in result.stderr


@pytest.mark.parametrize("flags", [("--json",), ("--json", "--no-stream")])
def test_chat_json_prints_one_object_with_text_usage_cost_and_log_id(
    cli: Cli, data_dir: Path, flags: tuple[str, ...]
) -> None:
    reply = json_output(cli("chat", FAST, "hello there", *flags))

    assert "You said: “hello there”" in reply["text"]
    usage = reply["usage"]
    assert usage["prompt_tokens"] == 2
    assert usage["completion_tokens"] == len(demo_tokens(reply["text"]))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["estimated"] is False
    assert reply["cost"] == "0"
    assert (reply["configuration"], reply["provider"], reply["model"]) == (FAST, "demo", "demo-chat")
    [row] = _usage_rows(cli)
    assert row["id"] == reply["log_id"]


def test_chat_reads_the_prompt_from_stdin_with_a_dash(cli: Cli, data_dir: Path) -> None:
    reply = json_output(cli("chat", FAST, "-", "--json", input="piped prompt\n"))

    assert "You said: “piped prompt”" in reply["text"]


def test_chat_system_prompt_is_sent(cli: Cli, data_dir: Path) -> None:
    reply = json_output(cli("chat", FAST, "hello", "--system", "answer very briefly", "--json"))

    assert reply["usage"]["prompt_tokens"] == 1 + 3


def test_streamed_chat_honours_max_tokens(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", FAST, "hello", "--param", "max_tokens=3")

    assert len(demo_tokens(result.stdout.strip())) == 3
    [row] = _usage_rows(cli)
    assert (row["completion_tokens"], row["finish_reason"]) == (3, "length")


def test_json_chat_honours_max_tokens(cli: Cli, data_dir: Path) -> None:
    reply = json_output(cli("chat", FAST, "hello", "-p", "max_tokens=3", "--json"))

    assert len(demo_tokens(reply["text"])) == 3
    assert reply["usage"]["completion_tokens"] == 3
    assert reply["finish_reason"] == "length"


@pytest.mark.parametrize("flags", [(), ("--no-stream",), ("--json",)])
def test_out_of_range_parameter_is_refused_by_name_before_any_call(
    cli: Cli, data_dir: Path, flags: tuple[str, ...]
) -> None:
    result = cli("chat", FAST, "hello", "--param", "temperature=5", *flags, exit_code=1)

    assert "temperature" in result.stderr
    assert result.stdout.strip() == ""
    assert _usage_rows(cli) == []


def test_unknown_parameter_is_refused_by_name(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", FAST, "hello", "--param", "temprature=0.2", exit_code=1)

    assert "temprature" in result.stderr
    assert "unknown" in result.stderr


def test_parameter_without_equals_sign_is_a_usage_error(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", FAST, "hello", "--param", "temperature", exit_code=2)

    assert "key=value" in result.stderr


def test_unknown_configuration_is_an_error(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", "no-such-thing", "hello", exit_code=1)

    assert "no-such-thing" in result.stderr
    assert "not found" in result.stderr


def test_inactive_configuration_is_refused_without_calling_it(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", "ollama-qwen3", "hello", "--json", exit_code=1)

    assert "inactive" in result.stderr
    assert _usage_rows(cli) == []


def test_empty_prompt_is_an_error(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", FAST, "", exit_code=1)

    assert "prompt" in result.stderr
