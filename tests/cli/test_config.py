"""`llm-manager config ...`: add, list, show, test and remove, with keys that are never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llm_manager.cli.app import app
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as openai_transcripts
from tests.cli.conftest import FAST, Cli, json_output

API_KEY = "sk-test-0123456789abcdefwxyz"
HINT = "…wxyz"


def _show(cli: Cli, slug: str) -> dict[str, Any]:
    view: dict[str, Any] = json_output(cli("config", "show", slug, "--json"))
    return view


def _add_openai(cli: Cli, monkeypatch: pytest.MonkeyPatch, slug: str = "gpt", *extra: str) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", API_KEY)
    cli(
        "config",
        "add",
        slug,
        "--provider",
        "openai",
        "--model",
        "gpt-4o-mini",
        "--api-key-env",
        "TEST_OPENAI_KEY",
        *extra,
    )


def test_add_with_key_from_environment_stores_it_but_shows_only_a_hint(
    cli: Cli, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_openai(cli, monkeypatch)

    view = _show(cli, "gpt")
    assert (view["provider"], view["model"]) == ("openai", "gpt-4o-mini")
    assert view["has_api_key"] is True
    assert view["api_key_hint"] == HINT
    outputs = [
        cli("config", "show", "gpt"),
        cli("config", "show", "gpt", "--json"),
        cli("config", "list"),
        cli("config", "list", "--json"),
    ]
    for result in outputs:
        assert API_KEY not in result.stdout + result.stderr
        assert API_KEY[3:-4] not in result.stdout + result.stderr
    assert HINT in outputs[0].stdout
    assert HINT in outputs[2].stdout
    [listed] = [view for view in json_output(outputs[3]) if view["slug"] == "gpt"]
    assert listed["api_key_hint"] == HINT


def test_add_with_key_from_stdin(cli: Cli, data_dir: Path) -> None:
    result = cli(
        "config",
        "add",
        "router",
        "--provider",
        "openrouter",
        "--model",
        "openai/gpt-4o-mini",
        "--api-key-stdin",
        input=API_KEY + "\n",
    )

    assert API_KEY not in result.stdout + result.stderr
    view = _show(cli, "router")
    assert (view["has_api_key"], view["api_key_hint"]) == (True, HINT)


def test_the_stored_key_is_what_reaches_the_provider(
    cli: Cli, data_dir: Path, upstream: FakeUpstream
) -> None:
    upstream.add("POST", openai_transcripts.CHAT_PATH, openai_transcripts.text_completion())
    cli(
        "config",
        "add",
        "compatible",
        "--provider",
        "openai-compatible",
        "--model",
        "gpt-4o-mini",
        "--base-url",
        openai_transcripts.base_url(upstream.url),
        "--api-key-stdin",
        input=API_KEY + "\n",
    )

    reply = json_output(cli("chat", "compatible", "Are you a potato?", "--json"))

    assert reply["text"] == openai_transcripts.TEXT_COMPLETION_TEXT
    [request] = upstream.requests
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


def test_add_records_parameters_options_and_flags(cli: Cli, data_dir: Path) -> None:
    result = cli(
        "config",
        "add",
        "tuned",
        "--provider",
        "demo",
        "--model",
        "demo-chat",
        "--name",
        "Tuned demo",
        "--param",
        "temperature=0.2",
        "-p",
        "max_tokens=50",
        "--option",
        "delay_ms=0",
        "--fallback",
        FAST,
        "--input-price",
        "1.5",
        "--output-price",
        "3",
        "--default",
    )

    assert "tuned" in result.stdout
    view = _show(cli, "tuned")
    assert view["name"] == "Tuned demo"
    assert view["default_params"] == {"temperature": 0.2, "max_tokens": 50}
    assert view["options"] == {"delay_ms": 0}
    assert view["fallbacks"] == [FAST]
    assert view["price_override"] == {"input_per_mtok": "$1.50", "output_per_mtok": "$3.00"}
    assert (view["is_default"], view["is_active"], view["has_api_key"]) == (True, True, False)
    assert _show(cli, "demo")["is_default"] is False


def test_add_inactive(cli: Cli, data_dir: Path) -> None:
    cli("config", "add", "off", "--provider", "demo", "--model", "demo-chat", "--inactive")

    assert _show(cli, "off")["is_active"] is False


@pytest.mark.parametrize("slug", ["Bad Slug", "UPPER", "_leading-underscore", "x" * 65])
def test_add_refuses_a_slug_that_is_not_url_safe(cli: Cli, data_dir: Path, slug: str) -> None:
    result = cli("config", "add", slug, "--provider", "demo", "--model", "demo-chat", exit_code=1)

    assert "slug" in result.stderr
    assert slug not in [view["slug"] for view in json_output(cli("config", "list", "--json"))]


def test_add_refuses_an_unknown_provider_and_names_the_known_ones(cli: Cli, data_dir: Path) -> None:
    result = cli("config", "add", "x", "--provider", "nosuchai", "--model", "m", exit_code=1)

    assert "nosuchai" in result.stderr
    assert "openai" in result.stderr


def test_add_refuses_a_missing_environment_variable(
    cli: Cli, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_MISSING_KEY", raising=False)

    result = cli(
        "config",
        "add",
        "gpt",
        "--provider",
        "openai",
        "--model",
        "gpt-4o-mini",
        "--api-key-env",
        "TEST_MISSING_KEY",
        exit_code=1,
    )

    assert "TEST_MISSING_KEY" in result.stderr
    cli("config", "show", "gpt", exit_code=1)


def test_add_refuses_both_key_sources(cli: Cli, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", API_KEY)

    result = cli(
        "config",
        "add",
        "gpt",
        "--provider",
        "openai",
        "--model",
        "gpt-4o-mini",
        "--api-key-env",
        "TEST_OPENAI_KEY",
        "--api-key-stdin",
        input=API_KEY + "\n",
        exit_code=2,
    )

    assert "--api-key-stdin" in result.stderr


def test_add_refuses_a_taken_slug(cli: Cli, data_dir: Path) -> None:
    result = cli("config", "add", "demo", "--provider", "demo", "--model", "demo-chat", exit_code=1)

    assert "already taken" in result.stderr


def test_add_refuses_an_invalid_default_parameter_by_name(cli: Cli, data_dir: Path) -> None:
    result = cli(
        "config",
        "add",
        "hot",
        "--provider",
        "demo",
        "--model",
        "demo-chat",
        "-p",
        "temperature=5",
        exit_code=1,
    )

    assert "temperature" in result.stderr


def test_add_refuses_a_provider_without_url(cli: Cli, data_dir: Path) -> None:
    result = cli("config", "add", "local", "--provider", "openai-compatible", "--model", "m", exit_code=1)

    assert "base_url" in result.stderr


def test_add_refuses_a_half_price_override(cli: Cli, data_dir: Path) -> None:
    result = cli(
        "config",
        "add",
        "priced",
        "--provider",
        "demo",
        "--model",
        "demo-chat",
        "--input-price",
        "1",
        exit_code=1,
    )

    assert "output_price" in result.stderr


def test_add_refuses_an_unknown_fallback(cli: Cli, data_dir: Path) -> None:
    result = cli(
        "config", "add", "x", "--provider", "demo", "--model", "demo-chat", "--fallback", "ghost", exit_code=1
    )

    assert "ghost" in result.stderr


def test_list_json_has_every_configuration(cli: Cli, data_dir: Path) -> None:
    views = json_output(cli("config", "list", "--json"))

    assert [view["slug"] for view in views] == sorted(["demo", FAST, "ollama-deepseek-coder", "ollama-qwen3"])
    assert all("api_key" not in view for view in views)


def test_list_filters_by_provider(cli: Cli, data_dir: Path) -> None:
    views = json_output(cli("config", "list", "--provider", "ollama", "--json"))
    table = cli("config", "list", "--provider", "ollama").stdout

    assert {view["slug"] for view in views} == {"ollama-qwen3", "ollama-deepseek-coder"}
    assert "ollama-qwen3" in table
    assert "demo-chat" not in table


def test_show_prints_the_configuration(cli: Cli, data_dir: Path) -> None:
    result = cli("config", "show", "demo")

    for value in ("demo-chat", "Demo (offline)", "is_default"):
        assert value in result.stdout


def test_show_unknown_configuration_is_an_error(cli: Cli, data_dir: Path) -> None:
    result = cli("config", "show", "ghost", exit_code=1)

    assert "ghost" in result.stderr


def test_config_test_makes_a_call_recorded_as_a_test(cli: Cli, data_dir: Path) -> None:
    result = cli("config", "test", "demo")

    assert "OK" in result.stdout
    [row] = json_output(cli("usage", "--json"))
    assert (row["configuration"], row["operation"], row["status"]) == ("demo", "test", "ok")
    assert row["completion_tokens"] <= 5
    assert row["id"] in result.stderr


def test_config_test_of_an_unreachable_provider_fails_and_is_recorded(
    cli: Cli, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_MANAGER_MAX_RETRIES", "0")
    cli(
        "config",
        "add",
        "down",
        "--provider",
        "ollama",
        "--model",
        "qwen3:4b",
        "--base-url",
        FakeUpstream.closed_port_url(),
    )

    result = cli("config", "test", "down", exit_code=1)

    assert result.stdout.strip() == ""
    [row] = json_output(cli("usage", "--json"))
    assert (row["configuration"], row["operation"], row["status"]) == ("down", "test", "error")
    assert row["attempts"] == 1
    assert row["error_class"]


def test_remove_with_yes_deletes_but_keeps_usage_history(cli: Cli, data_dir: Path) -> None:
    reply = json_output(cli("chat", FAST, "hello", "--json"))

    cli("config", "remove", FAST, "--yes")

    cli("config", "show", FAST, exit_code=1)
    assert [row["id"] for row in json_output(cli("usage", "--json"))] == [reply["log_id"]]


def test_remove_asks_first_and_a_no_keeps_it(cli: Cli, data_dir: Path) -> None:
    cli("config", "remove", FAST, input="n\n", exit_code=1)
    assert _show(cli, FAST)["slug"] == FAST

    cli("config", "remove", FAST, input="y\n")
    cli("config", "show", FAST, exit_code=1)


def test_remove_unknown_configuration_is_an_error(cli: Cli, data_dir: Path) -> None:
    result = cli("config", "remove", "ghost", "--yes", exit_code=1)

    assert "ghost" in result.stderr


def test_empty_api_key_on_stdin_is_refused(data_dir: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["config", "add", "k", "--provider", "openai", "--model", "gpt-4o-mini", "--api-key-stdin"],
        input="\n",
    )
    assert result.exit_code == 1
    assert "no API key" in result.output
