"""CLI fixtures: an isolated data directory per test and a runner that reports failures fully.

`llm-manager init` runs once per session into a template directory (with a `fast` demo
configuration that streams without delay); each test gets its own copy, so tests stay isolated
without paying for migrations every time.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import pytest
from click.testing import Result
from typer.testing import CliRunner

from llm_manager.cli.app import app

FAST = "fast"
"""A demo configuration without the per-token delay, present in every `data_dir`."""

_TERMINAL_VARIABLES = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")


class Cli(Protocol):
    def __call__(self, *args: str, input: str | None = None, exit_code: int = 0) -> Result: ...


def isolated_environment(data_dir: Path) -> dict[str, str | None]:
    """Every LLM_MANAGER_* variable unset but the data directory (and a short usage flush interval,
    which otherwise adds its 0.2 s to every command that records a call); wide, plain output."""
    environment: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("LLM_MANAGER_") or name in _TERMINAL_VARIABLES
    }
    environment["LLM_MANAGER_DATA_DIR"] = str(data_dir)
    environment["LLM_MANAGER_USAGE_FLUSH_INTERVAL"] = "0.01"
    environment["COLUMNS"] = "200"
    environment["LLM_MANAGER_PASSWORD_HASH_MEMORY_KIB"] = "1024"  # cheap Argon2 for the suite
    environment["LLM_MANAGER_PASSWORD_HASH_TIME_COST"] = "1"
    return environment


def invoke(args: tuple[str, ...], *, input: str | None = None, exit_code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), input=input)
    assert result.exit_code == exit_code, describe(result)
    if exit_code != 0:
        # A clean exit, not a crash that click turned into exit code 1.
        assert isinstance(result.exception, SystemExit), describe(result)
    return result


def describe(result: Result) -> str:
    return (
        f"exit code {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n"
        f"--- exception\n{result.exception!r}"
    )


def json_output(result: Result) -> Any:
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("template") / "data"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in isolated_environment(directory).items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        invoke(("init",))
        invoke(
            ("config", "add", FAST, "--provider", "demo", "--model", "demo-chat", "--option", "delay_ms=0")
        )
    return directory


@pytest.fixture
def empty_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory that does not exist yet, with the environment pointing at it."""
    directory = tmp_path / "data"
    for name, value in isolated_environment(directory).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return directory


@pytest.fixture
def data_dir(template_dir: Path, empty_data_dir: Path) -> Path:
    """An initialised data directory of this test's own (seeded configurations plus `fast`)."""
    shutil.copytree(template_dir, empty_data_dir)
    return empty_data_dir


@pytest.fixture
def cli() -> Cli:
    """Run a command in-process and assert its exit code, showing both streams when it differs."""

    def run(*args: str, input: str | None = None, exit_code: int = 0) -> Result:
        return invoke(args, input=input, exit_code=exit_code)

    return run


@pytest.fixture
def database(cli: Cli, data_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data directory's SQLite database, or a PostgreSQL one initialised the same way."""
    if database_url.startswith("postgresql"):
        monkeypatch.setenv("LLM_MANAGER_DATABASE_URL", database_url)
        cli("init")
        cli("config", "add", FAST, "--provider", "demo", "--model", "demo-chat", "--option", "delay_ms=0")


@pytest.fixture
def portal(database: None, cli: Cli) -> None:
    """`database`, plus an application named `portal`."""
    cli("apps", "create", "portal")
