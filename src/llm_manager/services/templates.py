"""Prompt templates: immutable numbered versions, labels that point at them, and rendering.

A reference is `name` (the `production` label if set, else the newest version), `name@label`
or `name@3`. Saving never changes a version: it adds the next one, so a usage row that names
`support-reply` version 3 keeps meaning the same text, and statistics can compare versions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, case, delete, func, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.base import nanos_to_usd, utcnow
from llm_manager.db.session import Database, conflict_insert
from llm_manager.db.tables import (
    LLMConfiguration,
    PromptTemplate,
    PromptTemplateLabel,
    PromptTemplateVersion,
    UsageLog,
)
from llm_manager.errors import ConflictError, InvalidInputError, NotFoundError
from llm_manager.services.accounting import UsageWriter
from llm_manager.services.configuration_specs import parse_params
from llm_manager.services.prompt_rendering import (
    RenderedPrompt,
    TemplateRenderer,
    VariableSpec,
    parse_variable_specs,
)

LATEST = "latest"
PRODUCTION = "production"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_RESERVED_NAMES = frozenset({"new"})
_LABEL = re.compile(r"^[a-z][a-z0-9._-]{0,49}$")


@dataclass(frozen=True, kw_only=True)
class TemplateDraft:
    """What a new version holds. `configuration` is a slug (the default when a caller names none)."""

    user: str
    system: str | None = None
    variables: Sequence[Mapping[str, Any]] = ()
    configuration: str | None = None
    params: Mapping[str, Any] | None = None
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class TemplateVersionView:
    name: str
    version: int
    system: str | None
    user: str
    variables: tuple[VariableSpec, ...]
    configuration: str | None
    params: dict[str, Any]
    note: str
    created_by: str | None
    created_at: datetime
    labels: tuple[str, ...]
    """The labels pointing at this version, `latest` included when it is the newest."""


@dataclass(frozen=True, kw_only=True)
class TemplateView:
    id: int
    name: str
    description: str
    latest_version: int
    labels: dict[str, int]
    """Label → version, `latest` included."""
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class RenderedTemplate:
    """A version rendered with variables: ready to send, and what the usage row should record."""

    name: str
    version: int
    system: str | None
    user: str
    variables: dict[str, Any]
    configuration: str | None
    params: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class VersionStats:
    """How a version performed, from the usage log (calls rendered from it)."""

    version: int
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    avg_latency_ms: float | None

    @property
    def avg_cost(self) -> Decimal | None:
        return self.cost / self.requests if self.requests else None


class TemplateService:
    def __init__(
        self, database: Database, writer: UsageWriter | None = None, renderer: TemplateRenderer | None = None
    ) -> None:
        self._database = database
        self._writer = writer
        self.renderer = renderer or TemplateRenderer()

    async def save(
        self,
        name: str,
        draft: TemplateDraft,
        *,
        created_by: str | None = None,
        description: str | None = None,
    ) -> TemplateVersionView:
        """Add the next version of `name`, creating the template on its first version."""
        _check_name(name)
        specs = parse_variable_specs(list(draft.variables))
        self.renderer.check(system=draft.system, user=draft.user, specs=specs)
        params = parse_params(dict(draft.params or {}), field_prefix="params").as_dict()
        if len(draft.note) > 500:
            raise InvalidInputError("note must be at most 500 characters", field="note")
        async with self._database.session() as session:
            configuration_id = await _configuration_id(session, draft.configuration)
            template = await self._template_for_update(session, name, description)
            number = await _next_version(session, template.id)
            row = PromptTemplateVersion(
                template_id=template.id,
                version=number,
                system=draft.system or None,
                user=draft.user,
                variables=[spec.as_dict() for spec in specs],
                configuration_id=configuration_id,
                params=params,
                note=draft.note,
                created_by=created_by,
                created_at=utcnow(),
            )
            session.add(row)
            await session.flush()
            return await _version_view(session, name, row)

    async def _template_for_update(
        self, session: AsyncSession, name: str, description: str | None
    ) -> PromptTemplate:
        template = await _find_or_none(session, name)
        if template is None:
            now = utcnow()
            template = PromptTemplate(
                name=name, description=description or "", latest_version=0, created_at=now, updated_at=now
            )
            try:
                async with session.begin_nested():
                    session.add(template)
            except IntegrityError:  # created meanwhile by another request: add to it
                template = await _find(session, name)
        elif description is not None:
            template.description = description
        return template

    async def get(self, name: str) -> TemplateView:
        async with self._database.session() as session:
            row = await _find(session, name)
            labels = await _labels(session, [row.id])
        return _template_view(row, labels.get(row.id, {}))

    async def versions(self, name: str) -> list[TemplateVersionView]:
        """Newest first."""
        async with self._database.session() as session:
            template = await _find(session, name)
            query = (
                select(PromptTemplateVersion)
                .where(PromptTemplateVersion.template_id == template.id)
                .order_by(PromptTemplateVersion.version.desc())
            )
            rows = (await session.scalars(query)).all()
            return [await _version_view(session, name, row) for row in rows]

    async def version(self, reference: str) -> TemplateVersionView:
        """`name`, `name@label` or `name@3`."""
        name, selector = parse_reference(reference)
        async with self._database.session() as session:
            template = await _find(session, name)
            number = await _resolve(session, template, selector)
            row = (
                await session.scalars(
                    select(PromptTemplateVersion).where(
                        PromptTemplateVersion.template_id == template.id,
                        PromptTemplateVersion.version == number,
                    )
                )
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"template {name!r} has no version {number}")
            return await _version_view(session, name, row)

    async def render(self, reference: str, variables: Mapping[str, Any] | None = None) -> RenderedTemplate:
        chosen = await self.version(reference)
        rendered: RenderedPrompt = await self.renderer.render(
            system=chosen.system, user=chosen.user, specs=chosen.variables, values=dict(variables or {})
        )
        return RenderedTemplate(
            name=chosen.name,
            version=chosen.version,
            system=rendered.system,
            user=rendered.user,
            variables=rendered.variables,
            configuration=chosen.configuration,
            params=chosen.params,
        )

    async def set_label(self, name: str, label: str, version: int) -> TemplateView:
        """Point `label` at `version` (moving it if it pointed elsewhere). `latest` moves by itself."""
        _check_label(label)
        async with self._database.session() as session:
            template = await _find(session, name)
            if not 1 <= version <= template.latest_version:
                raise NotFoundError(f"template {name!r} has no version {version}")
            statement = conflict_insert(session, PromptTemplateLabel).values(
                template_id=template.id, label=label, version=version, updated_at=utcnow()
            )
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["template_id", "label"],
                    set_={"version": version, "updated_at": utcnow()},
                )
            )
            template.updated_at = utcnow()
        return await self.get(name)

    async def remove_label(self, name: str, label: str) -> TemplateView:
        _check_label(label)
        async with self._database.session() as session:
            template = await _find(session, name)
            await session.execute(
                delete(PromptTemplateLabel).where(
                    PromptTemplateLabel.template_id == template.id, PromptTemplateLabel.label == label
                )
            )
        return await self.get(name)

    async def delete(self, name: str) -> None:
        """The template and every version; usage rows keep the name and number they recorded."""
        async with self._database.session() as session:
            template = await _find(session, name)
            await session.execute(
                delete(PromptTemplateVersion).where(PromptTemplateVersion.template_id == template.id)
            )
            await session.execute(
                delete(PromptTemplateLabel).where(PromptTemplateLabel.template_id == template.id)
            )
            await session.delete(template)

    async def stats(self, name: str) -> list[VersionStats]:
        """Per version: calls, errors, tokens, cost and mean latency, newest version first."""
        query = (
            select(
                UsageLog.template_version,
                func.count(),
                func.sum(case((UsageLog.status == "error", 1), else_=0)),
                func.coalesce(func.sum(UsageLog.prompt_tokens), 0),
                func.coalesce(func.sum(UsageLog.completion_tokens), 0),
                func.coalesce(func.sum(type_coerce(UsageLog.cost, BigInteger)), 0),  # exact nano-dollars
                func.avg(UsageLog.latency_ms),
            )
            .where(UsageLog.template_name == name, UsageLog.template_version.is_not(None))
            .group_by(UsageLog.template_version)
            .order_by(UsageLog.template_version.desc())
        )
        if self._writer is not None:  # calls just made are still on their way to the log
            await self._writer.flush()
        async with self._database.session() as session:
            await _find(session, name)
            rows = (await session.execute(query)).all()
        return [
            VersionStats(
                version=int(row[0]),
                requests=int(row[1]),
                errors=int(row[2] or 0),
                prompt_tokens=int(row[3]),
                completion_tokens=int(row[4]),
                cost=nanos_to_usd(int(row[5])),
                avg_latency_ms=float(row[6]) if row[6] is not None else None,
            )
            for row in rows
        ]

    # Last in the class: below it, `list` would name this method in annotations.
    async def list(self, *, search: str | None = None) -> list[TemplateView]:
        query = select(PromptTemplate).order_by(PromptTemplate.name)
        if search and search.strip():
            query = query.where(PromptTemplate.name.contains(search.strip().lower(), autoescape=True))
        async with self._database.session() as session:
            rows = (await session.scalars(query)).all()
            labels = await _labels(session, [row.id for row in rows])
        return [_template_view(row, labels.get(row.id, {})) for row in rows]


def parse_reference(reference: str) -> tuple[str, str | int | None]:
    """`name` → (name, None); `name@production` → (name, "production"); `name@3` → (name, 3)."""
    name, at, selector = reference.strip().partition("@")
    if not name:
        raise InvalidInputError("template must be 'name', 'name@label' or 'name@version'", field="template")
    if not at:
        return name, None
    if selector.isdigit():
        return name, int(selector)
    if not selector:
        raise InvalidInputError("template must be 'name', 'name@label' or 'name@version'", field="template")
    return name, selector


async def _resolve(session: AsyncSession, template: PromptTemplate, selector: str | int | None) -> int:
    if isinstance(selector, int):
        return selector
    if selector == LATEST:
        return template.latest_version
    label = PRODUCTION if selector is None else selector
    version = await session.scalar(
        select(PromptTemplateLabel.version).where(
            PromptTemplateLabel.template_id == template.id, PromptTemplateLabel.label == label
        )
    )
    if version is not None:
        return int(version)
    if selector is None:
        return template.latest_version
    raise NotFoundError(f"template {template.name!r} has no label {label!r}")


async def _next_version(session: AsyncSession, template_id: int) -> int:
    """One atomic increment: two editors saving at once get two versions, never one clash."""
    statement = (
        update(PromptTemplate)
        .where(PromptTemplate.id == template_id)
        .values(latest_version=PromptTemplate.latest_version + 1, updated_at=utcnow())
        .returning(PromptTemplate.latest_version)
    )
    return int((await session.execute(statement)).scalar_one())


async def _find_or_none(session: AsyncSession, name: str) -> PromptTemplate | None:
    return await session.scalar(select(PromptTemplate).where(PromptTemplate.name == name))


async def _find(session: AsyncSession, name: str) -> PromptTemplate:
    row = await _find_or_none(session, name)
    if row is None:
        raise NotFoundError(f"template {name!r} not found")
    return row


async def _configuration_id(session: AsyncSession, slug: str | None) -> int | None:
    if not slug:
        return None
    found = await session.scalar(select(LLMConfiguration.id).where(LLMConfiguration.slug == slug))
    if found is None:
        raise NotFoundError(f"configuration {slug!r} not found")
    return int(found)


async def _labels(session: AsyncSession, template_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    if not template_ids:
        return {}
    rows = await session.execute(
        select(PromptTemplateLabel.template_id, PromptTemplateLabel.label, PromptTemplateLabel.version).where(
            PromptTemplateLabel.template_id.in_(list(template_ids))
        )
    )
    found: dict[int, dict[str, int]] = {}
    for template_id, label, version in rows:
        found.setdefault(template_id, {})[label] = version
    return found


async def _version_view(session: AsyncSession, name: str, row: PromptTemplateVersion) -> TemplateVersionView:
    template = await session.get(PromptTemplate, row.template_id)
    assert template is not None
    labels = (await _labels(session, [template.id])).get(template.id, {})
    pointing = sorted(label for label, version in labels.items() if version == row.version)
    if row.version == template.latest_version:
        pointing.insert(0, LATEST)
    configuration = None
    if row.configuration_id is not None:
        configuration = await session.scalar(
            select(LLMConfiguration.slug).where(LLMConfiguration.id == row.configuration_id)
        )
    return TemplateVersionView(
        name=name,
        version=row.version,
        system=row.system,
        user=row.user,
        variables=parse_variable_specs(row.variables),
        configuration=configuration,
        params=dict(row.params or {}),
        note=row.note,
        created_by=row.created_by,
        created_at=row.created_at,
        labels=tuple(pointing),
    )


def _template_view(row: PromptTemplate, labels: dict[str, int]) -> TemplateView:
    return TemplateView(
        id=row.id,
        name=row.name,
        description=row.description,
        latest_version=row.latest_version,
        labels={LATEST: row.latest_version, **labels} if row.latest_version else dict(labels),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_name(name: str) -> None:
    if name in _RESERVED_NAMES:
        raise InvalidInputError(f"{name!r} is reserved (it names a page); choose another name", field="name")
    if not _NAME.match(name):
        raise InvalidInputError(
            "name must be 1-100 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="name",
        )


def _check_label(label: str) -> None:
    if label == LATEST:
        raise ConflictError("'latest' always points at the newest version; it cannot be moved")
    if not _LABEL.match(label):
        raise InvalidInputError(
            "label must be 1-50 lower-case letters, digits, '.', '_' or '-', starting with a letter",
            field="label",
        )
