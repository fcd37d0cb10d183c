"""`/api/metrics`: custom metrics an application records about its calls or about itself.

A metric tied to a call (`log_id`) must be about one of the caller's own application's calls;
another application's call is not found. Every metric recorded here also carries the application
it belongs to, so listing by application finds it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from llm_manager.errors import NotFoundError
from llm_manager.server.api.schemas import ListOf, MetricCreate, MetricPublic, MetricRecorded
from llm_manager.server.auth import ManagementCaller
from llm_manager.server.deps import Manager

router = APIRouter(prefix="/metrics", tags=["metrics"])
MAX_LIST = 1000


@router.post("", status_code=201, summary="Record a custom metric")
async def record_metric(body: MetricCreate, llm: Manager, caller: ManagementCaller) -> MetricRecorded:
    """A number, JSON data, or both; about one call (`log_id`) or about the application."""
    application_id = caller.application_id
    if body.log_id is not None:
        row = await llm.usage.get(body.log_id, application_id=caller.scope())
        if row is None:
            raise NotFoundError(f"usage log {body.log_id!r} not found")
        # An admin's metric about another application's call belongs to that application.
        application_id = row.application_id if row.application_id is not None else application_id
    metric_id = await llm.record_metric(
        body.name, body.value, data=body.data, log_id=body.log_id, application_id=application_id
    )
    return MetricRecorded(
        id=metric_id,
        name=body.name,
        value=body.value,
        data=body.data,
        log_id=body.log_id,
        application_id=application_id,
    )


@router.get("", summary="List recent custom metrics")
async def list_metrics(
    llm: Manager,
    caller: ManagementCaller,
    name: Annotated[str | None, Query(description="Only metrics with this name.")] = None,
    log_id: Annotated[str | None, Query(description="Only metrics about this call.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> ListOf[MetricPublic]:
    """Newest first; the caller's application's metrics (every application's for an admin token)."""
    if log_id is not None and await llm.usage.get(log_id, application_id=caller.scope()) is None:
        raise NotFoundError(f"usage log {log_id!r} not found")
    metrics = await llm.metrics.list_recent(
        name=name,
        usage_log_id=log_id,
        application_id=None if log_id is not None else caller.scope(),
        limit=limit,
    )
    return ListOf(data=[MetricPublic.model_validate(metric) for metric in metrics])
