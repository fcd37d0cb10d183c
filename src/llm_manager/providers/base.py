"""The `Provider` contract every wire adapter implements.

An adapter knows one wire API and nothing else: no database, no web framework. It gets its
connection details and the one shared pooled `UpstreamClient` from whoever builds it.
`stream()` is the one abstract method; `complete()` folds the stream unless the adapter has a
cheaper plain endpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llm_manager.errors import InvalidInputError
from llm_manager.providers._http import UpstreamClient
from llm_manager.types import (
    ChatRequest,
    Completion,
    CompletionBuilder,
    Embeddings,
    ModelInfo,
    StreamEvent,
)


@dataclass(frozen=True, kw_only=True)
class ProviderConnection:
    """Where and how to reach an upstream. The key is kept out of `repr` and logs."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never reach a log line or an error message."""
        return (self.api_key,) if self.api_key else ()


class Provider(ABC):
    """One upstream wire API. Capabilities are class attributes so listings need no instance."""

    name: ClassVar[str]
    label: ClassVar[str]
    default_base_url: ClassVar[str] = ""
    requires_api_key: ClassVar[bool] = True
    supports_streaming: ClassVar[bool] = True
    supports_tools: ClassVar[bool] = True
    supports_embeddings: ClassVar[bool] = False
    free: ClassVar[bool] = False
    """Free by definition (local models, the demo): never unpriced."""
    is_demo: ClassVar[bool] = False

    def __init__(self, connection: ProviderConnection, http: UpstreamClient) -> None:
        self.connection = connection
        self.http = http

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Yield events as the upstream produces them; closing the iterator closes the request."""

    async def complete(self, request: ChatRequest) -> Completion:
        builder = CompletionBuilder()
        async for event in self.stream(request):
            builder.add(event)
        return builder.build()

    async def embed(self, model: str, inputs: Sequence[str]) -> Embeddings:
        raise InvalidInputError(f"{self.label} has no embeddings API", field="configuration")

    async def list_models(self) -> list[ModelInfo]:
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.connection.base_url!r})"
