"""Adapter tests share the one pooled client shape the pipeline uses (`upstream` is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from llm_manager.providers import _wire


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with _wire.new_http_client() as client:
        yield client
