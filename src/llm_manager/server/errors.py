"""One error shape for every response: `{"error": {"message", "type", "code", "param"}}`.

The shape is OpenAI's, so the official SDKs raise their usual exceptions against us. Every
exception of our tree maps to one status here; anything else is a 500 whose message reveals
nothing about the server (the traceback goes to the log, never to the caller).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from llm_manager.errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConflictError,
    ContextLengthExceededError,
    GuardRefusedError,
    InvalidInputError,
    LLMManagerError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitedError,
    SettingsError,
    UnauthenticatedError,
    UpstreamTimeoutError,
)

logger = logging.getLogger(__name__)

# (exception class, HTTP status, error type) — the first match wins, so subclasses come first.
_MAPPING: tuple[tuple[type[LLMManagerError], int, str], ...] = (
    (UnauthenticatedError, 401, "authentication_error"),
    (PermissionDeniedError, 403, "permission_error"),
    (NotFoundError, 404, "not_found_error"),
    (ConflictError, 409, "conflict_error"),
    (InvalidInputError, 400, "invalid_request_error"),
    (BudgetExceededError, 429, "budget_exceeded"),
    (GuardRefusedError, 429, "rate_limit_error"),
    (ContextLengthExceededError, 400, "invalid_request_error"),
    (BadRequestError, 400, "invalid_request_error"),
    (RateLimitedError, 429, "upstream_rate_limit_error"),
    (UpstreamTimeoutError, 504, "upstream_timeout_error"),
    (AuthenticationError, 502, "upstream_error"),
    (ProviderError, 502, "upstream_error"),
    (SettingsError, 500, "server_error"),
)


def error_body(message: str, *, type_: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "code": code, "param": param}})


def classify(error: LLMManagerError) -> tuple[int, str]:
    for kind, status, type_ in _MAPPING:
        if isinstance(error, kind):
            return status, type_
    return 500, "server_error"


def error_response(error: LLMManagerError) -> Response:
    status, type_ = classify(error)
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if status == 429 and retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    param = error.field if isinstance(error, InvalidInputError) else None
    body = error_body(str(error), type_=type_, code=error.code, param=param)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


PageErrors = Callable[[Request, int, str, Exception | None], Response]
"""Renders an error as an HTML page, for requests `is_page` says belong to the admin UI."""


@dataclass(frozen=True)
class _Handlers:
    is_page: Callable[[Request], bool]
    page: PageErrors

    async def llm_manager_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, LLMManagerError)
        if self.is_page(request):
            return self.page(request, classify(error)[0], str(error), error)
        return error_response(error)

    async def validation_error(self, request: Request, error: Exception) -> Response:
        response = await _validation_error(request, error)
        if self.is_page(request):
            message = orjson.loads(response.body)["error"]["message"]
            return self.page(request, 400, message, error)
        return response

    async def http_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if self.is_page(request):
            return self.page(request, error.status_code, str(error.detail), error)
        return await _http_error(request, error)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return validation_error_response(error.errors())


def validation_error_response(errors: Sequence[Any]) -> Response:
    """A 400 naming the first invalid field, from pydantic's error list (FastAPI's or our own)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = ".".join(location) or None
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    if first.get("type") == "extra_forbidden":
        message = f"{param}: unknown field"
    if first.get("type") == "json_invalid":
        message, param = "the request body is not valid JSON", None
    body = error_body(message, type_="invalid_request_error", code="invalid_input", param=param)
    return Response(body, status_code=400, media_type="application/json")


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    body = error_body(str(error.detail), type_="invalid_request_error", code=code)
    return Response(body, status_code=error.status_code, media_type="application/json", headers=error.headers)


async def _unexpected(request: Request, error: Exception) -> Response:
    return unexpected_error_response(request)


def unexpected_error_response(request: Request) -> Response:
    """A 500 that says nothing about the server; call it while handling the exception (it logs it)."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    body = error_body("internal server error", type_="server_error", code="internal_error")
    return Response(body, status_code=500, media_type="application/json")


def install(app: FastAPI, *, is_page: Callable[[Request], bool], page: PageErrors) -> None:
    """One error shape for the APIs; pages (the admin UI) get theirs rendered by `page`."""
    handlers = _Handlers(is_page, page)
    app.add_exception_handler(LLMManagerError, handlers.llm_manager_error)
    app.add_exception_handler(RequestValidationError, handlers.validation_error)
    app.add_exception_handler(HTTPException, handlers.http_error)
    app.add_exception_handler(Exception, _unexpected)
