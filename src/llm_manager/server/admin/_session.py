"""Who is signed in, what they may do, and the CSRF check — the admin UI's request dependencies.

Every gated route declares its permission with `Needs("view-llm-configs")` (or `Needs(SUPER_ADMIN)`
for user and role management); the permission is checked on the server, on every request, against
the roles as they are in the database now. Every state-changing request is checked by `csrf_guard`
(a dependency of the whole admin router): the session's token must come back in the `csrf_token`
form field or the `X-CSRF-Token` header.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from llm_manager.errors import PermissionDeniedError
from llm_manager.server.deps import Manager
from llm_manager.services.accounts import SUPER_ADMIN
from llm_manager.services.activity import Actor
from llm_manager.services.web_sessions import SessionUser

SESSION_COOKIE = "llmm_session"
LOGIN_PATH = "/admin/login"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def current_user(request: Request, llm: Manager) -> SessionUser:
    cached: SessionUser | None = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    user = await llm.services.sessions.resolve(request.cookies.get(SESSION_COOKIE))
    request.state.user = user
    return user


SignedInUser = Annotated[SessionUser, Depends(current_user)]


class Needs:
    """A dependency that refuses a user holding none of `permissions` (403).

    Several permissions mean any one of them will do (reading conversations: your own with
    `test-llm-configs`, everyone's with `view-llm-conversations`). Tests read `.permissions`.
    """

    def __init__(self, *permissions: str) -> None:
        if not permissions:
            raise ValueError("Needs() takes at least one permission")
        self.permissions = permissions
        self.permission = permissions[0]

    async def __call__(self, user: SignedInUser) -> SessionUser:
        if not any(_holds(user, permission) for permission in self.permissions):
            what = " or ".join(
                "super-admin role" if permission == SUPER_ADMIN else f"{permission} permission"
                for permission in self.permissions
            )
            raise PermissionDeniedError(f"this needs the {what}")
        return user


def _holds(user: SessionUser, permission: str) -> bool:
    return user.is_super_admin if permission == SUPER_ADMIN else user.may(permission)


async def csrf_guard(request: Request, llm: Manager) -> None:
    """Router-wide: a state-changing request must carry its session's CSRF token.

    Sign-in has no session yet; it checks a token of its own (`login.py`).
    """
    if request.method in _SAFE_METHODS or request.url.path == LOGIN_PATH:
        return
    user = await current_user(request, llm)
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not presented or not hmac.compare_digest(presented.encode(), user.csrf_token.encode()):
        raise PermissionDeniedError("the form has expired or did not come from this site; reload the page")


def actor(request: Request, user: SessionUser) -> Actor:
    """The user as the activity log names them."""
    return Actor(name=user.email, user_id=user.user_id, address=client_address(request))


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""
