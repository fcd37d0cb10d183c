"""Signed-in browsers: sign-in with throttling, sessions, CSRF tokens, sign-out.

The session cookie holds 256 random bits; the database keeps only their SHA-256, so a copy of the
database does not sign anybody in. Each session has its own CSRF token, which every
state-changing request must echo (a form field or the `X-CSRF-Token` header).

Throttling counts recent failures in the database, so it holds across server processes: more than
`ACCOUNT_FAILURES` for one email, or `ADDRESS_FAILURES` from one address, within `THROTTLE_WINDOW`
refuse further attempts until the oldest failure ages out. Nothing is locked for good, and a
successful sign-in clears the account's count.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.base import utcnow
from llm_manager.db.session import Database
from llm_manager.db.tables import LoginFailure, Role, RolePermission, User, UserRole, WebSession
from llm_manager.errors import InvalidInputError, SignInThrottledError, UnauthenticatedError
from llm_manager.services.accounts import PERMISSIONS, SUPER_ADMIN, Passwords, normal_email

ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 20
THROTTLE_WINDOW = timedelta(minutes=15)
_SEEN_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, kw_only=True)
class SessionUser:
    """The signed-in user of one request, with permissions as they are *now* in the database."""

    session_id: str
    user_id: int
    email: str
    name: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    csrf_token: str

    @property
    def is_super_admin(self) -> bool:
        return SUPER_ADMIN in self.roles

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def display_name(self) -> str:
        return self.name or self.email


@dataclass(frozen=True, kw_only=True)
class SignedIn:
    cookie: str
    """The secret for the session cookie; shown to the browser once, never stored."""
    user: SessionUser


@dataclass(frozen=True, kw_only=True)
class SessionView:
    id: str
    created_at: datetime
    last_seen_at: datetime
    address: str
    user_agent: str


class SessionService:
    def __init__(self, database: Database, passwords: Passwords, *, max_age: timedelta) -> None:
        self._database = database
        self._passwords = passwords
        self._max_age = max_age

    async def sign_in(self, email: str, password: str, *, address: str, user_agent: str = "") -> SignedIn:
        """Check the password, throttled per account and per address; every failure reads the same."""
        try:
            account = normal_email(email)
        except InvalidInputError:
            account = email.strip().lower()[:254]
        async with self._database.session() as session:
            await _refuse_if_throttled(session, account, address)
            user = await session.scalar(select(User).where(User.email == account))
        if user is None:
            await self._passwords.burn(password)
        verified = user is not None and await self._passwords.verify(user.password_hash, password)
        if user is None or not verified or not user.is_active:
            async with self._database.session() as session:
                session.add(LoginFailure(email=account, address=address[:64]))
            raise UnauthenticatedError("wrong email or password, or the account is deactivated")
        return await self._open(user, password, address=address, user_agent=user_agent)

    async def resolve(self, cookie: str | None) -> SessionUser:
        """The user behind a session cookie; expired, ended or deactivated sessions are refused."""
        if not cookie or len(cookie) > 100:
            raise UnauthenticatedError("not signed in")
        now = utcnow()
        async with self._database.session() as session:
            row = (
                await session.execute(
                    select(WebSession, User)
                    .join(User, User.id == WebSession.user_id)
                    .where(WebSession.id == _digest(cookie))
                )
            ).first()
            if row is None:
                raise UnauthenticatedError("not signed in")
            web_session, user = row
            if web_session.expires_at <= now or not user.is_active:
                raise UnauthenticatedError("your session has ended; sign in again")
            if now - web_session.last_seen_at >= _SEEN_EVERY:
                web_session.last_seen_at = now
            return await _session_user(session, web_session, user)

    async def sign_out(self, session_id: str) -> None:
        async with self._database.session() as session:
            await session.execute(delete(WebSession).where(WebSession.id == session_id))

    async def end_others(self, user_id: int, *, keep: str) -> int:
        async with self._database.session() as session:
            result = await session.execute(
                delete(WebSession).where(WebSession.user_id == user_id, WebSession.id != keep)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def list_for(self, user_id: int) -> list[SessionView]:
        async with self._database.session() as session:
            rows = await session.scalars(
                select(WebSession)
                .where(WebSession.user_id == user_id, WebSession.expires_at > utcnow())
                .order_by(WebSession.last_seen_at.desc())
            )
            return [
                SessionView(
                    id=row.id,
                    created_at=row.created_at,
                    last_seen_at=row.last_seen_at,
                    address=row.address,
                    user_agent=row.user_agent,
                )
                for row in rows
            ]

    async def _open(self, user: User, password: str, *, address: str, user_agent: str) -> SignedIn:
        cookie = secrets.token_urlsafe(32)
        now = utcnow()
        web_session = WebSession(
            id=_digest(cookie),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self._max_age,
            address=address[:64],
            user_agent=user_agent[:255],
        )
        async with self._database.session() as session:
            session.add(web_session)
            await session.execute(delete(LoginFailure).where(LoginFailure.email == user.email))
            await session.execute(
                delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at <= now)
            )
            values: dict[str, object] = {"last_login_at": now}
            if self._passwords.needs_rehash(user.password_hash):
                values["password_hash"] = await self._passwords.hash(password)
            await session.execute(update(User).where(User.id == user.id).values(**values))
            return SignedIn(cookie=cookie, user=await _session_user(session, web_session, user))


async def _refuse_if_throttled(session: AsyncSession, account: str, address: str) -> None:
    since = utcnow() - THROTTLE_WINDOW
    for column, value, limit, whom in (
        (LoginFailure.email, account, ACCOUNT_FAILURES, "this account"),
        (LoginFailure.address, address[:64], ADDRESS_FAILURES, "your address"),
    ):
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(LoginFailure.at)).where(
                    column == value, LoginFailure.at > since
                )
            )
        ).one()
        if count >= limit and oldest is not None:
            wait = max(1.0, (oldest - since).total_seconds())
            minutes = max(1, round(wait / 60))
            raise SignInThrottledError(
                f"too many failed sign-ins for {whom}; try again in about {minutes} minute{'s' if minutes > 1 else ''}",
                retry_after=wait,
            )


async def _session_user(session: AsyncSession, web_session: WebSession, user: User) -> SessionUser:
    rows = await session.execute(
        select(Role.name, RolePermission.permission)
        .select_from(UserRole)
        .join(Role, Role.id == UserRole.role_id)
        .outerjoin(RolePermission, RolePermission.role_id == Role.id)
        .where(UserRole.user_id == user.id)
    )
    roles: dict[str, None] = {}
    permissions: set[str] = set()
    for role, permission in rows:
        roles[role] = None
        if permission is not None:
            permissions.add(permission)
    if SUPER_ADMIN in roles:
        permissions = set(PERMISSIONS)
    return SessionUser(
        session_id=web_session.id,
        user_id=user.id,
        email=user.email,
        name=user.name,
        roles=tuple(roles),
        permissions=frozenset(permissions),
        csrf_token=web_session.csrf_token,
    )


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()
