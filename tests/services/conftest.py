"""Fixtures of the service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llm_manager.manager import LLMManager
from llm_manager.settings import Settings


@pytest.fixture
async def two_processes(settings: Settings) -> AsyncIterator[list[LLMManager]]:
    """Two managers on one database, as two server processes would be (no Redis between them)."""
    async with LLMManager.open(settings) as first, LLMManager.open(settings) as second:
        yield [first, second]
