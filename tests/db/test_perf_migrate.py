"""Start-up without Alembic: the head is read from the migration files, and a database already
at head is opened without importing Alembic at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from llm_manager.db import migrate

_OPEN_TWICE = """
import asyncio, sys
from llm_manager.db.migrate import upgrade_to_head
from llm_manager.db.session import Database

async def main(url):
    database = Database(url)
    await upgrade_to_head(database)
    await database.dispose()

asyncio.run(main(sys.argv[1]))
first = "alembic" in sys.modules
for name in [name for name in sys.modules if name == "alembic" or name.startswith("alembic.")]:
    del sys.modules[name]
asyncio.run(main(sys.argv[1]))
print(first, "alembic" in sys.modules)
"""


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert migrate.head_revision() == migrate._alembic_head()


def test_a_database_at_head_opens_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'head.db'}"
    output = subprocess.run(
        [sys.executable, "-c", _OPEN_TWICE, url], capture_output=True, text=True, check=True
    ).stdout.split()
    assert output == ["True", "False"]
