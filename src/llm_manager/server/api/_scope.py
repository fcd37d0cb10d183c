"""Who may see and change what, in one place: the ownership rules every `/api` route applies.

A management token works within its own application; an `admin` token works across all of them.
Another application's object is reported *not found*, never *forbidden*, so a caller cannot learn
that it exists. Forbidden (403) is only for actions the caller's kind of token may never take
(creating applications, admin tokens, global configurations), whatever the object.
"""

from __future__ import annotations

from llm_manager.errors import NotFoundError, PermissionDeniedError
from llm_manager.services.tokens import Principal


def require_admin(caller: Principal, action: str) -> None:
    if not caller.is_admin:
        raise PermissionDeniedError(f"only admin tokens may {action}")


def application_name(caller: Principal, requested: str | None) -> str:
    """The application a request is about: the caller's own unless an admin names another.

    A non-admin naming another application gets the same error as for a missing one.
    """
    if requested is None:
        return caller.application
    if not caller.is_admin and requested != caller.application:
        raise NotFoundError(f"application {requested!r} not found")
    return requested
