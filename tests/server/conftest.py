"""Server fixtures: the app in-process (`client`) or on a real socket (`live`), plus token helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llm_manager.manager import LLMManager
from llm_manager.server.app import create_app
from llm_manager.settings import Settings
from llm_manager.testing.live_server import serve_in_thread

T = TypeVar("T")


@dataclass
class Gateway:
    """A running app and a way to run manager calls on its event loop (to set things up)."""

    app: FastAPI
    base_url: str
    run: Callable[[Callable[[LLMManager], Awaitable[Any]]], Any]

    @property
    def llm(self) -> LLMManager:
        manager: LLMManager = self.app.state.llm
        return manager

    def token(
        self,
        application: str = "app",
        *,
        groups: Sequence[str] = ("inference",),
        configurations: Sequence[str] | None = None,
        **options: Any,
    ) -> str:
        """Issue a token (creating the application if needed) and return its secret."""

        async def issue(llm: LLMManager) -> str:
            names = {view.name for view in await llm.applications.list_all()}
            if application not in names:
                await llm.applications.create(application)
            issued = await llm.tokens.create(
                application, groups=groups, configurations=configurations, **options
            )
            return issued.secret

        secret: str = self.run(issue)
        return secret

    def headers(self, secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def gateway(client: TestClient) -> Gateway:
    assert client.portal is not None
    portal = client.portal

    def run(work: Callable[[LLMManager], Awaitable[Any]]) -> Any:
        return portal.call(work, client.app.state.llm)  # type: ignore[attr-defined]

    return Gateway(app=client.app, base_url="http://testserver", run=run)  # type: ignore[arg-type]


@pytest.fixture
def live(settings: Settings) -> Iterator[Gateway]:
    """The app served by uvicorn on a real port, in a thread (for SDK clients and disconnects)."""
    with serve_in_thread(create_app(settings), start_timeout=20) as server:
        yield Gateway(app=server.app, base_url=server.base_url, run=lambda work: server.run(work, timeout=30))
