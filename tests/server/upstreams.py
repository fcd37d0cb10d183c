"""Configurations whose upstream is the fake OpenAI server replaying the recorded transcripts."""

from __future__ import annotations

from typing import Any

from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as transcript


def openai_configuration(
    upstream: FakeUpstream, *, slug: str = "gpt", api_key: str, **fields: Any
) -> ConfigurationCreate:
    """An `openai` configuration of the recorded model, sending its calls to `upstream`."""
    return ConfigurationCreate(
        slug=slug,
        provider="openai",
        model="gpt-4o-mini",
        base_url=transcript.base_url(upstream.url),
        api_key=api_key,
        **fields,
    )
