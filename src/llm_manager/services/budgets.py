"""Budgets that hold across processes: reserve before the call, settle after, release on failure.

A budget limits an application's spend — optionally only through one configuration or one
token — per UTC day, month, or in total, in USD and/or tokens. Each period has a window row
holding what was *spent* and what is *reserved* by calls in flight.

Before a call, the guard reserves the call's ceiling (estimated prompt tokens plus `max_tokens`,
priced) on every hard budget that applies, with one conditional `UPDATE ... WHERE spent + reserved
+ ceiling <= limit` per budget in a single transaction: the database serialises concurrent
reservations, so any number of server processes together stay within the limit (plus at most the
difference by which one call's real cost exceeds its ceiling — a call without `max_tokens` is
reserved with the configuration's context length, or `DEFAULT_COMPLETION_CEILING` tokens).
After the call the reservation is replaced by the real cost; a failed call releases it.

Soft budgets never refuse; crossing 50, 80 and 100 % of any budget records one event each.

The hot path is kept to one transaction per call. Which budgets apply to a caller (application,
configuration, token) is cached per process for `BUDGETS_TTL` seconds — most calls have none, and
that answer costs no database round trip. Setting or deleting a budget clears the cache in this
process at once and, with Redis, in every other process (the invalidation channel); a process
that missed it (no Redis, a CLI on the same SQLite file) sees it within `BUDGETS_TTL`. The
settlement is queued on the usage writer and runs in the transaction that writes the call's usage
row (within the writer's flush interval): until then the reservation — never less than the call's
cost, except for a call exceeding its ceiling — keeps being held, which can only refuse more,
never less. A refusal first flushes this process's pending settlements and tries once more, so
calls made one after the other in one process see each other's real cost; the other
methods (`set`, `get`, `list_all`, `explain`, `events`) flush first too.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import BigInteger, ColumnElement, and_, or_, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.base import utcnow
from llm_manager.db.session import Database, conflict_insert
from llm_manager.db.tables import ApiToken, Application, Budget, BudgetEvent, BudgetWindow, LLMConfiguration
from llm_manager.errors import BudgetExceededError, InvalidInputError, NotFoundError
from llm_manager.providers._wire import estimate_tokens
from llm_manager.services.accounting import UsageWriter
from llm_manager.services.applications import application_named, visible_configuration_id
from llm_manager.services.calls import Admission, ChatCall, ProviderFactory
from llm_manager.services.configurations import ResolvedConfiguration
from llm_manager.services.invalidation import Invalidations, TtlCache
from llm_manager.services.pricing import Pricing
from llm_manager.types import Usage

Period = Literal["day", "month", "total"]
THRESHOLDS = (50, 80, 100)
DEFAULT_COMPLETION_CEILING = 4096
"""Completion tokens reserved for a call that sets no `max_tokens` on a model of unknown size."""
BUDGETS_TTL = 1.0
"""Seconds a process may reuse the list of budgets that apply to a caller without asking the database."""
BUDGETS_TOPIC = "budgets"
_EPOCH = date(1970, 1, 1)
_NANOS = Decimal(1_000_000_000)


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
class Ceiling:
    """What one call may cost at most: the amount a reservation holds."""

    tokens: int
    usd: Decimal | None
    """None when the configuration has no price (and no override)."""


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


def window_start(period: str, now: datetime) -> date:
    today = now.astimezone(UTC).date()
    if period == "day":
        return today
    if period == "month":
        return today.replace(day=1)
    return _EPOCH


def resets_at(period: str, start: date) -> datetime | None:
    if period == "day":
        following = start + timedelta(days=1)
    elif period == "month":
        following = start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
    else:
        return None
    return datetime(following.year, following.month, following.day, tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class BudgetRule:
    """A budget's limits as the hot path needs them: a plain snapshot, safe to share between calls."""

    id: int
    application_id: int
    configuration_id: int | None
    token_id: int | None
    period: str
    limit_usd: Decimal | None
    limit_tokens: int | None
    hard: bool

    @classmethod
    def of(cls, budget: Budget) -> BudgetRule:
        return cls(
            id=budget.id,
            application_id=budget.application_id,
            configuration_id=budget.configuration_id,
            token_id=budget.token_id,
            period=budget.period,
            limit_usd=budget.limit_usd,
            limit_tokens=budget.limit_tokens,
            hard=budget.hard,
        )


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
        self._windows: set[tuple[int, date]] = set()
        """Windows known to exist, so a reservation needs no INSERT first (forgotten on any doubt)."""
        self._invalidations.subscribe(BUDGETS_TOPIC, self._forget)

    def _forget(self) -> None:
        self._applicable.clear()
        self._windows.clear()

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
            _Hold(budget=budget, start=window_start(budget.period, now), ceiling=ceiling)
            for budget in budgets
        ]
        for hold in holds:
            if hold.budget.hard and hold.budget.limit_usd is not None and ceiling.usd is None:
                raise BudgetExceededError(
                    f"configuration {configuration.slug!r} has no price, so the USD budget on "
                    f"{_scope_text(hold.budget)} cannot be enforced; set a price override on the configuration"
                )
        refused = await self._try_hold(holds)
        if refused is not None:
            # Our own settlements may still be queued (holding full ceilings), or a window we
            # believed in may be gone: write them, forget the windows, and decide once more.
            await self._settle_pending()
            self._windows.clear()
            refused = await self._try_hold(holds)
        if refused is not None:
            raise _exceeded(refused, now)
        return Reservation(self._database, holds, writer=self._writer)

    async def _rules(self, key: _CallerKey) -> tuple[BudgetRule, ...]:
        """The budgets that apply to a caller, from the per-process cache when it is fresh."""
        cached = self._applicable.get(key)
        if cached is not None:
            return cached
        generation = self._applicable.generation
        async with self._database.session() as session:
            rules = tuple(BudgetRule.of(budget) for budget in await _applicable_budgets(session, *key))
        self._applicable.put(key, rules, generation=generation)
        return rules

    def _call_ceiling(self, configuration: ResolvedConfiguration, call: ChatCall) -> Ceiling:
        prompt_tokens = sum(estimate_tokens(message.content or "") for message in call.messages)
        if call.operation == "embed":
            return self.ceiling(configuration, prompt_tokens=prompt_tokens, params_max=0)
        params_max = configuration.params.merged(call.overrides).max_tokens
        return self.ceiling(configuration, prompt_tokens=prompt_tokens, params_max=params_max)

    async def _try_hold(self, holds: Sequence[_Hold]) -> _Hold | None:
        """Reserve on every hold in one transaction; the hold that refused (all rolled back) or None."""
        try:
            async with self._database.session() as session:
                missing = [hold for hold in holds if (hold.budget.id, hold.start) not in self._windows]
                if missing:
                    await _ensure_windows(session, missing)
                for hold in holds:
                    if not await _try_reserve(session, hold):
                        raise _RefusedError(hold)  # leaving the block rolls back the holds already taken
        except _RefusedError as refusal:
            return refusal.hold
        self._windows.update((hold.budget.id, hold.start) for hold in holds)
        return None

    async def _settle_pending(self) -> None:
        """Write the settlements this process has queued, so what is read next includes them."""
        if self._writer is not None:
            await self._writer.flush()

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


class _RefusedError(Exception):
    def __init__(self, hold: _Hold) -> None:
        self.hold = hold


class BudgetGuard:
    """The pipeline guard: reserve before each attempt's configuration, settle or release after."""

    def __init__(self, budgets: BudgetService) -> None:
        self._budgets = budgets

    async def admit(self, configuration: ResolvedConfiguration, call: ChatCall) -> Admission | None:
        return await self._budgets.reserve(configuration, call)


@dataclass(frozen=True, kw_only=True)
class _Hold:
    budget: BudgetRule
    start: date
    ceiling: Ceiling

    @property
    def usd_nanos(self) -> int:
        return _nanos(self.ceiling.usd) if self.budget.limit_usd is not None and self.ceiling.usd else 0

    @property
    def tokens(self) -> int:
        return self.ceiling.tokens if self.budget.limit_tokens is not None else 0


class Reservation:
    """The budget holds of one call: `settle` books the real cost, `release` gives them back.

    With a writer, the settlement is queued to run in the writer's next batch transaction (see
    the module docstring); a release is written at once, since it gives capacity back.
    """

    def __init__(
        self, database: Database, holds: Sequence[_Hold], *, writer: UsageWriter | None = None
    ) -> None:
        self._database = database
        self._holds = tuple(holds)
        self._writer = writer
        self._done = False

    async def settle(self, usage: Usage, cost: Decimal | None) -> None:
        if self._done:
            return
        self._done = True
        settlement = _Settlement(
            holds=self._holds, tokens=usage.prompt_tokens + usage.completion_tokens, cost_nanos=_nanos(cost)
        )
        if self._writer is not None:
            await self._writer.put(settlement)
            return
        async with self._database.session() as session:
            await settlement.write(session)

    async def release(self) -> None:
        if self._done:
            return
        self._done = True
        async with self._database.session() as session:
            await _Settlement(holds=self._holds, tokens=0, cost_nanos=0).write(session)


@dataclass(frozen=True, kw_only=True)
class _Settlement:
    """Replace a call's holds by what it really cost (nothing, for a release); a `DeferredWrite`."""

    holds: tuple[_Hold, ...]
    tokens: int
    cost_nanos: int

    async def write(self, session: AsyncSession) -> None:
        await self.write_all(session, [self])

    @classmethod
    async def write_all(cls, session: AsyncSession, writes: Sequence[_Settlement]) -> None:
        """Settle many calls with one UPDATE per budget window (the writer batches them)."""
        changes: dict[tuple[int, date], _WindowChange] = {}
        for settlement in writes:
            for hold in settlement.holds:
                change = changes.setdefault((hold.budget.id, hold.start), _WindowChange(hold=hold))
                change.add(hold, tokens=settlement.tokens, cost_nanos=settlement.cost_nanos)
        for change in changes.values():
            await change.write(session)


@dataclass(kw_only=True)
class _WindowChange:
    """The sum of several settlements on one budget window."""

    hold: _Hold
    reserved_nanos: int = 0
    reserved_tokens: int = 0
    spent_nanos: int = 0
    spent_tokens: int = 0

    def add(self, hold: _Hold, *, tokens: int, cost_nanos: int) -> None:
        self.reserved_nanos += hold.usd_nanos
        self.reserved_tokens += hold.tokens
        self.spent_nanos += cost_nanos
        self.spent_tokens += tokens

    async def write(self, session: AsyncSession) -> None:
        spent_usd = type_coerce(BudgetWindow.spent_usd, BigInteger)
        reserved_usd = type_coerce(BudgetWindow.reserved_usd, BigInteger)
        result = await session.execute(
            update(BudgetWindow)
            .where(*_window(self.hold))
            .values(
                {
                    reserved_usd: reserved_usd - self.reserved_nanos,
                    BudgetWindow.reserved_tokens: BudgetWindow.reserved_tokens - self.reserved_tokens,
                    spent_usd: spent_usd + self.spent_nanos,
                    BudgetWindow.spent_tokens: BudgetWindow.spent_tokens + self.spent_tokens,
                }
            )
            .returning(spent_usd, BudgetWindow.spent_tokens)
        )
        row = result.first()
        if row is not None and (self.spent_tokens or self.spent_nanos):
            await _record_alerts(session, self.hold, spent_nanos=int(row[0]), spent_tokens=int(row[1]))


async def _applicable_budgets(
    session: AsyncSession, application_id: int, configuration_id: int | None, token_id: int | None
) -> list[Budget]:
    query = select(Budget).where(
        Budget.application_id == application_id,
        or_(Budget.configuration_id.is_(None), Budget.configuration_id == configuration_id),
        or_(Budget.token_id.is_(None), Budget.token_id == token_id),
    )
    return list((await session.scalars(query.order_by(Budget.id))).all())


async def _ensure_windows(session: AsyncSession, holds: Sequence[_Hold]) -> None:
    """Create missing windows first: the first statement writes, so SQLite takes its lock at once."""
    rows = [{"budget_id": hold.budget.id, "window_start": hold.start} for hold in holds]
    await session.execute(conflict_insert(session, BudgetWindow).values(rows).on_conflict_do_nothing())


async def _try_reserve(session: AsyncSession, hold: _Hold) -> bool:
    spent_usd = type_coerce(BudgetWindow.spent_usd, BigInteger)
    reserved_usd = type_coerce(BudgetWindow.reserved_usd, BigInteger)
    conditions: list[ColumnElement[bool]] = list(_window(hold))
    if hold.budget.hard and hold.budget.limit_usd is not None:
        conditions.append(spent_usd + reserved_usd + hold.usd_nanos <= _nanos(hold.budget.limit_usd))
    if hold.budget.hard and hold.budget.limit_tokens is not None:
        conditions.append(
            BudgetWindow.spent_tokens + BudgetWindow.reserved_tokens + hold.tokens <= hold.budget.limit_tokens
        )
    result = await session.execute(
        update(BudgetWindow)
        .where(and_(*conditions))
        .values(
            {
                reserved_usd: reserved_usd + hold.usd_nanos,
                BudgetWindow.reserved_tokens: BudgetWindow.reserved_tokens + hold.tokens,
            }
        )
        .returning(BudgetWindow.budget_id)
    )
    return result.first() is not None


async def _record_alerts(session: AsyncSession, hold: _Hold, *, spent_nanos: int, spent_tokens: int) -> None:
    """One event per threshold crossed, recorded once per window (a unique key drops repeats)."""
    budget = hold.budget
    fractions = []
    if budget.limit_usd is not None:
        fractions.append(Decimal(spent_nanos) / _nanos(budget.limit_usd))
    if budget.limit_tokens is not None:
        fractions.append(Decimal(spent_tokens) / budget.limit_tokens)
    reached = [threshold for threshold in THRESHOLDS if max(fractions) * 100 >= threshold]
    if not reached:
        return
    rows = [
        {
            "budget_id": budget.id,
            "window_start": hold.start,
            "threshold": threshold,
            "spent_usd": Decimal(spent_nanos) / _NANOS,
            "spent_tokens": spent_tokens,
        }
        for threshold in reached
    ]
    await session.execute(conflict_insert(session, BudgetEvent).values(rows).on_conflict_do_nothing())


def _window(hold: _Hold) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return BudgetWindow.budget_id == hold.budget.id, BudgetWindow.window_start == hold.start


def _exceeded(hold: _Hold, now: datetime) -> BudgetExceededError:
    budget = hold.budget
    reset = resets_at(budget.period, hold.start)
    limits = []
    if budget.limit_usd is not None:
        limits.append(f"${budget.limit_usd.normalize():f}")
    if budget.limit_tokens is not None:
        limits.append(f"{budget.limit_tokens:,} tokens")
    when = f"; it resets at {reset:%Y-%m-%d %H:%M} UTC" if reset else ""
    period = {"day": "daily", "month": "monthly", "total": "total"}[budget.period]
    return BudgetExceededError(
        f"the {period} budget of {' / '.join(limits)} on {_scope_text(budget)} would be exceeded by this "
        f"call (reserving up to {hold.ceiling.tokens:,} tokens){when}",
        retry_after=(reset - now).total_seconds() if reset else None,
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


def _nanos(amount: Decimal | None) -> int:
    return int((Decimal(amount or 0) * _NANOS).to_integral_value())


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
