"""Budgets: an application's spend limits, what they have left, and the guard that enforces them.

A budget limits an application's spend — optionally only through one configuration or one
token — per UTC day, month, or in total, in USD and/or tokens. Hard budgets refuse a call that
could exceed them; soft budgets never refuse, and crossing 50, 80 and 100 % of any budget
records one event each.

This module manages budgets and explains them; `budget_leases.BudgetLedger` holds, leases and
settles what calls take from their windows (see there for how that holds across processes).
Before a call the guard holds the call's ceiling (an upper bound on its prompt tokens, see
`token_bounds`, plus `max_tokens`, priced — a call without `max_tokens` is reserved with the
configuration's context length, or `DEFAULT_COMPLETION_CEILING` tokens) on every budget that
applies; after the call the hold becomes the real cost, and a failed call gives it back.

Which budgets apply to a caller (application, configuration, token) is cached per process for
`BUDGETS_TTL` seconds — most calls have none, and that answer costs no database round trip.
Setting or deleting a budget clears the cache and gives back this process's leases at once and,
with Redis, in every other process (the invalidation channel); a process that missed it (no
Redis, a CLI on the same SQLite file) sees it within `BUDGETS_TTL`. Reads (`get`, `list_all`,
`explain`, `events`) first write this process's queued settlements and give back its leases, so
they show what calls really spent and hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.base import utcnow
from llm_manager.db.session import Database
from llm_manager.db.tables import ApiToken, Application, Budget, BudgetEvent, BudgetWindow, LLMConfiguration
from llm_manager.errors import BudgetExceededError, InvalidInputError, NotFoundError
from llm_manager.services.accounting import UsageWriter
from llm_manager.services.applications import application_named, visible_configuration_id
from llm_manager.services.budget_leases import BudgetLedger, Refusal, Reservation
from llm_manager.services.budget_windows import BudgetRule, Ceiling, Hold, resets_at, window_start
from llm_manager.services.calls import Admission, ChatCall, ProviderFactory
from llm_manager.services.configurations import ResolvedConfiguration
from llm_manager.services.invalidation import Invalidations, TtlCache
from llm_manager.services.pricing import Pricing
from llm_manager.services.token_bounds import inputs_token_bound, prompt_token_bound
from llm_manager.types import Usage

Period = Literal["day", "month", "total"]
DEFAULT_COMPLETION_CEILING = 4096
"""Completion tokens reserved for a call that sets no `max_tokens` on a model of unknown size."""
HELD_BACK_RETRY_AFTER = 1.0
"""The `Retry-After` of a call refused while calls in flight hold the room it needs."""
BUDGETS_TTL = 1.0
"""Seconds a process may reuse the list of budgets that apply to a caller without asking the database."""
BUDGETS_TOPIC = "budgets"


class BudgetSpec(BaseModel):
    """What `budgets set` and `PUT /api/budgets` take. Setting a scope and period again replaces it."""

    model_config = ConfigDict(extra="forbid")

    application: Annotated[str, Field(min_length=1)]
    configuration: str | None = None
    token: str | None = None
    """A token prefix (`llmm_1a2b3c4d`)."""
    period: Period
    limit_usd: Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=9)] | None = None
    limit_tokens: Annotated[int, Field(ge=1)] | None = None
    hard: bool = True

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetSpec:
        if self.limit_usd is None and self.limit_tokens is None:
            raise ValueError("set limit_usd and/or limit_tokens")
        if self.configuration and self.token:
            raise ValueError("a budget is scoped to a configuration or to a token, not both")
        return self


@dataclass(frozen=True, kw_only=True)
class BudgetView:
    id: int
    application: str
    application_id: int
    configuration: str | None
    token: str | None
    period: Period
    limit_usd: Decimal | None
    limit_tokens: int | None
    hard: bool
    window_start: date
    resets_at: datetime | None
    spent_usd: Decimal
    spent_tokens: int
    reserved_usd: Decimal
    reserved_tokens: int

    @property
    def remaining_usd(self) -> Decimal | None:
        if self.limit_usd is None:
            return None
        return max(self.limit_usd - self.spent_usd - self.reserved_usd, Decimal(0))

    @property
    def remaining_tokens(self) -> int | None:
        if self.limit_tokens is None:
            return None
        return max(self.limit_tokens - self.spent_tokens - self.reserved_tokens, 0)

    @property
    def scope(self) -> str:
        if self.configuration:
            return f"application {self.application}, configuration {self.configuration}"
        if self.token:
            return f"application {self.application}, token {self.token}"
        return f"application {self.application}"


@dataclass(frozen=True, kw_only=True)
class BudgetEventView:
    budget_id: int
    window_start: date
    threshold: int
    spent_usd: Decimal
    spent_tokens: int
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class BudgetCheck:
    budget: BudgetView
    blocks_next_call: bool
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """Which limits apply to a caller, what is left, and what would refuse its next call."""

    application: str
    configuration: str | None
    token: str | None
    next_call_ceiling: Ceiling | None
    checks: tuple[BudgetCheck, ...]

    @property
    def allowed(self) -> bool:
        return not any(check.blocks_next_call for check in self.checks)


_CallerKey = tuple[int, int | None, int | None]
"""(application id, configuration id, token id)."""


class BudgetService:
    def __init__(
        self,
        database: Database,
        pricing: Pricing,
        providers: ProviderFactory,
        *,
        writer: UsageWriter | None = None,
        invalidations: Invalidations | None = None,
    ) -> None:
        self._database = database
        self._pricing = pricing
        self._providers = providers
        self._writer = writer
        self._invalidations = invalidations or Invalidations()
        self._applicable: TtlCache[_CallerKey, tuple[BudgetRule, ...]] = TtlCache(BUDGETS_TTL)
        self.ledger = BudgetLedger(database, writer=writer)
        self._invalidations.subscribe(BUDGETS_TOPIC, self._forget)

    def _forget(self) -> None:
        self._applicable.clear()
        self.ledger.forget()

    async def aclose(self) -> None:
        """Give back this process's leases; call once the usage writer has written everything."""
        await self._applicable.aclose()
        await self.ledger.aclose()

    async def set(self, spec: BudgetSpec, *, application_id: int | None = None) -> BudgetView:
        """Create the budget for this scope and period, or replace its limits (spend is kept)."""
        await self._settle_pending()
        async with self._database.session() as session:
            app = await application_named(session, spec.application, scope=application_id)
            configuration_id = (
                await visible_configuration_id(session, spec.configuration, app.id, field="configuration")
                if spec.configuration
                else None
            )
            token_id = await _token_id(session, spec.token, app.id)
            budget = await session.scalar(
                select(Budget).where(
                    Budget.application_id == app.id,
                    _is(Budget.configuration_id, configuration_id),
                    _is(Budget.token_id, token_id),
                    Budget.period == spec.period,
                )
            )
            if budget is None:
                budget = Budget(
                    application_id=app.id,
                    configuration_id=configuration_id,
                    token_id=token_id,
                    period=spec.period,
                )
                session.add(budget)
            budget.limit_usd = spec.limit_usd
            budget.limit_tokens = spec.limit_tokens
            budget.hard = spec.hard
            await session.flush()
            view = (await self._views(session, [budget]))[0]
        await self._invalidations.publish(BUDGETS_TOPIC)  # after the commit: a reload sees the change
        return view

    async def list_all(self, *, application_id: int | None = None) -> list[BudgetView]:
        query = select(Budget).order_by(Budget.application_id, Budget.id)
        if application_id is not None:
            query = query.where(Budget.application_id == application_id)
        await self._settle_pending()
        async with self._database.session() as session:
            return await self._views(session, (await session.scalars(query)).all())

    async def get(self, budget_id: int, *, application_id: int | None = None) -> BudgetView:
        await self._settle_pending()
        async with self._database.session() as session:
            budget = await _budget(session, budget_id, application_id)
            return (await self._views(session, [budget]))[0]

    async def delete(self, budget_id: int, *, application_id: int | None = None) -> None:
        async with self._database.session() as session:
            await session.delete(await _budget(session, budget_id, application_id))
        await self._invalidations.publish(BUDGETS_TOPIC)

    async def events(
        self, *, application_id: int | None = None, budget_id: int | None = None, limit: int = 100
    ) -> list[BudgetEventView]:
        query = select(BudgetEvent).join(Budget).order_by(BudgetEvent.created_at.desc()).limit(limit)
        if application_id is not None:
            query = query.where(Budget.application_id == application_id)
        if budget_id is not None:
            query = query.where(BudgetEvent.budget_id == budget_id)
        await self._settle_pending()
        async with self._database.session() as session:
            rows = (await session.scalars(query)).all()
        return [
            BudgetEventView(
                budget_id=row.budget_id,
                window_start=row.window_start,
                threshold=row.threshold,
                spent_usd=row.spent_usd,
                spent_tokens=row.spent_tokens,
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def explain(
        self,
        application: str,
        *,
        configuration: ResolvedConfiguration | None = None,
        token: str | None = None,
        application_id: int | None = None,
    ) -> Explanation:
        """Every budget that applies to calls by this caller, with what would refuse the next one.

        With a configuration, the next call's ceiling is its default `max_tokens` (or context
        length) over a short prompt, priced like a real reservation.
        """
        await self._settle_pending()
        async with self._database.session() as session:
            app = await application_named(session, application, scope=application_id)
            token_id = await _token_id(session, token, app.id)
            budgets = await _applicable_budgets(
                session, app.id, configuration.id if configuration else None, token_id
            )
            if configuration is None:
                budgets = [budget for budget in budgets if budget.configuration_id is None]
            views = await self._views(session, budgets)
        ceiling = self.ceiling(configuration, prompt_tokens=0, params_max=None) if configuration else None
        checks = tuple(_check(view, ceiling) for view in views)
        return Explanation(
            application=app.name,
            configuration=configuration.slug if configuration else None,
            token=token,
            next_call_ceiling=ceiling,
            checks=checks,
        )

    def ceiling(
        self, configuration: ResolvedConfiguration, *, prompt_tokens: int, params_max: int | None
    ) -> Ceiling:
        completion = configuration.params.max_tokens if params_max is None else params_max
        if completion is None:
            completion = configuration.context_length or DEFAULT_COMPLETION_CEILING
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion)
        quote = self._pricing.quote(
            provider=configuration.provider,
            model=configuration.model,
            usage=usage,
            free=self._providers.is_free(configuration),
            override=configuration.price_override,
        )
        return Ceiling(tokens=prompt_tokens + completion, usd=quote.cost)

    async def reserve(self, configuration: ResolvedConfiguration, call: ChatCall) -> Reservation | None:
        """Hold the call's ceiling on every budget that applies, or refuse it; None if none apply."""
        application_id = call.context.application_id
        if application_id is None:
            return None
        budgets = await self._rules((application_id, configuration.id, call.context.token_id))
        if not budgets:
            return None
        ceiling = self._call_ceiling(configuration, call)
        now = utcnow()
        holds = [
            Hold(budget=budget, start=window_start(budget.period, now), ceiling=ceiling) for budget in budgets
        ]
        for hold in holds:
            if hold.budget.hard and hold.budget.limit_usd is not None and ceiling.usd is None:
                raise BudgetExceededError(
                    f"configuration {configuration.slug!r} has no price, so the USD budget on "
                    f"{_scope_text(hold.budget)} cannot be enforced; set a price override on the configuration"
                )
        held = await self.ledger.reserve(holds)
        if isinstance(held, Refusal):
            raise _held_back(held.hold) if held.held_back else _exceeded(held.hold, now)
        return held

    async def _rules(self, key: _CallerKey) -> tuple[BudgetRule, ...]:
        """The budgets that apply to a caller, from the per-process cache when it is fresh."""
        return await self._applicable.get_or_load(key, lambda: self._load_rules(key))

    async def _load_rules(self, key: _CallerKey) -> tuple[BudgetRule, ...]:
        async with self._database.read_session() as session:
            return tuple(BudgetRule.of(budget) for budget in await _applicable_budgets(session, *key))

    def _call_ceiling(self, configuration: ResolvedConfiguration, call: ChatCall) -> Ceiling:
        """The most the call may cost: an upper bound on its prompt (not an estimate), so no call's
        real cost overruns its hold however many run at once."""
        if call.operation == "embed":
            inputs = inputs_token_bound(message.content or "" for message in call.messages)
            return self.ceiling(configuration, prompt_tokens=inputs, params_max=0)
        prompt_tokens = prompt_token_bound(call.messages, call.tools)
        params_max = configuration.params.merged(call.overrides).max_tokens
        return self.ceiling(configuration, prompt_tokens=prompt_tokens, params_max=params_max)

    async def _settle_pending(self) -> None:
        """Write this process's queued settlements and give back its leases, so a read shows what
        calls spent and what calls in flight hold."""
        if self._writer is not None:
            await self._writer.flush()
        await self.ledger.give_back()

    async def _views(self, session: AsyncSession, budgets: Sequence[Budget]) -> list[BudgetView]:
        now = utcnow()
        views = []
        for budget in budgets:
            start = window_start(budget.period, now)
            window = await session.get(BudgetWindow, (budget.id, start))
            app = await session.get(Application, budget.application_id)
            configuration = (
                await session.get(LLMConfiguration, budget.configuration_id)
                if budget.configuration_id
                else None
            )
            token = await session.get(ApiToken, budget.token_id) if budget.token_id else None
            assert app is not None
            views.append(
                BudgetView(
                    id=budget.id,
                    application=app.name,
                    application_id=app.id,
                    configuration=configuration.slug if configuration else None,
                    token=token.prefix if token else None,
                    period=budget.period,  # type: ignore[arg-type]
                    limit_usd=budget.limit_usd,
                    limit_tokens=budget.limit_tokens,
                    hard=budget.hard,
                    window_start=start,
                    resets_at=resets_at(budget.period, start),
                    spent_usd=window.spent_usd if window else Decimal(0),
                    spent_tokens=window.spent_tokens if window else 0,
                    reserved_usd=window.reserved_usd if window else Decimal(0),
                    reserved_tokens=window.reserved_tokens if window else 0,
                )
            )
        return views


class BudgetGuard:
    """The pipeline guard: reserve before each attempt's configuration, settle or release after."""

    def __init__(self, budgets: BudgetService) -> None:
        self._budgets = budgets

    async def admit(self, configuration: ResolvedConfiguration, call: ChatCall) -> Admission | None:
        return await self._budgets.reserve(configuration, call)


async def _applicable_budgets(
    session: AsyncSession, application_id: int, configuration_id: int | None, token_id: int | None
) -> list[Budget]:
    query = select(Budget).where(
        Budget.application_id == application_id,
        or_(Budget.configuration_id.is_(None), Budget.configuration_id == configuration_id),
        or_(Budget.token_id.is_(None), Budget.token_id == token_id),
    )
    return list((await session.scalars(query.order_by(Budget.id))).all())


_PERIOD_WORDS = {"day": "daily", "month": "monthly", "total": "total"}


def _exceeded(hold: Hold, now: datetime) -> BudgetExceededError:
    budget = hold.budget
    reset = resets_at(budget.period, hold.start)
    limits = []
    if budget.limit_usd is not None:
        limits.append(f"${budget.limit_usd.normalize():f}")
    if budget.limit_tokens is not None:
        limits.append(f"{budget.limit_tokens:,} tokens")
    when = f"; it resets at {reset:%Y-%m-%d %H:%M} UTC" if reset else ""
    period = _PERIOD_WORDS[budget.period]
    return BudgetExceededError(
        f"the {period} budget of {' / '.join(limits)} on {_scope_text(budget)} would be exceeded by this "
        f"call (reserving up to {hold.ceiling.tokens:,} tokens){when}",
        retry_after=(reset - now).total_seconds() if reset else None,
    )


def _held_back(hold: Hold) -> BudgetExceededError:
    period = _PERIOD_WORDS[hold.budget.period]
    return BudgetExceededError(
        f"the {period} budget on {_scope_text(hold.budget)} has room left, but calls in flight hold it "
        f"(this call would reserve up to {hold.ceiling.tokens:,} tokens); retry in a moment",
        retry_after=HELD_BACK_RETRY_AFTER,
    )


def _check(view: BudgetView, ceiling: Ceiling | None) -> BudgetCheck:
    reasons = []
    usd_need = ceiling.usd if ceiling and ceiling.usd is not None else Decimal(0)
    tokens_need = ceiling.tokens if ceiling else 0
    if view.limit_usd is not None and ceiling is not None and ceiling.usd is None:
        reasons.append("the configuration has no price; a USD budget needs a price override")
    if view.remaining_usd is not None and (view.remaining_usd <= 0 or view.remaining_usd < usd_need):
        reasons.append(f"${view.remaining_usd:f} left, the next call may cost up to ${usd_need:f}")
    if view.remaining_tokens is not None and (
        view.remaining_tokens <= 0 or view.remaining_tokens < tokens_need
    ):
        reasons.append(f"{view.remaining_tokens:,} tokens left, the next call may use up to {tokens_need:,}")
    blocks = view.hard and bool(reasons)
    return BudgetCheck(budget=view, blocks_next_call=blocks, reason="; ".join(reasons) or None)


def _scope_text(budget: BudgetRule) -> str:
    parts = [f"application {budget.application_id}"]
    if budget.configuration_id:
        parts.append(f"configuration {budget.configuration_id}")
    if budget.token_id:
        parts.append(f"token {budget.token_id}")
    return ", ".join(parts)


def _is(column: Any, value: int | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]


async def _token_id(session: AsyncSession, prefix: str | None, application_id: int) -> int | None:
    if not prefix:
        return None
    token = await session.scalar(
        select(ApiToken).where(ApiToken.prefix == prefix, ApiToken.application_id == application_id)
    )
    if token is None:
        raise InvalidInputError(f"token {prefix!r} not found in this application", field="token")
    return token.id


async def _budget(session: AsyncSession, budget_id: int, application_id: int | None) -> Budget:
    budget = await session.get(Budget, budget_id)
    if budget is None or (application_id is not None and budget.application_id != application_id):
        raise NotFoundError(f"budget {budget_id} not found")
    return budget
