"""The management JSON API under `/api`: one module per resource, each a thin adapter over a service."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api")
