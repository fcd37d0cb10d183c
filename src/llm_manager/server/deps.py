"""Request dependencies as `Annotated` aliases, so routes declare what they need in one word."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llm_manager.manager import LLMManager


async def get_manager(request: Request) -> LLMManager:
    manager: LLMManager = request.app.state.llm
    return manager


Manager = Annotated[LLMManager, Depends(get_manager)]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Every event stream: no caching, and no buffering by nginx-style proxies."""
