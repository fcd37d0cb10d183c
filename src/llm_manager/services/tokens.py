"""API tokens: issued once, stored as a hash, checked on every request.

A token looks like `llmm_1a2b3c4d_<43 random characters>`. The part before the second underscore
is its *prefix*: stored in clear, shown in lists and logs, and used to name the token in the CLI.
Only the SHA-256 of the whole token is kept — tokens carry 256 random bits, so a slow password
hash would add latency to every request and no safety.

A token belongs to one application and carries scopes: the endpoint groups it may use
(`inference` for /v1 and streams, `management` for its own application's /api, `admin` for every
application's) and, optionally, the configurations it may call.

Authenticating reads the database at most once a second per token: the caller it stands for is
cached per process for `PRINCIPAL_TTL` seconds, keyed by the token's hash. Expiry is checked on
every request against the cached time. A revocation clears the cache in the revoking process at
once and, with Redis, in every other process (a message on the invalidation channel), so it
applies to the next request; a process that missed the message (no Redis, a CLI on the same
SQLite file) sees it within `PRINCIPAL_TTL`. Changes to an application (deactivated, new rate
limits) are seen within `PRINCIPAL_TTL` too.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from llm_manager.db.base import utcnow
from llm_manager.db.session import Database
from llm_manager.db.tables import ApiToken, Application, LLMConfiguration
from llm_manager.errors import InvalidInputError, NotFoundError, UnauthenticatedError
from llm_manager.services.accounting import UsageWriter
from llm_manager.services.applications import application_named, check_limits, visible_configuration_id
from llm_manager.services.calls import CallContext
from llm_manager.services.invalidation import Invalidations, TtlCache
from llm_manager.types import RateLimits

Group = Literal["inference", "management", "admin"]
GROUPS: tuple[Group, ...] = ("inference", "management", "admin")
_TOKEN = re.compile(r"^llmm_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")
_PREFIX = re.compile(r"^llmm_[0-9a-f]{8}$")
_LAST_USED_EVERY = 60.0
PRINCIPAL_TTL = 1.0
"""Seconds a process may reuse an authenticated token's principal without asking the database."""
TOKENS_TOPIC = "tokens"
logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TokenView:
    id: int
    prefix: str
    name: str
    application: str
    application_id: int
    groups: tuple[str, ...]
    configurations: tuple[str, ...] | None
    """Slugs the token may call; None means every configuration its application may use."""
    rpm_limit: int | None
    tpm_limit: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    """A new token: `secret` is shown to the caller once and never stored."""

    token: TokenView
    secret: str


@dataclass(frozen=True, kw_only=True)
class Principal:
    """An authenticated caller: what a request may do, and how its calls are attributed."""

    token_id: int
    prefix: str
    application_id: int
    application: str
    groups: frozenset[str]
    configuration_ids: frozenset[int] | None
    token_limits: RateLimits
    application_limits: RateLimits

    @property
    def is_admin(self) -> bool:
        return "admin" in self.groups

    def may(self, group: Group) -> bool:
        """Admin tokens may manage too; inference needs its own grant."""
        return group in self.groups or (group == "management" and self.is_admin)

    def may_call(self, configuration_id: int) -> bool:
        return self.configuration_ids is None or configuration_id in self.configuration_ids

    def owns(self, application_id: int | None) -> bool:
        """Whether this caller may see an object of `application_id` (admins see everything)."""
        return self.is_admin or application_id == self.application_id

    def scope(self) -> int | None:
        """The application filter for listings: None (everything) for admins."""
        return None if self.is_admin else self.application_id

    def context(self, *, user_id: str | None = None, conversation_id: str | None = None) -> CallContext:
        return CallContext(
            application_id=self.application_id,
            token_id=self.token_id,
            user_id=user_id,
            conversation_id=conversation_id,
            application_limits=self.application_limits,
            token_limits=self.token_limits,
        )


class TokenService:
    def __init__(
        self,
        database: Database,
        invalidations: Invalidations | None = None,
        *,
        writer: UsageWriter | None = None,
    ) -> None:
        self._database = database
        self._writer = writer
        self._last_used_written: dict[int, float] = {}
        self._principals: TtlCache[str, _CachedPrincipal] = TtlCache(PRINCIPAL_TTL)
        self.invalidations = invalidations or Invalidations()
        """Shared with the other services that cache; the manager connects it to Redis."""
        self.invalidations.subscribe(TOKENS_TOPIC, self._principals.clear)

    async def create(
        self,
        application: str,
        *,
        name: str = "",
        groups: Sequence[str] = ("inference",),
        configurations: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
    ) -> IssuedToken:
        unknown = sorted(set(groups) - set(GROUPS))
        if unknown or not groups:
            raise InvalidInputError(
                f"groups: choose from {', '.join(GROUPS)} (got {', '.join(unknown) or 'none'})",
                field="groups",
            )
        if expires_at is not None and (expires_at.tzinfo is None or expires_at <= utcnow()):
            raise InvalidInputError("expires_at must be a future time with a time zone", field="expires_at")
        check_limits(rpm_limit=rpm_limit, tpm_limit=tpm_limit)
        if len(name) > 100:
            raise InvalidInputError("name: at most 100 characters", field="name")
        prefix = f"llmm_{secrets.token_hex(4)}"
        secret = f"{prefix}_{secrets.token_urlsafe(32)}"
        async with self._database.session() as session:
            app = await application_named(session, application)
            configuration_ids = (
                None if configurations is None else await _configuration_ids(session, configurations, app.id)
            )
            row = ApiToken(
                application_id=app.id,
                name=name,
                prefix=prefix,
                token_hash=_hash(secret),
                groups=sorted(set(groups), key=GROUPS.index),
                configuration_ids=configuration_ids,
                rpm_limit=rpm_limit,
                tpm_limit=tpm_limit,
                expires_at=expires_at,
            )
            session.add(row)
            await session.flush()
            view = await _view(session, row, app)
        return IssuedToken(token=view, secret=secret)

    async def list_all(
        self, *, application_id: int | None = None, include_revoked: bool = True
    ) -> list[TokenView]:
        query = select(ApiToken, Application).join(Application).order_by(ApiToken.id)
        if application_id is not None:
            query = query.where(ApiToken.application_id == application_id)
        if not include_revoked:
            query = query.where(ApiToken.revoked_at.is_(None))
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
            return [await _view(session, token, app) for token, app in rows]

    async def get(self, prefix: str, *, application_id: int | None = None) -> TokenView:
        async with self._database.session() as session:
            token, app = await _find(session, prefix, application_id)
            return await _view(session, token, app)

    async def revoke(self, prefix: str, *, application_id: int | None = None) -> TokenView:
        """Revoke a token (idempotent); it is refused from the next request on, in every process."""
        async with self._database.session() as session:
            token, app = await _find(session, prefix, application_id)
            if token.revoked_at is None:
                token.revoked_at = utcnow()
            view = await _view(session, token, app)
        await self.invalidations.publish(TOKENS_TOPIC)  # after the commit: a reload sees the revocation
        return view

    async def aclose(self) -> None:
        """Wait for background reloads of the principal cache (before the database closes)."""
        await self._principals.aclose()

    async def authenticate(self, secret: str | None) -> Principal:
        """The caller a presented token stands for; every failure is the same 401 to the caller."""
        if not secret or len(secret) > 100 or not _TOKEN.match(secret):
            raise UnauthenticatedError("missing or malformed API token")
        token_hash = _hash(secret)
        cached = await self._principals.get_or_load(
            token_hash, lambda: self._load(ApiToken.token_hash == token_hash)
        )
        _check_expiry(cached.expires_at)
        await self._touch(cached.principal.token_id)
        return cached.principal

    async def principal(self, token_id: int) -> Principal:
        """The caller behind a token id, checked exactly like a presented token (revoked, expired)."""
        cached = await self._load(ApiToken.id == token_id)
        _check_expiry(cached.expires_at)
        return cached.principal

    async def _load(self, condition: ColumnElement[bool]) -> _CachedPrincipal:
        async with self._database.read_session() as session:
            row = (
                await session.execute(select(ApiToken, Application).join(Application).where(condition))
            ).first()
        if row is None:
            raise UnauthenticatedError("invalid API token")
        token, app = row
        if token.revoked_at is not None:
            raise UnauthenticatedError("this API token has been revoked")
        _check_expiry(token.expires_at)
        if not app.is_active:
            raise UnauthenticatedError("this API token's application is inactive")
        principal = Principal(
            token_id=token.id,
            prefix=token.prefix,
            application_id=app.id,
            application=app.name,
            groups=frozenset(token.groups),
            configuration_ids=None if token.configuration_ids is None else frozenset(token.configuration_ids),
            token_limits=RateLimits(requests_per_minute=token.rpm_limit, tokens_per_minute=token.tpm_limit),
            application_limits=RateLimits(requests_per_minute=app.rpm_limit, tokens_per_minute=app.tpm_limit),
        )
        return _CachedPrincipal(principal=principal, expires_at=token.expires_at)

    async def _touch(self, token_id: int) -> None:
        """Record `last_used_at`, at most once a minute per token and process (not a write per call).

        With a usage writer the write rides on its next batch, so the request that happens to be
        the minute's first does not wait for a transaction of its own.
        """
        now = time.monotonic()
        if now - self._last_used_written.get(token_id, -_LAST_USED_EVERY) < _LAST_USED_EVERY:
            return
        self._last_used_written[token_id] = now
        used = _TokenUsed(token_id=token_id, at=utcnow())
        if self._writer is not None:
            await self._writer.put(used)
            return
        async with self._database.transaction() as connection:
            await _TokenUsed.write_all(connection, [used])


@dataclass(frozen=True, kw_only=True)
class _TokenUsed:
    """A token's `last_used_at`; a `DeferredWrite` of the usage writer."""

    token_id: int
    at: datetime

    @classmethod
    async def write_all(cls, connection: AsyncConnection, writes: Sequence[_TokenUsed]) -> None:
        latest: dict[int, datetime] = {}
        for used in writes:
            latest[used.token_id] = max(used.at, latest.get(used.token_id, used.at))
        for token_id, at in latest.items():
            await connection.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=at))


@dataclass(frozen=True, kw_only=True)
class _CachedPrincipal:
    principal: Principal
    expires_at: datetime | None
    """Kept beside the principal so a cached token still expires on time."""


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= utcnow():
        raise UnauthenticatedError("this API token has expired")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def _configuration_ids(session: AsyncSession, slugs: Sequence[str], application_id: int) -> list[int]:
    """Ids of the named configurations, each one visible to the application (global or its own)."""
    return [
        await visible_configuration_id(session, slug, application_id, field="configurations")
        for slug in dict.fromkeys(slugs)
    ]


async def _find(
    session: AsyncSession, prefix: str, application_id: int | None
) -> tuple[ApiToken, Application]:
    """A token by prefix; another application's token is not found, exactly like a missing one."""
    if not _PREFIX.match(prefix):
        raise NotFoundError(f"token {prefix!r} not found")
    query = select(ApiToken, Application).join(Application).where(ApiToken.prefix == prefix)
    if application_id is not None:
        query = query.where(ApiToken.application_id == application_id)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFoundError(f"token {prefix!r} not found")
    return row[0], row[1]


async def _view(session: AsyncSession, token: ApiToken, app: Application) -> TokenView:
    slugs = None
    if token.configuration_ids is not None:
        found = await session.scalars(
            select(LLMConfiguration.slug).where(LLMConfiguration.id.in_(token.configuration_ids))
        )
        slugs = tuple(sorted(found))
    return TokenView(
        id=token.id,
        prefix=token.prefix,
        name=token.name,
        application=app.name,
        application_id=app.id,
        groups=tuple(token.groups),
        configurations=slugs,
        rpm_limit=token.rpm_limit,
        tpm_limit=token.tpm_limit,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        last_used_at=token.last_used_at,
        created_at=token.created_at,
    )
