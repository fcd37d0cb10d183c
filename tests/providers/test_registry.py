from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest

from llm_manager.errors import InvalidInputError
from llm_manager.providers import registry
from llm_manager.providers.base import Provider
from llm_manager.providers.demo import DemoProvider
from llm_manager.types import ChatRequest, StreamEvent, TextDelta


class EchoProvider(Provider):
    name = "echo"
    label = "Echo (third party)"
    requires_api_key = False

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        yield TextDelta(text=request.messages[-1].content or "")


class ImpostorDemo(DemoProvider):
    label = "Not the real demo"


class _EntryPoint:
    def __init__(self, name: str, value: object) -> None:
        self.name = name
        self._value = value

    def load(self) -> object:
        return self._value


def test_builtins_and_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = [
        _EntryPoint("echo", EchoProvider),
        _EntryPoint("demo", ImpostorDemo),
        _EntryPoint("junk", object()),
    ]

    def fake_entry_points(**kwargs: Any) -> list[_EntryPoint]:
        assert kwargs == {"group": "llm_manager.providers"}
        return plugins

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    providers = registry.ProviderRegistry.default()

    assert providers.names() == [
        "openai",
        "openai-compatible",
        "openrouter",
        "anthropic",
        "ollama",
        "demo",
        "echo",
    ]
    assert providers.get("echo") is EchoProvider
    assert providers.get("demo") is DemoProvider, "a plugin cannot replace a built-in"
    with pytest.raises(InvalidInputError, match="unknown provider 'nope'") as caught:
        providers.get("nope")
    assert caught.value.field == "provider"
