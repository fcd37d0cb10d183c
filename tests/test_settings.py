from __future__ import annotations

from pathlib import Path

import pytest

from llm_manager.errors import SettingsError
from llm_manager.settings import load_settings


def test_defaults_put_sqlite_in_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_MANAGER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LLM_MANAGER_DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'llm-manager.db'}"
    assert settings.key_file == tmp_path / "secret.key"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LLM_MANAGER_DATABASE_URL", "postgresql://localhost/db", "async driver"),
        ("LLM_MANAGER_DATABASE_URL", "mysql://localhost/db", "async driver"),
        ("LLM_MANAGER_REDIS_URL", "http://localhost:6379", "redis://"),
        ("LLM_MANAGER_FIRST_BYTE_TIMEOUT", "0", "FIRST_BYTE_TIMEOUT"),
        ("LLM_MANAGER_IDLE_TIMEOUT", "-1", "IDLE_TIMEOUT"),
        ("LLM_MANAGER_MAX_RETRIES", "100", "MAX_RETRIES"),
        ("LLM_MANAGER_USAGE_QUEUE_SIZE", "0", "USAGE_QUEUE_SIZE"),
        ("LLM_MANAGER_UPSTREAM_MAX_CONNECTIONS", "0", "UPSTREAM_MAX_CONNECTIONS"),
    ],
)
def test_unsafe_values_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()
