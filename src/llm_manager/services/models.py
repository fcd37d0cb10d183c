"""Which models a configuration's upstream offers, cached per configuration with a TTL."""

from __future__ import annotations

from datetime import timedelta

from llm_manager.services.calls import ProviderFactory
from llm_manager.services.configurations import ConfigurationService
from llm_manager.types import ModelInfo


class ModelDiscovery:
    def __init__(
        self, configurations: ConfigurationService, providers: ProviderFactory, ttl_seconds: int
    ) -> None:
        self._configurations = configurations
        self._providers = providers
        self._ttl = timedelta(seconds=ttl_seconds)

    async def models(self, slug: str, *, refresh: bool = False) -> list[ModelInfo]:
        """The cached list while it is fresh; otherwise ask the upstream and remember the answer."""
        if not refresh:
            cached = await self._configurations.cached_models(slug, self._ttl)
            if cached is not None:
                return cached
        configuration = await self._configurations.resolve(slug)
        models = await self._providers.build(configuration).list_models()
        await self._configurations.store_models(slug, models)
        return models

    async def cached(self, slug: str) -> list[ModelInfo] | None:
        """The cached list while it is fresh, never asking the upstream (pages that must not wait)."""
        return await self._configurations.cached_models(slug, self._ttl)
