"""The JSON shapes of the management API: `XCreate` / `XUpdate` request bodies, `XPublic` responses.

Conventions shared by every route under `/api`:

- **Money** (USD) is a JSON *string* holding the exact decimal amount in plain notation —
  `"0.0000171"`, `"12.5"`, `"0"` — never a float, which cannot hold most decimal amounts and
  would make sums drift. Amounts are exact to the nano-dollar they are stored as; read them with a
  decimal type. Request bodies accept the same strings (JSON numbers too, but strings are exact).
- **Times** are ISO 8601 in UTC (`2026-11-02T09:30:00.123456Z`); days are `YYYY-MM-DD`, UTC.
  Query parameters that take a time need an offset (`...Z`).
- **Lists** come as `{"data": [...]}`. The usage log, which grows without bound, is keyset
  paginated: its page adds `next_cursor`, to pass back as `cursor`; it is null on the last page.
- **Secrets never leave**: a configuration shows `has_api_key` and `api_key_hint` only; a token
  shows its prefix, and its secret appears once, in the response that created it.
- **Errors** have one shape, `{"error": {"message", "type", "code", "param"}}` (`server/errors.py`).
  Another application's object answers 404, exactly like a missing one.

Responses are built from the services' views with `model_validate(view)`; request bodies forbid
unknown fields so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

from llm_manager.services.tokens import Group

T = TypeVar("T")


def plain_decimal(value: Decimal) -> str:
    """`Decimal("5E-9")` as `"0.000000005"`: exact, and readable without a decimal library."""
    return format(value.normalize(), "f")


Usd = Annotated[
    Decimal,
    PlainSerializer(plain_decimal, return_type=str),
    Field(description='USD as an exact decimal string, e.g. "0.0000171".'),
]
Limit = Annotated[int, Field(ge=1)]


class Public(BaseModel):
    """A response body, read from a service's view (a dataclass) by attribute."""

    model_config = ConfigDict(from_attributes=True)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListOf(BaseModel, Generic[T]):
    data: list[T]


# --- applications -------------------------------------------------------------------------------


class ApplicationPublic(Public):
    id: int
    name: str
    description: str
    is_active: bool
    rpm_limit: int | None
    tpm_limit: int | None
    created_at: datetime


class ApplicationCreate(Request):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: str = ""
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None


class ApplicationUpdate(Request):
    """Only the fields sent change; a limit sent as null is lifted."""

    description: str | None = None
    is_active: bool | None = None
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None


# --- configurations -----------------------------------------------------------------------------


class PricePublic(Public):
    """USD per million tokens; unset cache prices fall back to `input`."""

    input: Usd
    output: Usd
    cache_read: Usd | None
    cache_write: Usd | None


class ConfigurationPublic(Public):
    id: int
    slug: str
    name: str
    provider: str
    provider_label: str
    is_demo: bool
    model: str
    base_url: str | None
    has_api_key: bool
    api_key_hint: str | None
    default_params: dict[str, Any]
    options: dict[str, Any]
    application: str | None
    """None for a global configuration, usable by every application."""
    is_active: bool
    is_default: bool
    fallbacks: list[str]
    price_override: PricePublic | None
    context_length: int | None
    rpm_limit: int | None
    tpm_limit: int | None
    created_at: datetime
    updated_at: datetime


class ConfigurationTestResult(Public):
    """A tiny real call through the whole pipeline, recorded in the usage log like any other."""

    status: str
    configuration: str
    provider: str
    model: str
    text: str
    finish_reason: str | None
    latency_ms: int
    ttft_ms: int | None
    log_id: str
    cost: Usd | None


class ModelPublic(Public):
    id: str
    name: str | None
    context_length: int | None
    owned_by: str | None


# --- tokens -------------------------------------------------------------------------------------


class TokenCreate(Request):
    application: Annotated[str, Field(min_length=1)] | None = None
    """Defaults to the caller's own application."""
    name: Annotated[str, Field(max_length=100)] = ""
    groups: Annotated[list[Group], Field(min_length=1)] = ["inference"]
    configurations: list[str] | None = None
    """Slugs the token may call; omitted means every configuration its application may use."""
    expires_at: AwareDatetime | None = None
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None


class TokenPublic(Public):
    id: int
    prefix: str
    name: str
    application: str
    application_id: int
    groups: list[str]
    configurations: list[str] | None
    rpm_limit: int | None
    tpm_limit: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    status: Literal["active", "revoked", "expired"]


class TokenIssued(BaseModel):
    secret: str
    """The whole token. Shown in this response only: store it now, it cannot be read again."""
    token: TokenPublic


# --- usage --------------------------------------------------------------------------------------


class UsagePublic(Public):
    id: str
    created_at: datetime
    operation: str
    configuration: str
    requested_configuration: str
    application_id: int | None
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    tokens_estimated: bool
    cost: Usd | None
    """None when the call could not be priced (`unpriced` is true)."""
    unpriced: bool
    latency_ms: int
    ttft_ms: int | None
    status: str
    error_class: str | None
    error_message: str | None
    finish_reason: str | None
    attempts: int
    response_chars: int


class UsagePage(BaseModel):
    data: list[UsagePublic]
    next_cursor: str | None
    """Pass as `cursor` for the next (older) page; null when this is the last one."""


# --- statistics ---------------------------------------------------------------------------------


class StatsTotalsPublic(Public):
    requests: int
    errors: int
    cancelled: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    total_tokens: int
    cost: Usd
    """USD of the priced calls; `unpriced_requests` calls are not in it."""
    unpriced_requests: int
    estimated_requests: int
    error_rate: float
    avg_latency_ms: float | None
    avg_ttft_ms: float | None


class StatsGroupPublic(StatsTotalsPublic):
    key: str | None
    """The provider, model, application name, configuration slug or day (YYYY-MM-DD)."""
    id: int | None
    """The application or configuration id, for those dimensions."""


class ModelStatsPublic(StatsTotalsPublic):
    provider: str
    model: str


# --- custom metrics -----------------------------------------------------------------------------


class MetricCreate(Request):
    name: str
    value: float | None = None
    data: dict[str, Any] | None = None
    log_id: str | None = None
    """The usage row (a call of the caller's application) the metric is about."""


class MetricRecorded(Public):
    """The answer to a POST: the metric is queued and written moments later, after its call's row."""

    id: str
    name: str
    value: float | None
    data: dict[str, Any] | None
    log_id: str | None = Field(validation_alias=AliasChoices("log_id", "usage_log_id"))
    application_id: int | None


class MetricPublic(MetricRecorded):
    created_at: datetime


# --- budgets ------------------------------------------------------------------------------------


class BudgetPublic(Public):
    id: int
    application: str
    application_id: int
    configuration: str | None
    token: str | None
    period: Literal["day", "month", "total"]
    limit_usd: Usd | None
    limit_tokens: int | None
    hard: bool
    window_start: date
    resets_at: datetime | None
    spent_usd: Usd
    spent_tokens: int
    reserved_usd: Usd
    reserved_tokens: int
    remaining_usd: Usd | None
    remaining_tokens: int | None
    scope: str


class BudgetEventPublic(Public):
    budget_id: int
    window_start: date
    threshold: int
    spent_usd: Usd
    spent_tokens: int
    created_at: datetime


class CeilingPublic(Public):
    tokens: int
    usd: Usd | None
    """None when the configuration has no price."""


class BudgetCheckPublic(Public):
    budget: BudgetPublic
    blocks_next_call: bool
    reason: str | None


class ExplanationPublic(Public):
    application: str
    configuration: str | None
    token: str | None
    next_call_ceiling: CeilingPublic | None
    checks: list[BudgetCheckPublic]
    allowed: bool
