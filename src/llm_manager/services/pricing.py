"""What a call cost, from an offline price table, a provider's own report, or an override.

Precedence: the configuration's price override, then the cost the provider reported (OpenRouter
bills exactly that), then the genai-prices table. Providers that are free by definition (local
Ollama, the demo) cost zero. Anything else is *unpriced*: `None`, never a silent $0.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from llm_manager._lazy import lazy_import
from llm_manager.types import Usage

if TYPE_CHECKING:
    import genai_prices
else:
    genai_prices = lazy_import(
        "genai_prices"
    )  # its table loads on the first table price: see llm_manager._lazy

_MILLION = Decimal(1_000_000)
_TABLE_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "openrouter": "openrouter"}


@dataclass(frozen=True, kw_only=True)
class PriceOverride:
    """USD per million tokens, set on a configuration. Unset cache prices fall back to input."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        uncached = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
        cache_read = self.cache_read if self.cache_read is not None else self.input
        cache_write = self.cache_write if self.cache_write is not None else self.input
        total = (
            uncached * self.input
            + usage.cached_tokens * cache_read
            + usage.cache_write_tokens * cache_write
            + usage.completion_tokens * self.output
        )
        return total / _MILLION


@dataclass(frozen=True, kw_only=True)
class CostQuote:
    cost: Decimal | None
    source: str
    """"override", "provider", "table", "free" or "unpriced"."""

    @property
    def unpriced(self) -> bool:
        return self.cost is None


class Pricing:
    """Prices calls. Stateless apart from a memo of which models the table knows."""

    def quote(
        self, *, provider: str, model: str, usage: Usage, free: bool, override: PriceOverride | None
    ) -> CostQuote:
        if override is not None:
            return CostQuote(cost=override.cost(usage), source="override")
        if usage.reported_cost is not None:
            return CostQuote(cost=usage.reported_cost, source="provider")
        if free:
            return CostQuote(cost=Decimal(0), source="free")
        table_cost = _table_cost(provider, model, usage)
        if table_cost is None:
            return CostQuote(cost=None, source="unpriced")
        return CostQuote(cost=table_cost, source="table")

    def is_priced(self, *, provider: str, model: str, free: bool, override: PriceOverride | None) -> bool:
        return free or override is not None or _known_model(provider, model)

    def context_length(self, *, provider: str, model: str) -> int | None:
        return _context_window(provider, model)


def _table_cost(provider: str, model: str, usage: Usage) -> Decimal | None:
    provider_id = _TABLE_PROVIDER_IDS.get(provider)
    if provider_id is None or not _known_model(provider, model):
        return None
    price_usage = genai_prices.Usage(
        input_tokens=usage.prompt_tokens,
        cache_read_tokens=usage.cached_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.completion_tokens,
    )
    return Decimal(genai_prices.calc_price(price_usage, model_ref=model, provider_id=provider_id).total_price)


@functools.cache
def _known_model(provider: str, model: str) -> bool:
    return _context_window_or_missing(provider, model) is not _MISSING


@functools.cache
def _context_window(provider: str, model: str) -> int | None:
    window = _context_window_or_missing(provider, model)
    return window if isinstance(window, int) else None


_MISSING = object()


def _context_window_or_missing(provider: str, model: str) -> object:
    provider_id = _TABLE_PROVIDER_IDS.get(provider)
    if provider_id is None:
        return _MISSING
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calculation = genai_prices.calc_price(
                genai_prices.Usage(input_tokens=1), model_ref=model, provider_id=provider_id
            )
    except LookupError:
        return _MISSING
    return calculation.model.context_window
