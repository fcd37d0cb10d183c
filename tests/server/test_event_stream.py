"""`EventStreamResponse` against a bare ASGI receive/send pair: hang-ups, normal ends, foreign cancels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.types import Message

from llm_manager.server.event_stream import EventStreamResponse

SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": "/", "headers": []}


class Client:
    """The server side of one connection: what was sent, and a hang-up to trigger."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.gone = asyncio.Event()

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(message.get("body", b"") for message in self.sent[1:])


class Body:
    """An endless event stream that records how it ended."""

    def __init__(self, chunks: int | None = None) -> None:
        self.chunks = chunks
        self.started = asyncio.Event()
        self.ended: str | None = None

    async def __call__(self) -> AsyncIterator[bytes]:
        sent = 0
        try:
            while self.chunks is None or sent < self.chunks:
                yield b"data: x\n\n"
                sent += 1
                self.started.set()
                await asyncio.sleep(0.01)
            self.ended = "finished"
        except asyncio.CancelledError:
            self.ended = "cancelled"
            await asyncio.sleep(0)  # clean-up may await: the cancellation came once
            raise


async def test_a_body_that_ends_is_sent_whole_and_the_task_is_left_uncancelled() -> None:
    client, body = Client(), Body(chunks=3)

    await EventStreamResponse(body(), media_type="text/event-stream")(SCOPE, client.receive, client.send)

    assert body.ended == "finished"
    assert client.body == b"data: x\n\n" * 3
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_a_hang_up_cancels_the_body_once_and_the_response_returns_quietly() -> None:
    client, body = Client(), Body()
    response = EventStreamResponse(body(), media_type="text/event-stream")
    running = asyncio.create_task(response(SCOPE, client.receive, client.send))
    await body.started.wait()

    client.gone.set()

    await asyncio.wait_for(running, 5)  # returns: the hang-up is not an error
    assert running.cancelling() == 0
    assert body.ended == "cancelled"
    assert client.sent[0]["type"] == "http.response.start"


async def test_a_cancellation_from_elsewhere_propagates() -> None:
    client, body = Client(), Body()
    response = EventStreamResponse(body(), media_type="text/event-stream")
    running = asyncio.create_task(response(SCOPE, client.receive, client.send))
    await body.started.wait()

    running.cancel()

    with pytest.raises(asyncio.CancelledError):
        await running
    assert body.ended == "cancelled"
