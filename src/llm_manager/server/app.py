"""`create_app()`: wires routers and the lifespan that owns the manager (engine, HTTP client, writer)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from llm_manager.manager import LLMManager
from llm_manager.server import health
from llm_manager.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    resolved = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with LLMManager.open(resolved) as llm:
            app.state.llm = llm
            yield

    app = FastAPI(
        title="LLM Manager",
        version=version("llm-manager"),
        description="One managed place through which applications use Large Language Models.",
        lifespan=lifespan,
        # FastAPI's /docs pages load Swagger UI from a CDN; the product runs offline, so only the
        # schema is served until the UI assets are vendored.
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(health.router)
    return app
