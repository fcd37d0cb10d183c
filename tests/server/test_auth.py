"""API tokens on both headers, with identical checks; revocation and expiry apply at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from llm_manager.db.base import utcnow
from llm_manager.db.tables import ApiToken
from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from tests.server.conftest import Gateway

_BODY = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def _with(header: str, secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if header == "bearer" else {"x-api-key": secret}


@pytest.fixture
def demo(gateway: Gateway) -> Gateway:
    async def setup(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0})
        )

    gateway.run(setup)
    return gateway


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_valid_token_on_either_header(client: TestClient, demo: Gateway, header: str) -> None:
    response = client.post("/v1/chat/completions", json=_BODY, headers=_with(header, demo.token()))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_revoked_token_is_refused_on_the_next_request(client: TestClient, demo: Gateway, header: str) -> None:
    secret = demo.token()
    assert client.post("/v1/chat/completions", json=_BODY, headers=_with(header, secret)).status_code == 200
    prefix = secret[:13]
    demo.run(lambda llm: llm.tokens.revoke(prefix))
    response = client.post("/v1/chat/completions", json=_BODY, headers=_with(header, secret))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "revoked" in response.json()["error"]["message"]


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_expired_token_is_refused(client: TestClient, demo: Gateway, header: str) -> None:
    secret = demo.token(expires_at=utcnow() + timedelta(seconds=1))

    async def expire(llm: LLMManager) -> None:
        async with llm.services.database.session() as session:
            await session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))

    demo.run(expire)
    response = client.post("/v1/chat/completions", json=_BODY, headers=_with(header, secret))
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer llmm_00000000_" + "A" * 43},
        {"x-api-key": "junk"},
        {"x-api-key": "\u00e9\u00e9".encode("latin-1")},
        {"Authorization": "Bearer " + "x" * 10_000},
        {"x-api-key": "llmm_" + "a" * 10_000},
    ],
    ids=["none", "empty-bearer", "basic", "unknown", "junk", "non-ascii", "10kb-bearer", "10kb-key"],
)
def test_missing_junk_and_huge_credentials_get_401(
    client: TestClient, headers: dict[str, str | bytes]
) -> None:
    response = client.post("/v1/chat/completions", json=_BODY, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_two_different_tokens_in_the_two_headers_are_refused(client: TestClient, demo: Gateway) -> None:
    headers = {"Authorization": f"Bearer {demo.token()}", "x-api-key": demo.token()}
    assert client.post("/v1/chat/completions", json=_BODY, headers=headers).status_code == 401


def test_inference_token_cannot_manage_and_management_token_cannot_infer(
    client: TestClient, demo: Gateway
) -> None:
    inference = demo.headers(demo.token())
    management = demo.headers(demo.token(groups=["management"]))
    assert client.get("/api/usage", headers=inference).status_code == 403
    assert client.post("/v1/chat/completions", json=_BODY, headers=management).status_code == 403


def test_inactive_application_is_refused(client: TestClient, demo: Gateway) -> None:
    secret = demo.token("paused")
    demo.run(lambda llm: llm.applications.update("paused", is_active=False))
    assert client.post("/v1/chat/completions", json=_BODY, headers=demo.headers(secret)).status_code == 401


def test_token_secret_and_hash_never_appear_in_the_log(
    client: TestClient, demo: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    secret = demo.token()
    client.post("/v1/chat/completions", json=_BODY, headers=demo.headers(secret))
    client.post("/v1/chat/completions", json=_BODY, headers=demo.headers(secret + "x"))
    assert secret not in caplog.text
    assert secret.rsplit("_", 1)[1] not in caplog.text
