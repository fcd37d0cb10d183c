"""Who is calling: API tokens from `Authorization: Bearer` or `x-api-key`, with identical checks.

Both headers go through the same function; a request carrying both must carry the same token
in each (otherwise which one counted would depend on the header order — refused instead).
Routes declare what they need with `InferenceCaller` or `ManagementCaller`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from llm_manager.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from llm_manager.manager import LLMManager
from llm_manager.server.deps import Manager
from llm_manager.services.tokens import Group, Principal


def presented_token(request: Request) -> str | None:
    headers = request.headers
    authorization = headers.get("authorization")
    bearer = None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise UnauthenticatedError("the Authorization header must be 'Bearer <token>'")
        bearer = value.strip()
    api_key = headers.get("x-api-key")
    if bearer is not None and api_key is not None and bearer != api_key.strip():
        raise UnauthenticatedError("Authorization and x-api-key carry different tokens")
    return bearer if bearer is not None else (api_key.strip() if api_key is not None else None)


async def authenticate(request: Request, llm: LLMManager, group: Group) -> Principal:
    """The caller behind the request's token, allowed to use the `group` endpoints."""
    principal = await llm.services.tokens.authenticate(presented_token(request))
    if not principal.may(group):
        raise PermissionDeniedError(f"this token may not use the {group} endpoints")
    request.state.principal = principal
    return principal


def _requiring(group: Group) -> Callable[[Request, LLMManager], Awaitable[Principal]]:
    async def dependency(request: Request, llm: Manager) -> Principal:
        return await authenticate(request, llm, group)

    return dependency


InferenceCaller = Annotated[Principal, Depends(_requiring("inference"))]
ManagementCaller = Annotated[Principal, Depends(_requiring("management"))]


async def authorize_configuration(llm: LLMManager, caller: Principal, slug: str) -> None:
    """The configuration must be visible to the caller's application and within the token's scope.

    Anything else is "not found", so a token cannot learn which other configurations exist.
    """
    try:
        chain = await llm.services.configurations.resolve_chain(slug, application_id=caller.application_id)
    except NotFoundError:
        chain = []
    if not chain or not caller.may_call(chain[0].id):
        raise NotFoundError(f"model {slug!r} not found (it must be a configuration this token may use)")
