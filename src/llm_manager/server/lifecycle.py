"""Graceful shutdown: on SIGTERM stop taking requests, give open streams a grace period, then end them.

uvicorn already stops listening on SIGTERM and waits for open connections; what it cannot know is
that a stream may run for minutes. So the first SIGTERM (or SIGINT) also starts our drain: new
requests on kept-alive connections get a 503, and streams still open when `grace` runs out end
with an `error` event (and are accounted) instead of being cut mid-chunk. The usage writer is
flushed when the lifespan ends, after the last response.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from llm_manager.errors import LLMManagerError
from llm_manager.server.errors import error_body

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShuttingDownError(LLMManagerError):
    """A stream still open when the shutdown grace ran out."""

    code = "shutting_down"


class Lifecycle:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.draining = asyncio.Event()
        """Set on the first SIGTERM: refuse new work."""
        self.stopping = asyncio.Event()
        """Set `grace` seconds later: end what is still running."""

    def begin_drain(self) -> None:
        if self.draining.is_set():
            return
        self.draining.set()
        asyncio.get_running_loop().call_later(self.grace, self.stopping.set)

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        """Chain our drain in front of the signal handlers already installed (uvicorn's).

        Only the main thread may set signal handlers; elsewhere (tests running the app in a
        thread) the drain is started by calling `begin_drain` directly.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}

        def handler(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self.begin_drain)
            chained: Any = previous[signal.Signals(signum)]
            if callable(chained):
                chained(signum, frame)

        for sig in _SIGNALS:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, chained in previous.items():
                signal.signal(sig, chained)


class DrainMiddleware:
    """While draining, answer new HTTP requests with 503 (probes included: the load balancer must see it)."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.lifecycle.draining.is_set():
            await self.app(scope, receive, send)
            return
        body = error_body(
            "the server is shutting down; retry on another instance",
            type_="server_error",
            code="shutting_down",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", b"1"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
