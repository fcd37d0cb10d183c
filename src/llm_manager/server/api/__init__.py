"""The management JSON API under `/api`: one module per resource, each a thin adapter over a service.

The conventions every route follows (money as exact decimal strings, UTC times, `{"data": [...]}`
lists, keyset pagination, 404 for another application's objects) are written down in `schemas`.
"""

from __future__ import annotations

from fastapi import APIRouter

from llm_manager.server.api import applications, budgets, configurations, metrics, stats, tokens, usage

router = APIRouter(prefix="/api")
router.include_router(configurations.router)
router.include_router(applications.router)
router.include_router(tokens.router)
router.include_router(usage.router)
router.include_router(stats.router)
router.include_router(metrics.router)
router.include_router(budgets.router)
