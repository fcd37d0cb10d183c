"""The hottest route answered directly, in front of FastAPI's request machinery.

FastAPI runs every request through a dozen layers — three built-in middlewares, exception and
exit-stack middlewares, the router, dependency resolution, `Request.body()`, JSON decoding, then
model validation. For `POST /v1/chat/completions`, the call applications make all day, those
layers cost about as much CPU as our whole call pipeline. `FastRoutes` answers that route with
the very same endpoint function, resolving its three parameters (the validated body, the caller,
the manager) by hand and producing the same responses and error bodies; every other request, and
every request while the server drains, goes through FastAPI untouched.

The route stays declared on its FastAPI router, so it is documented in OpenAPI and works the
same in an app built without this dispatcher.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_manager.errors import LLMManagerError
from llm_manager.manager import LLMManager
from llm_manager.server import openai_api
from llm_manager.server.auth import authenticate
from llm_manager.server.errors import (
    error_body,
    error_response,
    unexpected_error_response,
    validation_error_response,
)
from llm_manager.server.lifecycle import Lifecycle

Endpoint = Callable[[Request, bytes, LLMManager], Awaitable[Response]]
MAX_BODY_BYTES = 32 * 1024 * 1024
"""A larger request body is refused (413) as soon as it exceeds this, without reading the rest:
a million-token conversation is about 4 MB of JSON."""


class _BodyTooLargeError(Exception):
    pass


async def _chat_completions(request: Request, body: bytes, llm: LLMManager) -> Response:
    caller = await authenticate(request, llm, "inference")  # before the body, as FastAPI orders them
    try:
        parsed = openai_api.ChatCompletionRequest.model_validate_json(body)
    except ValidationError as error:
        return validation_error_response(error.errors())
    return await openai_api.chat_completions(parsed, caller, llm, request)


ROUTES: Mapping[tuple[str, str], Endpoint] = MappingProxyType(
    {("POST", "/v1/chat/completions"): _chat_completions}
)
"""(method, path) → how to answer it; read-only."""


class FastRoutes:
    """ASGI middleware answering `ROUTES` itself and passing everything else to `app`."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI, lifecycle: Lifecycle) -> None:
        self.app = app
        self.fastapi = fastapi
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = ROUTES.get((scope.get("method", ""), scope["path"])) if scope["type"] == "http" else None
        if endpoint is None or self.lifecycle.draining.is_set():
            await self.app(scope, receive, send)
            return
        scope["app"] = self.fastapi
        request = Request(scope, receive)
        response = await self._respond(endpoint, request, receive)
        if response is not None:
            await response(scope, receive, send)

    async def _respond(self, endpoint: Endpoint, request: Request, receive: Receive) -> Response | None:
        """The endpoint's response, or an error response in our one shape; None if the client left."""
        try:
            body = await _read_body(receive)
        except _BodyTooLargeError:
            message = f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB"
            content = error_body(message, type_="invalid_request_error", code="request_too_large")
            return Response(content, status_code=413, media_type="application/json")
        if body is None:
            return None
        try:
            return await endpoint(request, body, self.fastapi.state.llm)
        except LLMManagerError as error:
            return error_response(error)
        except Exception:
            return unexpected_error_response(request)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (None when the client disconnected before sending it)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BodyTooLargeError
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
