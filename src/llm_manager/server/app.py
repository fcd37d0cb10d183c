"""`create_app()`: wires routers and the lifespan that owns the manager (engine, HTTP client, writer)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from llm_manager.manager import LLMManager
from llm_manager.server import admin, api, docs, errors, health, observability, openai_api, streams
from llm_manager.server.api import conversations, templates
from llm_manager.server.fast_path import FastRoutes
from llm_manager.server.lifecycle import DrainMiddleware, Lifecycle
from llm_manager.server.observability import GatewayMetrics
from llm_manager.settings import Settings, load_settings


class GatewayApp(FastAPI):
    """FastAPI with `FastRoutes` outermost, so the hottest route skips FastAPI's layers."""

    def __init__(self, *, lifecycle: Lifecycle, **options: Any) -> None:
        super().__init__(**options)
        self.state.lifecycle = lifecycle

    def build_middleware_stack(self) -> ASGIApp:
        return FastRoutes(super().build_middleware_stack(), self, self.state.lifecycle)


def create_app(settings: Settings | None = None, *, freeze_heap: bool = False) -> FastAPI:
    """The application; `freeze_heap` is for a process that only serves (see `serve_app`)."""
    resolved = settings or load_settings()
    lifecycle = Lifecycle(resolved.shutdown_grace)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = GatewayMetrics(
            queue_depth=lambda: app.state.llm.services.writer.depth,
            queue_capacity=resolved.usage_queue_size,
        )
        app.state.metrics = metrics
        async with LLMManager.open(resolved, observers=(metrics.observe,)) as llm:
            app.state.llm = llm
            if freeze_heap:
                gc.collect()
                gc.freeze()
            with lifecycle.on_signals():
                yield

    app = GatewayApp(
        lifecycle=lifecycle,
        title="LLM Manager",
        version=version("llm-manager"),
        description="One managed place through which applications use Large Language Models.",
        lifespan=lifespan,
        docs_url=None,  # served by `docs.router` from vendored assets: the product runs offline
        redoc_url=None,
    )
    app.add_middleware(DrainMiddleware, lifecycle=lifecycle)
    errors.install(app, is_page=admin.is_admin_page, page=admin.error_page)
    app.include_router(health.router)
    app.include_router(observability.router)
    app.include_router(openai_api.router)
    app.include_router(streams.router)
    app.include_router(api.router)
    app.include_router(conversations.router)
    app.include_router(templates.router)
    app.include_router(docs.router)
    docs.mount_static(app)
    admin.install(app)
    return app


def serve_app() -> FastAPI:
    """What `llm-manager serve` runs: the app, with its start-up heap frozen once started.

    After start-up the process holds about 170,000 long-lived objects (modules, models, tables,
    routes). The cyclic garbage collector walks all of them on every full collection, a pause of
    about 100 ms (measured here) that lands on every open stream; `gc.freeze()` moves them out of
    its sight, so collections only walk what requests allocate.
    """
    return create_app(freeze_heap=True)
