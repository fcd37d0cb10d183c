"""The app served by uvicorn on a free local port, in a thread: for SDK clients, browsers, scripts.

Tests that need a real socket (client disconnects, the `openai` SDK, Chromium) and the screenshot
script all start the server the same way; `run` executes manager work on the server's own event
loop, where its database connections live.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from llm_manager.manager import LLMManager

ManagerWork = Callable[[LLMManager], Awaitable[Any]]


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread: signals stay with the caller
        pass


@dataclass(frozen=True)
class LiveServer:
    app: FastAPI
    base_url: str
    loop: asyncio.AbstractEventLoop

    def run(self, work: ManagerWork, *, timeout: float = 120) -> Any:
        """Run `work(manager)` on the server's loop and wait for its result."""

        async def call() -> Any:
            return await work(self.app.state.llm)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout)


@contextmanager
def serve_in_thread(app: FastAPI, *, start_timeout: float = 30) -> Iterator[LiveServer]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _ThreadedServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio")
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(app=app, base_url=f"http://127.0.0.1:{port}", loop=loop)
    finally:
        server.should_exit = True
        thread.join(30)
        loop.close()
