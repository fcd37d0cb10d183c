"""The encryption keys page: key ids and secrets per key, rotation with confirmation, never a key."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.secrets import KeyStatus, fingerprint
from llm_manager.settings import Settings
from tests.server.admin.conftest import Admin, Browser

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def assert_forms_carry_csrf(browser: Browser, html: str) -> None:
    """Every form on the page posts the session's CSRF token (the test client would add it anyway)."""
    assert f'name="csrf_token" value="{browser.csrf}"' in html
    assert 'name="csrf_token" value=""' not in html


async def _store_a_secret_under(settings: Settings) -> None:
    async with LLMManager.open(settings) as llm:
        await llm.configurations.create(
            ConfigurationCreate(
                slug="paid", provider="openai", model="gpt-4o-mini", api_key=SecretStr("sk-old-0000")
            )
        )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A ring of two keys, newest first, with one secret still under the older key (as after adding one)."""
    asyncio.run(_store_a_secret_under(settings.model_copy(update={"secret_keys": SecretStr(OLD_KEY)})))
    return settings.model_copy(update={"secret_keys": SecretStr(f"{NEW_KEY},{OLD_KEY}")})


def _status(admin: Admin) -> dict[str, KeyStatus]:
    async def status(llm: LLMManager) -> dict[str, KeyStatus]:
        return {key.key_id: key for key in await llm.secrets.status()}

    found: dict[str, KeyStatus] = admin.gateway.run(status)
    return found


def test_keys_page_shows_key_ids_and_secrets_per_key_never_a_key(admin: Admin) -> None:
    browser = admin.signed_in("admin")
    page = browser.get("/admin/keys")
    assert page.status_code == 200
    assert_forms_carry_csrf(browser, page.text)
    assert fingerprint(NEW_KEY) in page.text
    assert fingerprint(OLD_KEY) in page.text
    assert "primary" in page.text
    assert "1 secret still use an older key" in page.text
    assert "LLM_MANAGER_SECRET_KEYS" in page.text
    assert 'data-confirm="Re-encrypt every stored secret' in page.text
    assert NEW_KEY not in page.text
    assert OLD_KEY not in page.text
    assert "sk-old-0000" not in page.text


def test_rotate_moves_every_secret_to_the_primary_key(admin: Admin) -> None:
    browser = admin.signed_in("admin")
    rotated = browser.post("/admin/keys/rotate")
    assert rotated.status_code == 303
    page = browser.get("/admin/keys")
    assert f"Rotated: 1 secret re-encrypted under key {fingerprint(NEW_KEY)}" in page.text
    assert "Every secret already uses the primary key" in page.text
    status = _status(admin)
    assert status[fingerprint(NEW_KEY)].secrets == 1
    assert status[fingerprint(OLD_KEY)].secrets == 0
    browser.post("/admin/keys/rotate")
    assert "Rotated: 0 secrets re-encrypted" in browser.get("/admin/keys").text

    async def log(llm: LLMManager) -> list[str]:
        return [
            f"{entry.target} {entry.detail}"
            for entry in (await llm.services.activity.page(action="keys.")).entries
        ]

    entries = admin.gateway.run(log)
    assert entries[-1] == f"{fingerprint(NEW_KEY)} 1 secrets re-encrypted"
    assert all(NEW_KEY not in entry and OLD_KEY not in entry for entry in entries)


def test_keys_need_the_manage_llm_encryption_keys_permission(admin: Admin) -> None:
    operator = admin.signed_in("operator")
    assert operator.get("/admin/keys").status_code == 403
    assert operator.post("/admin/keys/rotate").status_code == 403
    assert _status(admin)[fingerprint(OLD_KEY)].secrets == 1


def test_rotation_without_its_csrf_token_is_refused(admin: Admin) -> None:
    browser = admin.signed_in("admin")
    assert browser.post("/admin/keys/rotate", {"csrf_token": ""}).status_code == 403
    assert _status(admin)[fingerprint(OLD_KEY)].secrets == 1
