"""The layer rules of DESIGN.md, checked by import-linter against the real import graph."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_parent,
        check=False,
    )


def test_layer_rules_hold() -> None:
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden_import"),
    [
        ("providers/base.py", "import llm_manager.db.session"),
        ("db/base.py", "import llm_manager.services.pricing"),
        ("services/pricing.py", "import llm_manager.cli.app"),
        ("types.py", "import llm_manager.settings"),
    ],
)
def test_a_broken_rule_fails(tmp_path: Path, module: str, forbidden_import: str) -> None:
    copy = tmp_path / "llm_manager"
    shutil.copytree(ROOT / "src" / "llm_manager", copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{forbidden_import}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
