"""The activity log: who changed what, and when — kept in the database, not in a browser."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_

from llm_manager.db.session import Database
from llm_manager.db.tables import ActivityEntry
from llm_manager.errors import InvalidInputError


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who acts: a signed-in user, the CLI, or an API token."""

    name: str
    user_id: int | None = None
    address: str = ""


CLI = Actor(name="cli")
_BAD_CURSOR = "before: not a cursor this page gave out; start again from the newest entries"


@dataclass(frozen=True, kw_only=True)
class ActivityView:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: str
    address: str


@dataclass(frozen=True, kw_only=True)
class ActivityPage:
    entries: list[ActivityView]
    next_cursor: str | None
    """Pass it back as `before` for the next (older) page."""


class ActivityService:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def record(self, actor: Actor, action: str, target: str = "", detail: str = "") -> None:
        async with self._database.session() as session:
            session.add(
                ActivityEntry(
                    user_id=actor.user_id,
                    actor=actor.name[:254],
                    action=action[:64],
                    target=target[:200],
                    detail=detail,
                    address=actor.address[:64],
                )
            )

    async def page(
        self,
        *,
        limit: int = 50,
        before: str | None = None,
        action: str | None = None,
        actor: str | None = None,
    ) -> ActivityPage:
        """Newest first, keyset-paginated on (at, id) so deep pages cost what the first one does."""
        query = (
            select(ActivityEntry).order_by(ActivityEntry.at.desc(), ActivityEntry.id.desc()).limit(limit + 1)
        )
        if action:
            query = query.where(ActivityEntry.action.startswith(action, autoescape=True))
        if actor:
            query = query.where(ActivityEntry.actor == actor)
        if before:
            query = query.where(tuple_(ActivityEntry.at, ActivityEntry.id) < parse_cursor(before))
        async with self._database.session() as session:
            rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = f"{rows[-1].at.isoformat()}_{rows[-1].id}" if more and rows else None
        return ActivityPage(entries=[_view(row) for row in rows], next_cursor=cursor)


def parse_cursor(before: str) -> tuple[datetime, int]:
    """The (at, id) a `next_cursor` names; anything else is the caller's mistake, not a crash."""
    at, _, entry_id = before.partition("_")
    try:
        moment, number = datetime.fromisoformat(at), int(entry_id)
    except ValueError:
        raise InvalidInputError(_BAD_CURSOR, field="before") from None
    if moment.tzinfo is None:
        raise InvalidInputError(_BAD_CURSOR, field="before")
    return moment, number


def _view(row: ActivityEntry) -> ActivityView:
    return ActivityView(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail=row.detail,
        address=row.address,
    )
