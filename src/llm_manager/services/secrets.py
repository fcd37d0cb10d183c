"""Provider keys encrypted at rest under a Fernet key ring, and the rotation that retires keys.

The newest key encrypts; every key in the ring decrypts. Each ciphertext is stored with the id
(a short fingerprint) of the key that made it, so `keys status` can say how many secrets each key
still protects and an old key is retired only when that number is zero.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.base import utcnow
from llm_manager.db.session import Database, conflict_insert
from llm_manager.db.tables import EncryptionKey, LLMConfiguration
from llm_manager.errors import SecretError, SettingsError
from llm_manager.settings import Settings


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class KeyRing:
    """Encrypts with the first key, decrypts with any. Holds keys only in memory; never shows them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SettingsError("the key ring needs at least one key")
        try:
            self._fernets = [Fernet(key.encode()) for key in keys]
        except (ValueError, TypeError):
            raise SettingsError(
                "LLM_MANAGER_SECRET_KEYS: every key must be a urlsafe-base64 32-byte Fernet key "
                "(make one with `llm-manager keys generate`)"
            ) from None
        self._ring = MultiFernet(self._fernets)
        self.key_ids = tuple(fingerprint(key) for key in keys)

    @property
    def primary_key_id(self) -> str:
        return self.key_ids[0]

    def encrypt(self, plaintext: str) -> tuple[str, str]:
        """The ciphertext and the id of the key that made it."""
        return self._ring.encrypt(plaintext.encode()).decode(), self.primary_key_id

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._ring.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretError(
                "a stored secret cannot be decrypted with the configured keys; "
                "was a key removed from LLM_MANAGER_SECRET_KEYS too early?"
            ) from None

    def rotate(self, ciphertext: str) -> tuple[str, str]:
        try:
            return self._ring.rotate(ciphertext.encode()).decode(), self.primary_key_id
        except InvalidToken:
            raise SecretError("a stored secret cannot be decrypted with the configured keys") from None

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self.key_ids)!r})"


def generate_key() -> str:
    return Fernet.generate_key().decode()


def ensure_key_file(settings: Settings) -> bool:
    """Create the 0600 key file when no keys are configured. True if a key was made."""
    if settings.secret_keys is not None or settings.key_file.exists():
        return False
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(settings.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(generate_key() + "\n")
    return True


def load_key_ring(settings: Settings) -> KeyRing:
    """The ring from LLM_MANAGER_SECRET_KEYS, else from the key file (refused if others can read it)."""
    if settings.secret_keys is not None:
        keys = [key.strip() for key in settings.secret_keys.get_secret_value().split(",") if key.strip()]
        return KeyRing(keys)
    path = settings.key_file
    if not path.exists():
        raise SettingsError(
            f"no encryption key: run `llm-manager init` or set LLM_MANAGER_SECRET_KEYS ({path})"
        )
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise SettingsError(f"{path} is readable by other users; run `chmod 600 {path}`")
    keys = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return KeyRing(keys)


@dataclass(frozen=True, kw_only=True)
class KeyStatus:
    key_id: str
    secrets: int
    primary: bool
    in_ring: bool
    first_seen_at: datetime | None
    retired_at: datetime | None


class SecretsService:
    """Key metadata, per-key secret counts, and rotation of every stored secret."""

    def __init__(self, database: Database, key_ring: KeyRing) -> None:
        self._database = database
        self.key_ring = key_ring

    async def record_keys(self) -> None:
        """Remember the ring's key ids; mark the primary; retire keys gone from the ring and unused."""
        async with self._database.session() as session:
            # Several processes start at once on a fresh key: insert-if-missing, never a duplicate.
            now = utcnow()
            await session.execute(
                conflict_insert(session, EncryptionKey)
                .values([{"key_id": key_id, "first_seen_at": now} for key_id in self.key_ring.key_ids])
                .on_conflict_do_nothing()
            )
            known = {row.key_id: row for row in (await session.scalars(select(EncryptionKey))).all()}
            for key_id in self.key_ring.key_ids:
                known[key_id].retired_at = None
            known[self.key_ring.primary_key_id].last_primary_at = utcnow()
            counts = await self._counts(session)
            for key_id, row in known.items():
                if key_id not in self.key_ring.key_ids and not counts.get(key_id) and row.retired_at is None:
                    row.retired_at = utcnow()

    async def status(self) -> list[KeyStatus]:
        async with self._database.session() as session:
            counts = await self._counts(session)
            rows = {row.key_id: row for row in (await session.scalars(select(EncryptionKey))).all()}
        key_ids = list(dict.fromkeys([*self.key_ring.key_ids, *rows, *counts]))
        return [
            KeyStatus(
                key_id=key_id,
                secrets=counts.get(key_id, 0),
                primary=key_id == self.key_ring.primary_key_id,
                in_ring=key_id in self.key_ring.key_ids,
                first_seen_at=rows[key_id].first_seen_at if key_id in rows else None,
                retired_at=rows[key_id].retired_at if key_id in rows else None,
            )
            for key_id in key_ids
        ]

    async def rotate(self) -> int:
        """Re-encrypt every secret under the newest key, in one transaction. Returns how many moved."""
        moved = 0
        async with self._database.session() as session:
            query = select(LLMConfiguration).where(LLMConfiguration.api_key_ciphertext.is_not(None))
            for configuration in (await session.scalars(query)).all():
                if configuration.api_key_key_id == self.key_ring.primary_key_id:
                    continue
                assert configuration.api_key_ciphertext is not None
                ciphertext, key_id = self.key_ring.rotate(configuration.api_key_ciphertext)
                configuration.api_key_ciphertext, configuration.api_key_key_id = ciphertext, key_id
                moved += 1
        await self.record_keys()
        return moved

    @staticmethod
    async def _counts(session: AsyncSession) -> dict[str, int]:
        query = (
            select(LLMConfiguration.api_key_key_id, func.count())
            .where(LLMConfiguration.api_key_key_id.is_not(None))
            .group_by(LLMConfiguration.api_key_key_id)
        )
        result = await session.execute(query)
        return {key_id: count for key_id, count in result.all() if key_id}
