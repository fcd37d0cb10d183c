"""Applications: the named callers that configurations, usage and (later) tokens belong to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from llm_manager.db.session import Database
from llm_manager.db.tables import Application
from llm_manager.errors import ConflictError, InvalidInputError, NotFoundError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


@dataclass(frozen=True, kw_only=True)
class ApplicationView:
    id: int
    name: str
    description: str
    is_active: bool
    created_at: datetime


class ApplicationService:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self, name: str, description: str = "") -> ApplicationView:
        if not _NAME.match(name):
            raise InvalidInputError("name: 1-100 letters, digits, spaces, '.', '-' or '_'", field="name")
        row = Application(name=name, description=description)
        try:
            async with self._database.session() as session:
                session.add(row)
        except IntegrityError:
            raise ConflictError(f"application {name!r} already exists") from None
        return _view(row)

    async def list_all(self) -> list[ApplicationView]:
        async with self._database.session() as session:
            rows = (await session.scalars(select(Application).order_by(Application.name))).all()
        return [_view(row) for row in rows]

    async def get(self, name: str) -> ApplicationView:
        async with self._database.session() as session:
            row = await session.scalar(select(Application).where(Application.name == name))
        if row is None:
            raise NotFoundError(f"application {name!r} not found")
        return _view(row)


def _view(row: Application) -> ApplicationView:
    return ApplicationView(
        id=row.id,
        name=row.name,
        description=row.description,
        is_active=row.is_active,
        created_at=row.created_at,
    )
