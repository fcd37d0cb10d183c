"""Named configurations: create, change, resolve for a call, and their models.

A configuration's API key is write-only: it is encrypted on the way in and only ever leaves as a
hint (its last four characters). Changing the base URL clears the stored key, so a key can never
be sent to a server it was not given for.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.base import utcnow
from llm_manager.db.session import Database
from llm_manager.db.tables import Application, ConfigurationFallback, LLMConfiguration, ProviderModelCache
from llm_manager.errors import ConflictError, InvalidInputError, NotFoundError
from llm_manager.providers.registry import ProviderRegistry
from llm_manager.services.configuration_specs import (
    ConfigurationCreate,
    ConfigurationFields,
    ConfigurationUpdate,
    parse_params,
)
from llm_manager.services.invalidation import TtlCache
from llm_manager.services.pricing import PriceOverride
from llm_manager.services.secrets import KeyRing
from llm_manager.types import GenerationParams, ModelInfo, RateLimits

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class ConfigurationView:
    """A configuration as anyone outside may see it: no key, only whether one is set."""

    id: int
    slug: str
    name: str
    provider: str
    provider_label: str
    is_demo: bool
    supports_streaming: bool
    model: str
    base_url: str | None
    has_api_key: bool
    api_key_hint: str | None
    default_params: dict[str, Any]
    options: dict[str, Any]
    application: str | None
    is_active: bool
    is_default: bool
    fallbacks: tuple[str, ...]
    price_override: PriceOverride | None
    context_length: int | None
    rpm_limit: int | None
    tpm_limit: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class ResolvedConfiguration:
    """What the call pipeline needs: the row's values plus the decrypted key (kept out of repr)."""

    id: int
    slug: str
    provider: str
    model: str
    base_url: str | None
    api_key: str | None
    params: GenerationParams
    options: dict[str, Any]
    application_id: int | None
    price_override: PriceOverride | None
    context_length: int | None
    rate_limits: RateLimits = dataclasses.field(default_factory=RateLimits)

    def __repr__(self) -> str:
        return f"ResolvedConfiguration(slug={self.slug!r}, provider={self.provider!r}, model={self.model!r})"


@dataclass(frozen=True, kw_only=True)
class ProviderType:
    """A provider type as a form needs it: its name and which connection fields it takes."""

    name: str
    label: str
    default_base_url: str
    takes_base_url: bool
    """Every provider but the demo talks to a server somewhere."""
    requires_api_key: bool
    takes_api_key: bool
    """Whether a key is sent at all; some (a local Ollama) take one but need none."""
    supports_streaming: bool
    is_demo: bool


@dataclass(frozen=True, kw_only=True)
class ConfigurationPage:
    """One page of a filtered listing, and how many configurations matched in all."""

    items: list[ConfigurationView]
    total: int


def _invalidating(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Clear the resolution cache before a change and again after it has committed."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        service = args[0]
        assert isinstance(service, ConfigurationService)
        service.invalidate()
        try:
            return await method(*args, **kwargs)
        finally:
            service.invalidate()

    return wrapper


class ConfigurationService:
    def __init__(
        self, database: Database, key_ring: KeyRing, registry: ProviderRegistry, *, cache_ttl: float = 5.0
    ) -> None:
        self._database = database
        self._key_ring = key_ring
        self._registry = registry
        self._cache: TtlCache[tuple[str | None, int | None], list[ResolvedConfiguration]] = TtlCache(
            cache_ttl
        )

    @_invalidating
    async def create(self, spec: ConfigurationCreate) -> ConfigurationView:
        provider = self._registry.get(spec.provider)
        base_url = spec.base_url or provider.default_base_url or None
        if base_url is None and provider.name != "demo":
            raise InvalidInputError(f"provider {spec.provider!r} needs a base_url", field="base_url")
        row = LLMConfiguration(
            slug=spec.slug,
            name=spec.name or spec.slug,
            provider=spec.provider,
            model=spec.model,
            base_url=base_url,
            default_params=spec.default_params or {},
            options=spec.options or {},
            is_active=True if spec.is_active is None else spec.is_active,
            is_default=False,
            context_length=spec.context_length,
            rpm_limit=spec.rpm_limit,
            tpm_limit=spec.tpm_limit,
        )
        _apply_prices(row, spec)
        if spec.api_key is not None:
            self._store_key(row, spec.api_key.get_secret_value())
        async with self._database.session() as session:
            row.application_id = await _application_id(session, spec.application)
            session.add(row)
            await _flush_unique(session, f"slug {spec.slug!r} is already taken")
            if spec.fallbacks is not None:
                await self._set_fallbacks(session, row, spec.fallbacks)
            if spec.is_default:
                await _make_default(session, row)
            await session.flush()
            return await self._view(session, row)

    @_invalidating
    async def update(self, slug: str, spec: ConfigurationUpdate) -> ConfigurationView:
        changes = spec.model_dump(exclude_unset=True)
        async with self._database.session() as session:
            row = await _get(session, slug)
            if "provider" in changes:
                self._registry.get(changes["provider"])
            if "base_url" in changes and changes["base_url"] != row.base_url:
                _clear_key(row)
            for field in (
                "name",
                "provider",
                "model",
                "base_url",
                "default_params",
                "options",
                "context_length",
                "rpm_limit",
                "tpm_limit",
            ):
                if field in changes:
                    setattr(row, field, changes[field])
            if "is_active" in changes:
                row.is_active = bool(changes["is_active"])
            _apply_prices(row, spec, only=changes.keys())
            if spec.api_key is not None:
                self._store_key(row, spec.api_key.get_secret_value())
            if "application" in changes:
                row.application_id = await _application_id(session, spec.application)
            if spec.fallbacks is not None:
                await self._set_fallbacks(session, row, spec.fallbacks)
            if spec.is_default:
                await _make_default(session, row)
            elif spec.is_default is False:
                row.is_default = False
            row.updated_at = utcnow()
            await session.flush()
            return await self._view(session, row)

    @_invalidating
    async def delete(self, slug: str) -> None:
        async with self._database.session() as session:
            row = await _get(session, slug)
            await session.delete(row)

    async def get(self, slug: str) -> ConfigurationView:
        async with self._database.session() as session:
            return await self._view(session, await _get(session, slug))

    async def list_all(
        self, *, provider: str | None = None, application: str | None = None, active_only: bool = False
    ) -> list[ConfigurationView]:
        query = select(LLMConfiguration).order_by(LLMConfiguration.slug)
        if provider:
            query = query.where(LLMConfiguration.provider == provider)
        if active_only:
            query = query.where(LLMConfiguration.is_active.is_(True))
        async with self._database.session() as session:
            if application is not None:
                query = query.where(
                    LLMConfiguration.application_id == await _application_id(session, application)
                )
            rows = (await session.scalars(query)).all()
            return [await self._view(session, row) for row in rows]

    async def search(
        self,
        *,
        text: str = "",
        provider: str | None = None,
        application: str | None = None,
        global_only: bool = False,
        active: bool | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> ConfigurationPage:
        """A filtered page for the admin list: `text` matches slug, name or model, any case.

        An unknown application matches nothing (a filter, not an input to refuse).
        """
        query = select(LLMConfiguration)
        if text:
            needle = text.lower()
            query = query.where(
                or_(
                    *(
                        func.lower(column).contains(needle, autoescape=True)
                        for column in (LLMConfiguration.slug, LLMConfiguration.name, LLMConfiguration.model)
                    )
                )
            )
        if provider:
            query = query.where(LLMConfiguration.provider == provider)
        if global_only:
            query = query.where(LLMConfiguration.application_id.is_(None))
        elif application:
            query = query.where(
                LLMConfiguration.application_id.in_(
                    select(Application.id).where(Application.name == application)
                )
            )
        if active is not None:
            query = query.where(LLMConfiguration.is_active.is_(active))
        async with self._database.session() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = (
                await session.scalars(
                    query.order_by(LLMConfiguration.slug).offset(max(offset, 0)).limit(max(limit, 1))
                )
            ).all()
            return ConfigurationPage(items=[await self._view(session, row) for row in rows], total=total)

    def provider_types(self) -> list[ProviderType]:
        """Every registered provider type with the connection fields it takes, for forms."""
        types = (self._registry.get(name) for name in self._registry.names())
        return [
            ProviderType(
                name=provider.name,
                label=provider.label,
                default_base_url=provider.default_base_url,
                takes_base_url=not provider.is_demo,
                requires_api_key=provider.requires_api_key,
                takes_api_key=not provider.is_demo,
                supports_streaming=provider.supports_streaming,
                is_demo=provider.is_demo,
            )
            for provider in types
        ]

    async def usable(self, *, application_id: int | None) -> list[ConfigurationView]:
        """Active configurations a caller of this application may name: global ones and its own."""
        query = (
            select(LLMConfiguration)
            .where(LLMConfiguration.is_active.is_(True))
            .where(
                or_(
                    LLMConfiguration.application_id.is_(None),
                    LLMConfiguration.application_id == application_id,
                )
            )
            .order_by(LLMConfiguration.slug)
        )
        async with self._database.session() as session:
            rows = (await session.scalars(query)).all()
            return [await self._view(session, row) for row in rows]

    async def resolve_chain(
        self, reference: str | None, *, application_id: int | None
    ) -> list[ResolvedConfiguration]:
        """The configuration a caller named (or its default), then its active fallbacks in order.

        Served from a short-lived per-process cache: resolving costs a database round trip and a
        decryption, which dominated the pipeline's overhead. Every change made through this
        service clears the cache at once; changes made by another process are seen within
        `cache_ttl` seconds.
        """
        chain = await self._cache.get_or_load(
            (reference, application_id),
            lambda: self._resolve_chain(reference, application_id=application_id),
        )
        return list(chain)  # a copy: callers may slice or extend it

    def invalidate(self) -> None:
        self._cache.clear()

    async def aclose(self) -> None:
        """Wait for background reloads of the resolution cache (before the database closes)."""
        await self._cache.aclose()

    async def _resolve_chain(
        self, reference: str | None, *, application_id: int | None
    ) -> list[ResolvedConfiguration]:
        """The configuration a caller named (or its default), then its active fallbacks in order.

        A caller scoped to an application sees global configurations and its own, never another
        application's: those resolve as not found.
        """
        async with self._database.read_session() as session:
            if application_id is not None:
                application = await session.get(Application, application_id)
                if application is None or not application.is_active:
                    raise NotFoundError(f"application {application_id} not found or inactive")
            primary = await self._find_for_call(session, reference, application_id)
            chain = [primary]
            for fallback in await _fallbacks(session, primary.id):
                if fallback.is_active and _visible(fallback, application_id):
                    chain.append(fallback)
            return [self._resolved(row) for row in chain]

    async def resolve(self, slug: str) -> ResolvedConfiguration:
        """One configuration with its key, active or not (for model discovery and tests)."""
        async with self._database.session() as session:
            return self._resolved(await _get(session, slug))

    async def cached_models(self, slug: str, ttl: timedelta) -> list[ModelInfo] | None:
        async with self._database.session() as session:
            row = await _get(session, slug)
            cache = await session.get(ProviderModelCache, row.id)
            if cache is None or utcnow() - cache.fetched_at > ttl:
                return None
            return [ModelInfo(**model) for model in cache.models]

    async def store_models(self, slug: str, models: Sequence[ModelInfo]) -> None:
        payload = [
            {"id": m.id, "name": m.name, "context_length": m.context_length, "owned_by": m.owned_by}
            for m in models
        ]
        async with self._database.session() as session:
            row = await _get(session, slug)
            await session.merge(
                ProviderModelCache(configuration_id=row.id, models=payload, fetched_at=utcnow())
            )

    def _store_key(self, row: LLMConfiguration, api_key: str) -> None:
        if not api_key:
            _clear_key(row)
            return
        row.api_key_ciphertext, row.api_key_key_id = self._key_ring.encrypt(api_key)
        row.api_key_hint = f"…{api_key[-4:]}" if len(api_key) >= 12 else "…"

    async def _set_fallbacks(
        self, session: AsyncSession, row: LLMConfiguration, slugs: Sequence[str]
    ) -> None:
        if len(set(slugs)) != len(slugs):
            raise InvalidInputError("fallbacks must not repeat a configuration", field="fallbacks")
        targets = [await _get(session, slug, field="fallbacks") for slug in slugs]
        if any(target.id == row.id for target in targets):
            raise InvalidInputError("a configuration cannot fall back to itself", field="fallbacks")
        await session.execute(
            delete(ConfigurationFallback).where(ConfigurationFallback.configuration_id == row.id)
        )
        session.add_all(
            ConfigurationFallback(configuration_id=row.id, position=position, fallback_id=target.id)
            for position, target in enumerate(targets)
        )

    async def _find_for_call(
        self, session: AsyncSession, reference: str | None, application_id: int | None
    ) -> LLMConfiguration:
        if reference is None:
            query = select(LLMConfiguration).where(LLMConfiguration.is_default.is_(True))
            query = query.where(LLMConfiguration.is_active.is_(True))
            defaults = [row for row in (await session.scalars(query)).all() if _visible(row, application_id)]
            own = [
                row for row in defaults if application_id is not None and row.application_id == application_id
            ]
            defaults = [row for row in defaults if row.application_id is None]
            if not (own or defaults):
                raise NotFoundError("no default configuration; name one or set a default")
            return (own or defaults)[0]
        row = await _find(session, reference)
        if row is None or not _visible(row, application_id):
            raise NotFoundError(f"configuration {reference!r} not found")
        if not row.is_active:
            raise InvalidInputError(f"configuration {reference!r} is inactive", field="configuration")
        return row

    def _resolved(self, row: LLMConfiguration) -> ResolvedConfiguration:
        return ResolvedConfiguration(
            id=row.id,
            slug=row.slug,
            provider=row.provider,
            model=row.model,
            base_url=row.base_url,
            api_key=self._key_ring.decrypt(row.api_key_ciphertext) if row.api_key_ciphertext else None,
            params=parse_params(row.default_params or {}, field_prefix="default_params"),
            options=dict(row.options or {}),
            application_id=row.application_id,
            price_override=_price_override(row),
            context_length=row.context_length,
            rate_limits=RateLimits(requests_per_minute=row.rpm_limit, tokens_per_minute=row.tpm_limit),
        )

    async def _view(self, session: AsyncSession, row: LLMConfiguration) -> ConfigurationView:
        provider = self._registry.get(row.provider) if row.provider in self._registry.names() else None
        fallback_slugs = [fallback.slug for fallback in await _fallbacks(session, row.id)]
        application = await session.get(Application, row.application_id) if row.application_id else None
        return ConfigurationView(
            id=row.id,
            slug=row.slug,
            name=row.name,
            provider=row.provider,
            provider_label=provider.label if provider else row.provider,
            is_demo=bool(provider and provider.is_demo),
            supports_streaming=bool(provider and provider.supports_streaming),
            model=row.model,
            base_url=row.base_url,
            has_api_key=row.api_key_ciphertext is not None,
            api_key_hint=row.api_key_hint,
            default_params=dict(row.default_params or {}),
            options=dict(row.options or {}),
            application=application.name if application else None,
            is_active=row.is_active,
            is_default=row.is_default,
            fallbacks=tuple(fallback_slugs),
            price_override=_price_override(row),
            context_length=row.context_length,
            rpm_limit=row.rpm_limit,
            tpm_limit=row.tpm_limit,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


async def _fallbacks(session: AsyncSession, configuration_id: int) -> list[LLMConfiguration]:
    query = (
        select(LLMConfiguration)
        .join(ConfigurationFallback, ConfigurationFallback.fallback_id == LLMConfiguration.id)
        .where(ConfigurationFallback.configuration_id == configuration_id)
        .order_by(ConfigurationFallback.position)
    )
    return list((await session.scalars(query)).all())


def _visible(row: LLMConfiguration, application_id: int | None) -> bool:
    return application_id is None or row.application_id in (None, application_id)


async def _find(session: AsyncSession, reference: str) -> LLMConfiguration | None:
    row = await session.scalar(select(LLMConfiguration).where(LLMConfiguration.slug == reference))
    if row is None and reference.isdigit():
        row = await session.get(LLMConfiguration, int(reference))
    return row


async def _get(session: AsyncSession, slug: str, *, field: str = "configuration") -> LLMConfiguration:
    row = await _find(session, slug)
    if row is None:
        raise (
            NotFoundError(f"configuration {slug!r} not found")
            if field == "configuration"
            else InvalidInputError(f"configuration {slug!r} not found", field=field)
        )
    return row


async def _application_id(session: AsyncSession, name: str | None) -> int | None:
    if not name:
        return None
    application_id = await session.scalar(select(Application.id).where(Application.name == name))
    if application_id is None:
        raise InvalidInputError(f"application {name!r} not found", field="application")
    return application_id


async def _make_default(session: AsyncSession, row: LLMConfiguration) -> None:
    """One default per scope (global, or one application)."""
    scope = (
        LLMConfiguration.application_id.is_(None)
        if row.application_id is None
        else LLMConfiguration.application_id == row.application_id
    )
    await session.execute(
        update(LLMConfiguration).where(scope, LLMConfiguration.id != row.id).values(is_default=False)
    )
    row.is_default = True


async def _flush_unique(session: AsyncSession, message: str) -> None:
    try:
        await session.flush()
    except IntegrityError:
        raise ConflictError(message) from None


def _clear_key(row: LLMConfiguration) -> None:
    row.api_key_ciphertext = row.api_key_key_id = row.api_key_hint = None


def _apply_prices(row: LLMConfiguration, spec: ConfigurationFields, only: Any = None) -> None:
    for field in ("input_price", "output_price", "cache_read_price", "cache_write_price"):
        if only is None or field in only:
            setattr(row, field, getattr(spec, field))
    if (row.input_price is None) != (row.output_price is None):
        raise InvalidInputError(
            "a price override needs both input_price and output_price", field="input_price"
        )


def _price_override(row: LLMConfiguration) -> PriceOverride | None:
    if row.input_price is None or row.output_price is None:
        return None
    return PriceOverride(
        input=row.input_price,
        output=row.output_price,
        cache_read=row.cache_read_price,
        cache_write=row.cache_write_price,
    )
