"""Sign in, sign out, and the signed-in user's own account (password, sessions)."""

from __future__ import annotations

import hmac
import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from llm_manager.errors import InvalidInputError, SignInThrottledError, UnauthenticatedError
from llm_manager.server.admin._pages import PageRenderer, field_errors, redirect
from llm_manager.server.admin._session import (
    LOGIN_PATH,
    SESSION_COOKIE,
    SignedInUser,
    actor,
    client_address,
)
from llm_manager.server.deps import Manager

router = APIRouter()
_LOGIN_CSRF_COOKIE = "llmm_login_csrf"
"""Sign-in has no session yet: a double-submit token (cookie + form field) stands in for it."""


@router.get(LOGIN_PATH)
async def login_form(
    request: Request, pages: PageRenderer, next: Annotated[str, Query()] = "/admin"
) -> Response:
    token = secrets.token_urlsafe(24)
    response = pages.render(request, "login.html", {"next": _safe_next(next), "login_csrf": token})
    response.set_cookie(
        _LOGIN_CSRF_COOKIE, token, path=LOGIN_PATH, httponly=True, samesite="strict", secure=_https(request)
    )
    return response


@router.post(LOGIN_PATH)
async def login(
    request: Request,
    llm: Manager,
    pages: PageRenderer,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/admin",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    expected = request.cookies.get(_LOGIN_CSRF_COOKIE, "")
    error: str | None = None
    status = 401
    retry_after: float | None = None
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        error, status = "The sign-in form expired; please try again.", 400
    else:
        try:
            signed_in = await llm.services.sessions.sign_in(
                email,
                password,
                address=client_address(request),
                user_agent=request.headers.get("user-agent", ""),
            )
        except SignInThrottledError as refused:
            error, status, retry_after = f"{str(refused).capitalize()}.", 429, refused.retry_after
        except UnauthenticatedError:
            error = "Wrong email or password, or the account is deactivated."
        else:
            await llm.services.activity.record(actor(request, signed_in.user), "user.sign-in")
            signed = redirect(_safe_next(next))
            signed.set_cookie(
                SESSION_COOKIE,
                signed_in.cookie,
                path="/",
                httponly=True,
                samesite="lax",
                secure=_https(request),
                max_age=llm.settings.session_max_age,
            )
            signed.delete_cookie(_LOGIN_CSRF_COOKIE, path=LOGIN_PATH)
            return signed
    token = secrets.token_urlsafe(24)
    response = pages.render(
        request,
        "login.html",
        {"next": _safe_next(next), "login_csrf": token, "error": error, "email": email},
        status_code=status,
    )
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    response.set_cookie(
        _LOGIN_CSRF_COOKIE, token, path=LOGIN_PATH, httponly=True, samesite="strict", secure=_https(request)
    )
    return response


@router.post("/admin/logout")
async def logout(request: Request, user: SignedInUser, llm: Manager) -> Response:
    await llm.services.sessions.sign_out(user.session_id)
    await llm.services.activity.record(actor(request, user), "user.sign-out")
    response = redirect(LOGIN_PATH, flash="You are signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/admin/account")
async def account(request: Request, user: SignedInUser, llm: Manager, pages: PageRenderer) -> Response:
    sessions = await llm.services.sessions.list_for(user.user_id)
    return pages.render(request, "account.html", {"sessions": sessions, "errors": {}})


@router.post("/admin/account/password")
async def change_password(
    request: Request,
    user: SignedInUser,
    llm: Manager,
    pages: PageRenderer,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    confirm_password: Annotated[str, Form()] = "",
) -> Response:
    try:
        if new_password != confirm_password:
            raise InvalidInputError(
                "confirm_password: the two new passwords differ", field="confirm_password"
            )
        await llm.services.accounts.change_password(
            user.user_id, current_password, new_password, keep_session=user.session_id
        )
    except InvalidInputError as error:
        sessions = await llm.services.sessions.list_for(user.user_id)
        errors = field_errors(error, default="new_password")
        return pages.render(
            request, "account.html", {"sessions": sessions, "errors": errors}, status_code=422
        )
    await llm.services.activity.record(actor(request, user), "user.password-change")
    return redirect("/admin/account", flash="Password changed. Your other sessions have been signed out.")


@router.post("/admin/account/sessions/end-others")
async def end_other_sessions(request: Request, user: SignedInUser, llm: Manager) -> Response:
    ended = await llm.services.sessions.end_others(user.user_id, keep=user.session_id)
    await llm.services.activity.record(actor(request, user), "user.end-sessions", detail=f"{ended} ended")
    return redirect("/admin/account", flash=f"Signed out {ended} other session{'s' if ended != 1 else ''}.")


def _safe_next(target: str) -> str:
    """Only our own admin pages: an open redirect would make the sign-in page a phishing tool."""
    if target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin"


def _https(request: Request) -> bool:
    return request.url.scheme == "https"
