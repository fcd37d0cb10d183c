"""Named configurations (provider + model + parameters + encrypted key) and what hangs off them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from llm_manager.db.base import Base, Money, UTCDateTime, utcnow

PRICE = Money()


class LLMConfiguration(Base):
    __tablename__ = "llm_configurations"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(50), index=True)
    model: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str | None] = mapped_column(String(500))
    api_key_ciphertext: Mapped[str | None] = mapped_column(Text)
    api_key_key_id: Mapped[str | None] = mapped_column(String(32), index=True)
    api_key_hint: Mapped[str | None] = mapped_column(String(16))
    default_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    is_active: Mapped[bool] = mapped_column(default=True)
    is_default: Mapped[bool] = mapped_column(default=False)
    input_price: Mapped[Decimal | None] = mapped_column(PRICE)
    """USD per million input tokens; with the other prices, overrides the price table."""
    output_price: Mapped[Decimal | None] = mapped_column(PRICE)
    cache_read_price: Mapped[Decimal | None] = mapped_column(PRICE)
    cache_write_price: Mapped[Decimal | None] = mapped_column(PRICE)
    context_length: Mapped[int | None] = mapped_column()
    rpm_limit: Mapped[int | None] = mapped_column()
    tpm_limit: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"LLMConfiguration(slug={self.slug!r}, provider={self.provider!r}, model={self.model!r})"


class ConfigurationFallback(Base):
    """Ordered fallbacks: tried in `position` order when the configuration fails before its first byte."""

    __tablename__ = "configuration_fallbacks"

    configuration_id: Mapped[int] = mapped_column(
        ForeignKey("llm_configurations.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    fallback_id: Mapped[int] = mapped_column(
        ForeignKey("llm_configurations.id", ondelete="CASCADE"), index=True
    )


class ProviderModelCache(Base):
    """The models a configuration's upstream offered when last asked."""

    __tablename__ = "provider_model_cache"

    configuration_id: Mapped[int] = mapped_column(
        ForeignKey("llm_configurations.id", ondelete="CASCADE"), primary_key=True
    )
    models: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
