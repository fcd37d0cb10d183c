"""Fixtures for the management API: applications with tokens of each kind, and real demo calls.

Two applications, `alpha` and `beta`, each hold a management token; `ops` holds an admin token.
`priced` is a global demo configuration with a price override, so calls cost exact, known amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llm_manager.manager import LLMManager
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.types import ChatResult
from tests.server.conftest import Gateway

INPUT_PRICE = Decimal("0.5")
OUTPUT_PRICE = Decimal("1.5")
"""USD per million tokens: 500 and 1,500 nano-dollars a token, so every call's cost is exact."""


@dataclass
class Api:
    client: TestClient
    gateway: Gateway
    alpha: dict[str, str]
    beta: dict[str, str]
    admin: dict[str, str]

    def application_id(self, name: str) -> int:
        async def lookup(llm: LLMManager) -> int:
            return (await llm.applications.get(name)).id

        found: int = self.gateway.run(lookup)
        return found

    def calls(
        self, application: str | None, count: int = 1, *, configuration: str = "priced", prompt: str = "hi"
    ) -> list[ChatResult]:
        """Real calls through the pipeline as `application`, flushed so the log and rollup show them."""
        application_id = self.application_id(application) if application else None

        async def call(llm: LLMManager) -> list[ChatResult]:
            context = CallContext(application_id=application_id)
            results = [await llm.chat(configuration, prompt, context=context) for _ in range(count)]
            await llm.services.writer.flush()
            return results

        results: list[ChatResult] = self.gateway.run(call)
        return results

    def create_configuration(self, slug: str, application: str | None = None, **fields: Any) -> None:
        spec = ConfigurationCreate(
            slug=slug,
            provider="demo",
            model="demo-chat",
            options={"delay_ms": 0},
            application=application,
            **fields,
        )

        async def create(llm: LLMManager) -> None:
            await llm.configurations.create(spec)

        self.gateway.run(create)

    def token(self, application: str, groups: Sequence[str] = ("management",)) -> dict[str, str]:
        return self.gateway.headers(self.gateway.token(application, groups=groups))


@pytest.fixture
def api(client: TestClient, gateway: Gateway) -> Api:
    alpha = gateway.headers(gateway.token("alpha", groups=("management",)))
    beta = gateway.headers(gateway.token("beta", groups=("management",)))
    admin = gateway.headers(gateway.token("ops", groups=("admin",)))
    result = Api(client=client, gateway=gateway, alpha=alpha, beta=beta, admin=admin)
    result.create_configuration("priced", input_price=INPUT_PRICE, output_price=OUTPUT_PRICE)
    return result


def cost_of(result: ChatResult) -> Decimal:
    return (
        result.usage.prompt_tokens * INPUT_PRICE + result.usage.completion_tokens * OUTPUT_PRICE
    ) / 1_000_000
