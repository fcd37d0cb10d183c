"""`llm-manager init`: key file, database, seeded configurations, idempotence."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.fernet import Fernet

from tests.cli.conftest import Cli, json_output

OLLAMA_URL = "http://localhost:11434"


def _configurations(cli: Cli) -> dict[str, dict[str, object]]:
    return {view["slug"]: view for view in json_output(cli("config", "list", "--json"))}


def test_init_creates_a_private_key_file_and_the_database(cli: Cli, empty_data_dir: Path) -> None:
    result = cli("init")

    key_file = empty_data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = key_file.read_text().split()
    assert len(keys) == 1
    Fernet(keys[0].encode())  # a usable Fernet key, or this raises
    assert (empty_data_dir / "llm-manager.db").is_file()
    assert str(key_file) in result.stderr
    assert keys[0] not in result.stdout + result.stderr


def test_init_seeds_the_demo_as_active_default_and_ollama_examples_as_inactive(
    cli: Cli, empty_data_dir: Path
) -> None:
    result = cli("init")

    for slug in ("demo", "ollama-qwen3", "ollama-deepseek-coder"):
        assert slug in result.stdout
    views = _configurations(cli)
    assert set(views) == {"demo", "ollama-qwen3", "ollama-deepseek-coder"}
    demo = views["demo"]
    assert (demo["provider"], demo["is_active"], demo["is_default"], demo["is_demo"]) == (
        "demo",
        True,
        True,
        True,
    )
    for slug, model in (("ollama-qwen3", "qwen3:4b"), ("ollama-deepseek-coder", "deepseek-coder:6.7b")):
        view = views[slug]
        assert (view["provider"], view["model"], view["base_url"]) == ("ollama", model, OLLAMA_URL)
        assert view["is_active"] is False
        assert view["is_default"] is False


def test_init_twice_keeps_the_key_and_seeds_nothing_new(cli: Cli, empty_data_dir: Path) -> None:
    cli("init")
    key_before = (empty_data_dir / "secret.key").read_text()
    views_before = _configurations(cli)

    again = cli("init")

    assert (empty_data_dir / "secret.key").read_text() == key_before
    assert "secret.key" not in again.stderr
    assert "Seeded" not in again.stdout
    views_after = _configurations(cli)
    assert {slug: view["id"] for slug, view in views_after.items()} == {
        slug: view["id"] for slug, view in views_before.items()
    }


def test_init_leaves_user_changes_alone_and_restores_a_removed_seed(cli: Cli, data_dir: Path) -> None:
    cli("config", "remove", "demo", "--yes")

    result = cli("init")

    assert "demo" in result.stdout
    views = _configurations(cli)
    assert "fast" in views
    assert views["demo"]["is_active"] is True
