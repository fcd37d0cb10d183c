"""`llm-manager keys ...`: status, generate, and rotation onto a newly added key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from llm_manager.services.secrets import fingerprint
from tests.cli.conftest import Cli, json_output

API_KEY = "sk-test-0123456789abcdefwxyz"


def _status(cli: Cli) -> dict[str, dict[str, Any]]:
    return {key["key_id"]: key for key in json_output(cli("keys", "status", "--json"))}


def _add_keyed_configurations(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", API_KEY)
    cli(
        "config",
        "add",
        "gpt",
        "--provider",
        "openai",
        "--model",
        "gpt-4o-mini",
        "--api-key-env",
        "TEST_OPENAI_KEY",
    )
    cli(
        "config",
        "add",
        "claude",
        "--provider",
        "anthropic",
        "--model",
        "claude-haiku-4-5",
        "--api-key-stdin",
        input="sk-ant-test-0123456789abcd\n",
    )


def test_status_shows_one_primary_key_and_counts_its_secrets(
    cli: Cli, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = (data_dir / "secret.key").read_text().strip()
    assert list(_status(cli)) == [fingerprint(key)]
    assert _status(cli)[fingerprint(key)]["secrets"] == 0

    _add_keyed_configurations(cli, monkeypatch)

    [status] = _status(cli).values()
    assert (status["key_id"], status["primary"], status["in_ring"], status["secrets"]) == (
        fingerprint(key),
        True,
        True,
        2,
    )
    table = cli("keys", "status")
    assert fingerprint(key) in table.stdout
    assert "primary" in table.stdout
    assert key not in table.stdout


def test_generate_prints_a_fresh_fernet_key(cli: Cli) -> None:
    first = cli("keys", "generate").stdout.strip()
    second = cli("keys", "generate").stdout.strip()

    Fernet(first.encode())
    assert first != second


def test_rotate_moves_every_secret_under_the_new_primary_key(
    cli: Cli, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_keyed_configurations(cli, monkeypatch)
    key_file = data_dir / "secret.key"
    old_key = key_file.read_text().strip()
    new_key = cli("keys", "generate").stdout.strip()
    key_file.write_text(f"{new_key}\n{old_key}\n")
    old_id, new_id = fingerprint(old_key), fingerprint(new_key)

    before = _status(cli)
    assert (before[new_id]["primary"], before[new_id]["secrets"]) == (True, 0)
    assert (before[old_id]["primary"], before[old_id]["in_ring"], before[old_id]["secrets"]) == (
        False,
        True,
        2,
    )

    result = cli("keys", "rotate")

    assert "2" in result.stdout
    after = _status(cli)
    assert after[old_id]["secrets"] == 0
    assert after[new_id]["secrets"] == 2
    assert "can be removed" in cli("keys", "status").stdout
    assert "0" in cli("keys", "rotate").stdout

    key_file.write_text(f"{new_key}\n")
    retired = _status(cli)
    assert retired[new_id]["secrets"] == 2
    assert retired[old_id]["in_ring"] is False
    assert retired[old_id]["retired_at"] is not None
    view = json_output(cli("config", "show", "gpt", "--json"))
    assert (view["has_api_key"], view["api_key_hint"]) == (True, "…wxyz")


def test_a_key_file_other_users_can_read_is_refused(cli: Cli, data_dir: Path) -> None:
    (data_dir / "secret.key").chmod(0o644)

    result = cli("keys", "status", exit_code=1)

    assert "chmod 600" in result.stderr


def test_a_secret_whose_key_left_the_ring_is_reported(
    cli: Cli, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_keyed_configurations(cli, monkeypatch)
    key_file = data_dir / "secret.key"
    old_id = fingerprint(key_file.read_text().strip())
    key_file.write_text(cli("keys", "generate").stdout)

    status = _status(cli)

    assert (status[old_id]["in_ring"], status[old_id]["secrets"]) == (False, 2)
    assert "missing from the ring" in cli("keys", "status").stdout
    result = cli("keys", "rotate", exit_code=1)
    assert "cannot be decrypted" in result.stderr
