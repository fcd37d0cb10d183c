"""The installed `llm-manager` console script, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import isolated_environment

SCRIPT = Path(sys.executable).parent / "llm-manager"


def _run(*args: str, data_dir: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    for name, value in {**isolated_environment(data_dir), **overrides}.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=environment, timeout=60, check=False
    )


@pytest.mark.slow
def test_console_script_initialises_and_chats(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert SCRIPT.is_file(), f"{SCRIPT} is not installed"

    init = _run("init", data_dir=data_dir)
    streamed = _run("chat", "demo", "hello", "--param", "max_tokens=5", data_dir=data_dir)
    as_json = _run("chat", "demo", "hello", "--json", "--param", "max_tokens=2", data_dir=data_dir)

    assert init.returncode == 0, init.stderr
    assert (data_dir / "secret.key").is_file()
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.strip() == "This is the LLM Manager"
    assert "tokens" in streamed.stderr
    assert as_json.returncode == 0, as_json.stderr
    reply = json.loads(as_json.stdout)
    assert (reply["text"], reply["usage"]["completion_tokens"]) == ("This is", 2)


def test_invalid_settings_are_reported_without_a_traceback(tmp_path: Path) -> None:
    result = _run("init", data_dir=tmp_path / "data", LLM_MANAGER_DATABASE_URL="postgres://nowhere/db")

    assert result.returncode == 1
    assert "LLM_MANAGER_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
