"""What creating or changing a configuration takes, validated before any database work.

Every field names itself in its error (`default_params.temperature: ...`), and a base URL with
credentials in it is refused: the key has a write-only field of its own.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from llm_manager.errors import InvalidParameterError
from llm_manager.types import GenerationParams

SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_SLUG = re.compile(SLUG_PATTERN)
Price = Annotated[Decimal, Field(ge=0, le=1_000_000)]


def parse_params(raw: dict[str, Any], *, field_prefix: str = "params") -> GenerationParams:
    """Validate generation parameters, naming the offending key in the error."""
    try:
        return GenerationParams.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        message = "unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
        raise InvalidParameterError(
            f"{field_prefix}.{key}: {message}", field=f"{field_prefix}.{key}"
        ) from None


class ConfigurationFields(BaseModel):
    """Fields shared by create and update; every one optional so updates can be partial."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    provider: str | None = None
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    base_url: Annotated[str, Field(max_length=500)] | None = None
    api_key: SecretStr | None = None
    default_params: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    application: str | None = None
    """Application name; empty string makes the configuration global."""
    is_active: bool | None = None
    is_default: bool | None = None
    fallbacks: list[str] | None = None
    input_price: Price | None = None
    output_price: Price | None = None
    cache_read_price: Price | None = None
    cache_write_price: Price | None = None
    context_length: Annotated[int, Field(ge=1)] | None = None
    rpm_limit: Annotated[int, Field(ge=1)] | None = None
    """Requests per minute through this configuration, across every caller."""
    tpm_limit: Annotated[int, Field(ge=1)] | None = None
    """Tokens per minute through this configuration, across every caller."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not contain credentials; use the API key field")
        return value.rstrip("/")

    @field_validator("default_params")
    @classmethod
    def _valid_params(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                parse_params(value, field_prefix="default_params")
            except InvalidParameterError as error:
                raise ValueError(str(error)) from None
        return value


class ConfigurationCreate(ConfigurationFields):
    slug: str
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    provider: str
    model: Annotated[str, Field(min_length=1, max_length=200)]

    @field_validator("slug")
    @classmethod
    def _url_safe(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                "use 1-64 lowercase letters, digits, '.', '-' or '_', starting with a letter or digit"
            )
        return value


class ConfigurationUpdate(ConfigurationFields):
    pass
