"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from llm_manager.server.deps import Manager
from llm_manager.services.health import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and migrated to head")
async def readyz(llm: Manager) -> JSONResponse:
    report = await readiness(llm.services.database)
    return JSONResponse(report.as_dict(), status_code=200 if report.ready else 503)
