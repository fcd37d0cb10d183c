"""`lazy_import`, and that a server or CLI process starts without the heavy modules it may never use."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_manager._lazy import lazy_import


def test_a_lazy_module_runs_its_code_on_first_attribute_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "heavy_example.py").write_text("import builtins\nbuiltins.heavy_loads += 1\nANSWER = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("builtins.heavy_loads", 0, raising=False)
    monkeypatch.delitem(sys.modules, "heavy_example", raising=False)

    module = lazy_import("heavy_example")

    assert getattr(builtins, "heavy_loads") == 0  # noqa: B009 (set at run time)
    assert module.ANSWER == 42
    assert getattr(builtins, "heavy_loads") == 1  # noqa: B009
    assert lazy_import("heavy_example") is sys.modules["heavy_example"]
    assert getattr(builtins, "heavy_loads") == 1  # noqa: B009


def test_a_missing_module_is_refused_at_once() -> None:
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        lazy_import("no_such_module_here")


def test_starting_the_server_loads_neither_the_http_client_nor_the_price_table(tmp_path: Path) -> None:
    """Both cost start-up time and memory; the first upstream call or table price loads them."""
    probe = (
        "import sys, llm_manager.cli.app, llm_manager.server.app\n"
        "llm_manager.server.app.create_app()\n"
        "print(sorted(name for name in ('aiohttp.client', 'genai_prices.types') if name in sys.modules))\n"
    )
    environment = {**os.environ, "LLM_MANAGER_DATA_DIR": str(tmp_path)}
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environment
    )
    assert loaded.stdout.strip() == "[]"
