"""The configurations a fresh install starts with: a working demo, and Ollama examples to enable."""

from __future__ import annotations

from llm_manager.errors import NotFoundError
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.configurations import ConfigurationService

OLLAMA_URL = "http://localhost:11434"
DEFAULT_CONFIGURATIONS = (
    ConfigurationCreate(
        slug="demo",
        name="Demo (offline)",
        provider="demo",
        model="demo-chat",
        is_default=True,
        default_params={"temperature": 0.7, "max_tokens": 256},
    ),
    ConfigurationCreate(
        slug="ollama-qwen3",
        name="Ollama · Qwen3 4B",
        provider="ollama",
        model="qwen3:4b",
        base_url=OLLAMA_URL,
        is_active=False,
    ),
    ConfigurationCreate(
        slug="ollama-deepseek-coder",
        name="Ollama · DeepSeek Coder 6.7B",
        provider="ollama",
        model="deepseek-coder:6.7b",
        base_url=OLLAMA_URL,
        is_active=False,
    ),
)


async def seed_defaults(configurations: ConfigurationService) -> list[str]:
    """Create whichever default configurations are missing; returns the slugs created."""
    created = []
    for spec in DEFAULT_CONFIGURATIONS:
        try:
            await configurations.get(spec.slug)
        except NotFoundError:
            await configurations.create(spec)
            created.append(spec.slug)
    return created
