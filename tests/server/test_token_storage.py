"""API token secrets are never stored nor logged: the database keeps only their SHA-256, and no
request — with a valid, a revoked or a junk token — writes the secret to the log."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from llm_manager.db.session import Database
from llm_manager.manager import LLMManager
from llm_manager.server.app import create_app
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.settings import Settings
from tests.server.conftest import Gateway

_BODY = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _demo(gateway: Gateway) -> None:
    async def setup(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0})
        )
        await llm.services.writer.flush()

    gateway.run(setup)


def _flush(gateway: Gateway) -> None:
    async def flush(llm: LLMManager) -> None:
        await llm.services.writer.flush()

    gateway.run(flush)


def _token_rows(database_url: str) -> list[dict[str, Any]]:
    """Every `api_tokens` row, read on a connection of its own (not through the app's services)."""

    async def read() -> list[dict[str, Any]]:
        database = Database(database_url)
        try:
            async with database.engine.connect() as connection:
                result = await connection.execute(text("SELECT * FROM api_tokens ORDER BY id"))
                return [dict(row) for row in result.mappings()]
        finally:
            await database.dispose()

    return asyncio.run(read())


_PREFIX_LENGTH = len("llmm_1a2b3c4d")


def _prefix(secret: str) -> str:
    return secret[:_PREFIX_LENGTH]


def _random_part(secret: str) -> str:
    """What follows the clear prefix (which may itself contain `_`); all of a malformed token."""
    return secret[_PREFIX_LENGTH + 1 :] if secret.startswith("llmm_") else secret


def test_the_database_keeps_only_a_hash_of_each_token(
    client: TestClient, gateway: Gateway, database_url: str
) -> None:
    _demo(gateway)
    inference = gateway.token()
    management = gateway.token("owner", groups=["management"])
    created = client.post("/api/tokens", json={"name": "via-api"}, headers=gateway.headers(management))
    assert created.status_code == 201, created.text
    via_api = created.json()["secret"]
    assert (
        client.post("/v1/chat/completions", json=_BODY, headers=gateway.headers(inference)).status_code == 200
    )
    _flush(gateway)  # the token's `last_used_at` is written too

    rows = _token_rows(database_url)
    issued = (inference, management, via_api)
    assert len(rows) == len(issued)
    by_prefix = {row["prefix"]: row for row in rows}
    assert any(row["last_used_at"] is not None for row in rows)
    for secret in issued:
        row = by_prefix[_prefix(secret)]
        stored = [str(value) for value in row.values() if value is not None]
        assert not any(secret in value for value in stored), row
        assert not any(_random_part(secret) in value for value in stored), row
        assert row["token_hash"] != secret
        assert row["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()


def test_no_secret_is_logged_for_a_valid_a_revoked_or_a_junk_token(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(
        logging.DEBUG
    )  # before the app starts, so every logger is at DEBUG from the first request
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # SQLAlchemy pins its own to WARNING: SQL too
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.portal is not None
        portal = client.portal
        gateway = Gateway(
            app=client.app,  # type: ignore[arg-type]
            base_url="http://testserver",
            run=lambda work: portal.call(work, client.app.state.llm),  # type: ignore[attr-defined]
        )
        _demo(gateway)
        valid = gateway.token()
        revoked = gateway.token()
        assert (
            client.post("/v1/chat/completions", json=_BODY, headers=gateway.headers(revoked)).status_code
            == 200
        )
        prefix = _prefix(revoked)
        gateway.run(lambda llm: llm.tokens.revoke(prefix))
        junk = f"llmm_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"  # well-formed, never issued
        malformed = "junk-" + secrets.token_urlsafe(24)

        answers = {
            "valid": client.post("/v1/chat/completions", json=_BODY, headers=gateway.headers(valid)),
            "valid-x-api-key": client.post(
                "/v1/embeddings", json={"model": "demo", "input": "hi"}, headers={"x-api-key": valid}
            ),
            "valid-stream": client.post(
                "/api/stream", json={"configuration": "demo", "prompt": "hi"}, headers=gateway.headers(valid)
            ),
            "revoked": client.post("/v1/chat/completions", json=_BODY, headers=gateway.headers(revoked)),
            "revoked-models": client.get("/v1/models", headers=gateway.headers(revoked)),
            "junk": client.post("/v1/chat/completions", json=_BODY, headers=gateway.headers(junk)),
            "malformed": client.post("/v1/chat/completions", json=_BODY, headers={"x-api-key": malformed}),
        }
        _flush(gateway)

    assert [name for name, answer in answers.items() if answer.status_code != 200] == [
        "revoked",
        "revoked-models",
        "junk",
        "malformed",
    ]
    assert any(record.name.startswith("sqlalchemy.engine") for record in caplog.records), "SQL was not logged"
    for secret in (valid, revoked, junk, malformed):
        assert secret not in caplog.text
        assert _random_part(secret) not in caplog.text
        for answer in answers.values():
            assert secret not in answer.text
