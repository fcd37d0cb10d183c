"""Readiness: can we reach the database, and is its schema at the head revision?"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from llm_manager.db.migrate import current_revision, head_revision
from llm_manager.db.session import Database


@dataclass(frozen=True, kw_only=True)
class Readiness:
    database: bool
    revision: str | None
    head: str | None

    @property
    def ready(self) -> bool:
        return self.database and self.revision == self.head

    def as_dict(self) -> dict[str, object]:
        return {"ready": self.ready, "database": self.database, "revision": self.revision, "head": self.head}


async def readiness(database: Database) -> Readiness:
    try:
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        revision = await current_revision(database)
    except (SQLAlchemyError, OSError):
        return Readiness(database=False, revision=None, head=head_revision())
    return Readiness(database=True, revision=revision, head=head_revision())
