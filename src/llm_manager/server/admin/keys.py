"""Admin page: encryption keys — which keys exist, what each still protects, and rotation.

Only key ids (fingerprints) are ever shown; the keys live in `LLM_MANAGER_SECRET_KEYS` or the key
file. Rotation re-encrypts every stored secret under the newest key, after which older keys can
be removed from the ring.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from llm_manager.server.admin._pages import PageRenderer, redirect
from llm_manager.server.admin._session import Needs, actor
from llm_manager.server.deps import Manager
from llm_manager.services.web_sessions import SessionUser

router = APIRouter()
ManagesKeys = Annotated[SessionUser, Depends(Needs("manage-llm-encryption-keys"))]


@router.get("/admin/keys")
async def keys_page(request: Request, user: ManagesKeys, llm: Manager, pages: PageRenderer) -> Response:
    keys = await llm.secrets.status()
    stale = sum(key.secrets for key in keys if not key.primary)
    return pages.render(request, "keys.html", {"keys": keys, "stale": stale})


@router.post("/admin/keys/rotate")
async def rotate_keys(request: Request, user: ManagesKeys, llm: Manager) -> Response:
    """Re-encrypt every secret under the primary key, in one transaction."""
    moved = await llm.secrets.rotate()
    primary = llm.secrets.key_ring.primary_key_id
    await llm.services.activity.record(
        actor(request, user), "keys.rotate", target=primary, detail=f"{moved} secrets re-encrypted"
    )
    plural = "" if moved == 1 else "s"
    return redirect("/admin/keys", flash=f"Rotated: {moved} secret{plural} re-encrypted under key {primary}.")
