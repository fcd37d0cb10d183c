"""OpenRouter: OpenAI's wire format plus attribution headers, a reported cost and its error shape.

Everything OpenRouter shares with OpenAI is inherited; this module holds only the differences:
`HTTP-Referer` / `X-OpenRouter-Title` app attribution, `usage.cost` (what the call was charged),
errors whose `code` is the HTTP status as an integer and whose real reason is in
`metadata.raw`, and a model list with context lengths and per-token prices. Its
`: OPENROUTER PROCESSING` keep-alive comments are skipped by the SSE decoder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from llm_manager.errors import AuthenticationError, BadRequestError, ProviderError
from llm_manager.providers import _wire
from llm_manager.providers.openai import OpenAIProvider
from llm_manager.types import ModelInfo, Usage

DEFAULT_TITLE = "LLM Manager"


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenRouterPricing:
    """Prices in USD per token (per request for `request`), as OpenRouter lists them."""

    prompt: Decimal | None = None
    completion: Decimal | None = None
    request: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PricedModel:
    info: ModelInfo
    pricing: OpenRouterPricing | None


class OpenRouterProvider(OpenAIProvider):
    name = "openrouter"
    label = "OpenRouter"
    default_base_url = "https://openrouter.ai/api/v1"
    accepts_top_k = True
    max_tokens_field = "max_tokens"

    def default_headers(self) -> dict[str, str]:
        """Attribution headers; `X-Title` is the legacy name OpenRouter still accepts."""
        headers = super().default_headers()
        options = self.connection.options
        # Header values must be ASCII: a title like "Café" would otherwise break every call.
        title = _ascii(str(options.get("title") or DEFAULT_TITLE))
        headers["X-OpenRouter-Title"] = title
        headers["X-Title"] = title
        if referer := _ascii(str(options.get("referer") or "")):
            headers["HTTP-Referer"] = referer
        return headers

    def parse_usage(self, usage: Mapping[str, Any]) -> Usage:
        parsed = super().parse_usage(usage)
        cost = _decimal(usage.get("cost"))
        if cost is not None and usage.get("is_byok"):
            # With the caller's own provider key, `cost` is only OpenRouter's fee; the upstream
            # charge is billed to that key and reported separately.
            upstream = _decimal((usage.get("cost_details") or {}).get("upstream_inference_cost"))
            cost += upstream or 0
        return dataclasses.replace(parsed, reported_cost=cost)

    def describe_error(self, error: Any) -> tuple[str, str | None, str | None]:
        """OpenRouter's message is often just "Provider returned error": add the upstream reason."""
        message, error_type, code = super().describe_error(error)
        metadata = error.get("metadata") if isinstance(error, dict) else None
        if not isinstance(metadata, dict):
            return message, error_type, code
        raw = metadata.get("raw")
        if raw:
            provider = metadata.get("provider_name")
            reason = raw if isinstance(raw, str) else _wire.dumps(raw).decode()
            message = f"{message} ({provider}: {reason})" if provider else f"{message} ({reason})"
        if reasons := metadata.get("reasons"):
            message = f"{message} (flagged: {', '.join(map(str, reasons))})"
        return message, error_type or _optional_str(metadata.get("error_type")), code

    def error_from(
        self, error: Any, *, status: int | None, retry_after: float | None = None
    ) -> ProviderError:
        mapped = super().error_from(error, status=status, retry_after=retry_after)
        if isinstance(mapped, AuthenticationError) and _is_moderation(error):
            # A 403 here means a moderated model flagged the input, not that the key is wrong.
            return BadRequestError(
                mapped.message, provider=self.name, status_code=mapped.status_code, upstream_code="moderation"
            )
        return mapped

    async def list_models(self) -> list[ModelInfo]:
        return [model.info for model in await self.list_priced_models()]

    async def list_priced_models(self) -> list[PricedModel]:
        """Every model with its context length and prices (OpenRouter's model list is public)."""
        payload = await self._call("GET", "/models")
        return [
            PricedModel(info=self.parse_model(entry), pricing=_pricing(entry.get("pricing")))
            for entry in payload.get("data") or ()
            if isinstance(entry, dict) and entry.get("id")
        ]

    def parse_model(self, entry: Mapping[str, Any]) -> ModelInfo:
        info = super().parse_model(entry)
        author, slash, _ = info.id.partition("/")
        return dataclasses.replace(info, owned_by=info.owned_by or (author if slash else None))


def _is_moderation(error: Any) -> bool:
    metadata = error.get("metadata") if isinstance(error, dict) else None
    return isinstance(metadata, dict) and ("flagged_input" in metadata or "reasons" in metadata)


def _pricing(value: Any) -> OpenRouterPricing | None:
    if not isinstance(value, dict):
        return None
    return OpenRouterPricing(
        prompt=_decimal(value.get("prompt")),
        completion=_decimal(value.get("completion")),
        request=_decimal(value.get("request")),
        cache_read=_decimal(value.get("input_cache_read")),
        cache_write=_decimal(value.get("input_cache_write")),
    )


def _decimal(value: Any) -> Decimal | None:
    """A price or cost as an exact decimal; `str()` first so 0.1 stays 0.1, not its binary float."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _ascii(value: str) -> str:
    return "".join(char for char in value if " " <= char <= "~").strip()
