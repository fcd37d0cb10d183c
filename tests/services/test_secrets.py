from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from llm_manager import LLMManager
from llm_manager.errors import SecretError, SettingsError
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.secrets import KeyRing, ensure_key_file, fingerprint, load_key_ring
from llm_manager.settings import Settings


def test_key_ring_encrypts_with_newest_and_decrypts_with_any() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    ciphertext, key_id = KeyRing([old]).encrypt("sk-secret")
    assert key_id == fingerprint(old)
    ring = KeyRing([new, old])
    assert ring.decrypt(ciphertext) == "sk-secret"
    rotated, rotated_id = ring.rotate(ciphertext)
    assert rotated_id == fingerprint(new)
    assert KeyRing([new]).decrypt(rotated) == "sk-secret"
    with pytest.raises(SecretError, match="cannot be decrypted"):
        KeyRing([new]).decrypt(ciphertext)
    assert old not in repr(ring)
    assert new not in repr(ring)


def test_invalid_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="Fernet key"):
        KeyRing(["not-a-key"])


def test_key_file_is_created_0600_and_refused_when_readable_by_others(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert ensure_key_file(settings)
    assert not ensure_key_file(settings), "an existing key is never overwritten"
    assert stat.S_IMODE(settings.key_file.stat().st_mode) == 0o600
    assert load_key_ring(settings).key_ids
    os.chmod(settings.key_file, 0o644)
    with pytest.raises(SettingsError, match="readable by other users"):
        load_key_ring(settings)


def test_missing_key_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="llm-manager init"):
        load_key_ring(Settings(data_dir=tmp_path))


async def test_rotation_moves_every_secret_and_status_counts_them(settings: Settings) -> None:
    old_key = settings.secret_keys.get_secret_value()  # type: ignore[union-attr]
    async with LLMManager.open(settings) as llm:
        for slug in ("a", "b"):
            await llm.configurations.create(
                ConfigurationCreate(
                    slug=slug,
                    provider="openai",
                    model="gpt-4o-mini",
                    api_key=SecretStr(f"sk-{slug}-0000000000"),
                )
            )
        before = {key.key_id: key.secrets for key in await llm.secrets.status()}
        assert before == {fingerprint(old_key): 2}

    new_key = Fernet.generate_key().decode()
    rotated = settings.model_copy(update={"secret_keys": SecretStr(f"{new_key},{old_key}")})
    async with LLMManager.open(rotated) as llm:
        assert await llm.secrets.rotate() == 2
        status = {key.key_id: key for key in await llm.secrets.status()}
        assert status[fingerprint(new_key)].secrets == 2
        assert status[fingerprint(new_key)].primary
        assert status[fingerprint(old_key)].secrets == 0
        assert await llm.secrets.rotate() == 0, "rotation is idempotent"

    only_new = settings.model_copy(update={"secret_keys": SecretStr(new_key)})
    async with LLMManager.open(only_new) as llm:
        resolved = await llm.configurations.resolve("a")
        assert resolved.api_key == "sk-a-0000000000"
        status = {key.key_id: key for key in await llm.secrets.status()}
        assert status[fingerprint(old_key)].retired_at is not None
