"""Applications: the named callers that configurations, usage and (later) tokens belong to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.session import Database
from llm_manager.db.tables import Application, LLMConfiguration
from llm_manager.errors import ConflictError, InvalidInputError, NotFoundError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


class _Unset:
    """Marks an argument that was not given, where None means "no limit"."""


UNSET = _Unset()


@dataclass(frozen=True, kw_only=True)
class ApplicationView:
    id: int
    name: str
    description: str
    is_active: bool
    rpm_limit: int | None
    tpm_limit: int | None
    created_at: datetime


class ApplicationService:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(
        self,
        name: str,
        description: str = "",
        *,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
    ) -> ApplicationView:
        if not _NAME.match(name):
            raise InvalidInputError("name: 1-100 letters, digits, spaces, '.', '-' or '_'", field="name")
        check_limits(rpm_limit=rpm_limit, tpm_limit=tpm_limit)
        row = Application(name=name, description=description, rpm_limit=rpm_limit, tpm_limit=tpm_limit)
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

    async def get_by_id(self, application_id: int) -> ApplicationView:
        async with self._database.session() as session:
            row = await session.get(Application, application_id)
        if row is None:
            raise NotFoundError(f"application {application_id} not found")
        return _view(row)

    async def update(
        self,
        name: str,
        *,
        description: str | None = None,
        is_active: bool | None = None,
        rpm_limit: int | _Unset | None = UNSET,
        tpm_limit: int | _Unset | None = UNSET,
    ) -> ApplicationView:
        """Change what is given; a limit set to None is lifted. Applies to the next request."""
        async with self._database.session() as session:
            row = await session.scalar(select(Application).where(Application.name == name))
            if row is None:
                raise NotFoundError(f"application {name!r} not found")
            if description is not None:
                row.description = description
            if is_active is not None:
                row.is_active = is_active
            if not isinstance(rpm_limit, _Unset):
                check_limits(rpm_limit=rpm_limit)
                row.rpm_limit = rpm_limit
            if not isinstance(tpm_limit, _Unset):
                check_limits(tpm_limit=tpm_limit)
                row.tpm_limit = tpm_limit
        return _view(row)


def check_limits(**limits: int | None) -> None:
    """Rate limits are at least 1 per minute; None means no limit."""
    for field, limit in limits.items():
        if limit is not None and limit < 1:
            raise InvalidInputError(f"{field} must be at least 1", field=field)


def _view(row: Application) -> ApplicationView:
    return ApplicationView(
        id=row.id,
        name=row.name,
        description=row.description,
        is_active=row.is_active,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        created_at=row.created_at,
    )


async def application_named(session: AsyncSession, name: str, *, scope: int | None = None) -> Application:
    """An application by name; with `scope`, any other application does not exist either."""
    app = await session.scalar(select(Application).where(Application.name == name))
    if app is None or (scope is not None and app.id != scope):
        raise NotFoundError(f"application {name!r} not found")
    return app


async def visible_configuration_id(
    session: AsyncSession, slug: str, application_id: int, *, field: str
) -> int:
    """The id of a configuration the application may use (global or its own); others are not found."""
    row = await session.scalar(select(LLMConfiguration).where(LLMConfiguration.slug == slug))
    if row is None or row.application_id not in (None, application_id):
        raise InvalidInputError(f"configuration {slug!r} not found", field=field)
    return row.id
