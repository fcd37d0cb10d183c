"""Metadata about encryption keys: fingerprints and dates, never the keys themselves."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from llm_manager.db.base import Base, UTCDateTime, utcnow


class EncryptionKey(Base):
    __tablename__ = "encryption_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """A short SHA-256 fingerprint of the key."""
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_primary_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
