"""Budgets and rate limits as a client sees them: 429, a code, and a Retry-After."""

from __future__ import annotations

from decimal import Decimal

from fastapi.testclient import TestClient

from llm_manager.manager import LLMManager
from llm_manager.services.budgets import BudgetSpec
from llm_manager.services.configuration_specs import ConfigurationCreate
from tests.server.conftest import Gateway

_BODY = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def _demo(gateway: Gateway) -> None:
    gateway.run(
        lambda llm: llm.configurations.create(
            ConfigurationCreate(
                slug="demo",
                provider="demo",
                model="demo-chat",
                options={"delay_ms": 0},
                input_price=Decimal(1),
                output_price=Decimal(1),
            )
        )
    )


def test_hard_budget_refuses_with_budget_exceeded_and_retry_after(
    client: TestClient, gateway: Gateway
) -> None:
    _demo(gateway)
    headers = gateway.headers(gateway.token("shop"))
    gateway.run(lambda llm: llm.budgets.set(BudgetSpec(application="shop", period="day", limit_tokens=40)))
    statuses = [
        client.post("/v1/chat/completions", json=_BODY, headers=headers).status_code for _ in range(6)
    ]
    assert statuses[0] == 200
    assert 429 in statuses
    refused = client.post("/v1/chat/completions", json=_BODY, headers=headers)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "daily budget of 40 tokens" in error["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 86_400
    streamed = client.post("/api/stream", json={"configuration": "demo", "prompt": "hi"}, headers=headers)
    assert streamed.status_code == 429
    embedded = client.post("/v1/embeddings", json={"model": "demo", "input": "hi " * 50}, headers=headers)
    assert embedded.status_code == 429


def test_token_rate_limit_refuses_with_retry_after(client: TestClient, gateway: Gateway) -> None:
    _demo(gateway)
    headers = gateway.headers(gateway.token("shop", rpm_limit=2))
    assert [
        client.post("/v1/chat/completions", json=_BODY, headers=headers).status_code for _ in range(2)
    ] == [
        200,
        200,
    ]
    refused = client.post("/v1/chat/completions", json=_BODY, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # another token of the same application is not limited by this token's limit
    other = gateway.headers(gateway.token("shop"))
    assert client.post("/v1/chat/completions", json=_BODY, headers=other).status_code == 200


def test_application_rate_limit_spans_its_tokens(client: TestClient, gateway: Gateway) -> None:
    _demo(gateway)
    first, second = gateway.token("shop"), gateway.token("shop")

    async def limit(llm: LLMManager) -> None:
        await llm.applications.update("shop", rpm_limit=3)

    gateway.run(limit)
    codes = [
        client.post("/v1/chat/completions", json=_BODY, headers=gateway.headers(secret)).status_code
        for secret in (first, second, first, second)
    ]
    assert codes == [200, 200, 200, 429]
