"""Provider types by name: the built-in adapters plus any registered by other packages.

A third-party package adds a provider with an entry point in the `llm_manager.providers` group
whose value is a `Provider` subclass; its `name` is the type users put in a configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from types import MappingProxyType

from llm_manager.errors import InvalidInputError
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers.anthropic import AnthropicProvider
from llm_manager.providers.base import Provider, ProviderConnection
from llm_manager.providers.demo import DemoProvider
from llm_manager.providers.ollama import OllamaProvider
from llm_manager.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from llm_manager.providers.openrouter import OpenRouterProvider

logger = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "llm_manager.providers"
BUILTIN_PROVIDERS: tuple[type[Provider], ...] = (
    OpenAIProvider,
    OpenAICompatibleProvider,
    OpenRouterProvider,
    AnthropicProvider,
    OllamaProvider,
    DemoProvider,
)


class ProviderRegistry:
    """An immutable map from provider type name to adapter class."""

    def __init__(self, providers: Iterable[type[Provider]]) -> None:
        self._providers: Mapping[str, type[Provider]] = MappingProxyType(
            {provider.name: provider for provider in providers}
        )

    @classmethod
    def default(cls) -> ProviderRegistry:
        """The built-ins and every provider installed through the entry point group."""
        builtin_names = {provider.name for provider in BUILTIN_PROVIDERS}
        plugins = []
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            plugin = entry.load()
            if not _is_provider(plugin):
                logger.warning("entry point %s is not a Provider subclass; ignored", entry.name)
            elif plugin.name in builtin_names:
                logger.warning("plugin provider %r would replace a built-in; ignored", plugin.name)
            else:
                plugins.append(plugin)
        return cls([*BUILTIN_PROVIDERS, *plugins])

    def names(self) -> list[str]:
        return list(self._providers)

    def get(self, name: str) -> type[Provider]:
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(self._providers)
            raise InvalidInputError(
                f"unknown provider {name!r}; known providers: {known}", field="provider"
            ) from None

    def create(self, name: str, connection: ProviderConnection, http: UpstreamClient) -> Provider:
        return self.get(name)(connection, http)


def _is_provider(candidate: object) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, Provider)
