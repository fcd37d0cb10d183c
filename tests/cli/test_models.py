"""`llm-manager models`: what a configuration's provider offers."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, json_output


def test_demo_lists_its_chat_and_embedding_models(cli: Cli, data_dir: Path) -> None:
    result = cli("models", "demo")

    assert "demo-chat" in result.stdout
    assert "demo-embed" in result.stdout


def test_models_json_and_refresh(cli: Cli, data_dir: Path) -> None:
    cached = json_output(cli("models", "demo", "--json"))
    refreshed = json_output(cli("models", "demo", "--refresh", "--json"))

    assert [model["id"] for model in cached] == ["demo-chat", "demo-embed"]
    assert refreshed == cached
    assert all(model["context_length"] == 8192 for model in cached)


def test_models_of_an_unknown_configuration_is_an_error(cli: Cli, data_dir: Path) -> None:
    assert "ghost" in cli("models", "ghost", exit_code=1).stderr
