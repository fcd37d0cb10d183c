"""Adapter tests share the one pooled client shape the pipeline uses (`upstream` is in tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from llm_manager.providers import _wire
from llm_manager.providers._http import UpstreamClient
from llm_manager.testing.fake_upstream import FakeUpstream


class CountingUpstream(FakeUpstream):
    """The fake upstream, also counting the TCP connections it accepted: pooling made visible."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await super()._serve(reader, writer)


@pytest.fixture
async def http() -> AsyncIterator[UpstreamClient]:
    async with _wire.new_http_client() as client:
        yield client


@pytest.fixture
def counting_upstream() -> Iterator[CountingUpstream]:
    with CountingUpstream() as server:
        yield server
