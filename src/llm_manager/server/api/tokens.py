"""`/api/tokens`: issue, list and revoke API tokens.

A management token issues tokens for its own application only, and never `admin` ones (that
would let it escape its application). The secret is returned once, by the create call; lists
and lookups show the prefix (`llmm_1a2b3c4d`) that names a token everywhere else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from llm_manager.server.api._scope import application_name, require_admin
from llm_manager.server.api.schemas import ListOf, TokenCreate, TokenIssued, TokenPublic
from llm_manager.server.auth import ManagementCaller
from llm_manager.server.deps import Manager

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.get("", summary="List API tokens")
async def list_tokens(
    llm: Manager,
    caller: ManagementCaller,
    include_revoked: Annotated[bool, Query(description="Also list revoked tokens.")] = True,
) -> ListOf[TokenPublic]:
    """The caller's application's tokens (every application's for an admin token)."""
    views = await llm.tokens.list_all(application_id=caller.scope(), include_revoked=include_revoked)
    return ListOf(data=[TokenPublic.model_validate(view) for view in views])


@router.post("", status_code=201, summary="Issue an API token")
async def create_token(body: TokenCreate, llm: Manager, caller: ManagementCaller) -> TokenIssued:
    """The response carries the token's secret: the only time it is ever shown."""
    if "admin" in body.groups:
        require_admin(caller, "issue admin tokens")
    issued = await llm.tokens.create(
        application_name(caller, body.application),
        name=body.name,
        groups=body.groups,
        configurations=body.configurations,
        expires_at=body.expires_at,
        rpm_limit=body.rpm_limit,
        tpm_limit=body.tpm_limit,
    )
    return TokenIssued(secret=issued.secret, token=TokenPublic.model_validate(issued.token))


@router.get("/{prefix}", summary="Get an API token by its prefix")
async def get_token(prefix: str, llm: Manager, caller: ManagementCaller) -> TokenPublic:
    return TokenPublic.model_validate(await llm.tokens.get(prefix, application_id=caller.scope()))


@router.post("/{prefix}/revoke", summary="Revoke an API token")
async def revoke_token(prefix: str, llm: Manager, caller: ManagementCaller) -> TokenPublic:
    """Refused from the next request on, in every server process. Revoking twice is harmless."""
    view = await llm.tokens.revoke(prefix, application_id=caller.scope())
    return TokenPublic.model_validate(view)
