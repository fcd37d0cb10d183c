"""API tokens: how applications authenticate. Only a hash is stored; the prefix stays visible."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from llm_manager.db.base import Base, UTCDateTime, utcnow


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the whole token: tokens are 256 random bits, so a slow hash would add nothing."""
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Endpoint groups the token may use: inference, management, admin."""
    configuration_ids: Mapped[list[int] | None] = mapped_column(JSON)
    """The configurations the token may call; None means every one its application may use."""
    rpm_limit: Mapped[int | None] = mapped_column()
    tpm_limit: Mapped[int | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
