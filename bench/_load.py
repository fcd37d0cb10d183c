"""The gateway benchmark's load generator: keep-alive HTTP/1.1 clients on httptools, timed per request.

Not httpx: at hundreds of streams and thousands of requests per second the client shares a core
with the mock upstream, and httpx's per-request and per-line Python costs would make the load
generator the bottleneck. This client pre-encodes each request once, parses responses with
httptools' C parser (chunked bodies included), and records `time.perf_counter_ns()` when the
request was written, when each part of the body arrived that carries text, and when the
response ended. Nothing is validated while timing; `check_*` run over the replies afterwards.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools
import orjson

_TEXT = re.compile(rb'"content":\s?"[^"]')
"""A streamed chunk carrying text (not the role chunk's empty `"content":""`)."""


@dataclass(slots=True)
class Reply:
    started_ns: int
    ended_ns: int = 0
    status: int = 0
    body: bytes = b""
    text_ns: list[int] = field(default_factory=list)
    """Arrival of each body part that carried text (streams only)."""
    error: str | None = None
    sequence: int = 0
    """In a closed loop: 0 for a client's first request (sent in the opening burst), then 1, 2, ..."""

    @property
    def latency_ns(self) -> int:
        return self.ended_ns - self.started_ns

    @property
    def ttft_ns(self) -> int | None:
        return self.text_ns[0] - self.started_ns if self.text_ns else None

    def gaps_ns(self) -> list[int]:
        return [later - earlier for earlier, later in zip(self.text_ns, self.text_ns[1:], strict=False)]


@dataclass(frozen=True)
class Target:
    """Where to send one kind of request, and the exact bytes of that request."""

    name: str
    host: str
    port: int
    request: bytes
    stream: bool

    @classmethod
    def chat(cls, name: str, port: int, path: str, model: str, *, token: str | None, stream: bool) -> Target:
        body: dict[str, object] = {
            "model": model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 16,
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        payload = orjson.dumps(body)
        headers = [
            f"POST {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
        ]
        if token:
            headers.append(f"Authorization: Bearer {token}")
        return cls(name, "127.0.0.1", port, ("\r\n".join(headers) + "\r\n\r\n").encode() + payload, stream)


class _Connection(asyncio.Protocol):
    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.reply: Reply | None = None
        self.parts: list[bytes] = []
        self.done: asyncio.Future[None] | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(f"connection lost: {exc}" if exc else "connection closed by the server")

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._finish(f"bad response: {error}")
            if self.transport is not None:
                self.transport.close()

    def on_headers_complete(self) -> None:
        if self.reply is not None:
            self.reply.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)
        if self.stream and self.reply is not None and _TEXT.search(body):
            self.reply.text_ns.append(time.perf_counter_ns())

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.closed = True
        self._finish(None)

    def _finish(self, error: str | None) -> None:
        reply, done = self.reply, self.done
        if reply is None or done is None or done.done():
            return
        reply.ended_ns = time.perf_counter_ns()
        reply.body = b"".join(self.parts)
        reply.error = error
        done.set_result(None)

    async def send(self, request: bytes, limit_s: float) -> Reply:
        assert self.transport is not None
        self.parser = httptools.HttpResponseParser(self)
        self.parts = []
        self.done = asyncio.get_running_loop().create_future()
        self.reply = reply = Reply(started_ns=time.perf_counter_ns())
        self.transport.write(request)
        try:
            async with asyncio.timeout(limit_s):
                await self.done
        except TimeoutError:
            reply.ended_ns = time.perf_counter_ns()
            reply.error = f"no complete reply within {limit_s:g}s"
            self.transport.close()
            self.closed = True
        return reply


class Client:
    """One keep-alive connection to a target, reopened when the server closes it."""

    def __init__(self, target: Target, limit_s: float = 30.0) -> None:
        self.target = target
        self.limit_s = limit_s
        """Seconds a whole reply may take before it counts as an error."""
        self._connection: _Connection | None = None
        self.connects = 0

    async def call(self) -> Reply:
        connection = self._connection
        if connection is None or connection.closed:
            try:
                _, connection = await asyncio.get_running_loop().create_connection(
                    lambda: _Connection(self.target.stream), self.target.host, self.target.port
                )
            except OSError as error:
                now = time.perf_counter_ns()
                return Reply(started_ns=now, ended_ns=now, error=f"connect failed: {error}")
            self._connection = connection
            self.connects += 1
        return await connection.send(self.target.request, self.limit_s)

    def close(self) -> None:
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        self._connection = None


@dataclass
class LoadResult:
    replies: list[Reply]
    wall_ns: int
    concurrency: int

    @property
    def per_second(self) -> float:
        return len(self.replies) / (self.wall_ns / 1e9) if self.wall_ns else 0.0


async def closed_loop(
    target: Target, concurrency: int, duration: float, *, limit_s: float = 30.0, spread_s: float = 0.0
) -> LoadResult:
    """`concurrency` clients, each sending its next request as soon as the last one ended, for
    `duration` seconds; requests in flight at the deadline are waited for and counted.

    With `spread_s`, client `i` sends its first request `i / concurrency * spread_s` seconds in,
    so that first requests arrive evenly over that time instead of in one burst.
    """
    clients = [Client(target, limit_s) for _ in range(concurrency)]
    replies: list[Reply] = []
    started = time.perf_counter_ns()
    deadline = started + int(duration * 1e9)

    async def worker(client: Client, delay: float) -> None:
        await asyncio.sleep(delay)
        sequence = 0
        while time.perf_counter_ns() < deadline:
            reply = await client.call()
            reply.sequence = sequence
            replies.append(reply)
            sequence += 1

    try:
        await asyncio.gather(
            *(worker(client, index / concurrency * spread_s) for index, client in enumerate(clients))
        )
    finally:
        for client in clients:
            client.close()
    return LoadResult(replies, time.perf_counter_ns() - started, concurrency)


async def one_at_a_time(client: Client, count: int) -> list[Reply]:
    return [await client.call() for _ in range(count)]


# -- checks, run after the timing -------------------------------------------------------------


def check_completion(expected_text: str) -> Callable[[Reply], str | None]:
    def check(reply: Reply) -> str | None:
        if reply.error:
            return reply.error
        if reply.status != 200:
            return f"HTTP {reply.status}: {reply.body[:200]!r}"
        try:
            payload = orjson.loads(reply.body)
            text = payload["choices"][0]["message"]["content"]
            usage = payload["usage"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            return f"not a chat.completion: {reply.body[:200]!r}"
        if text != expected_text or not usage:
            return f"wrong reply {text!r}"
        return None

    return check


def check_stream(expected_text: str) -> Callable[[Reply], str | None]:
    def check(reply: Reply) -> str | None:
        if reply.error:
            return reply.error
        if reply.status != 200:
            return f"HTTP {reply.status}: {reply.body[:200]!r}"
        texts: list[str] = []
        usage = done = False
        for line in reply.body.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                return f"bad SSE data: {data[:200]!r}"
            if "error" in chunk:
                return f"stream error: {chunk['error']}"
            usage = usage or bool(chunk.get("usage"))
            for choice in chunk.get("choices") or ():
                texts.append((choice.get("delta") or {}).get("content") or "")
        if not done:
            return "stream ended without data: [DONE]"
        if "".join(texts) != expected_text:
            return f"wrong text {''.join(texts)!r}"
        if not usage:
            return "no usage chunk"
        return None

    return check


def failures(replies: list[Reply], check: Callable[[Reply], str | None]) -> list[str]:
    return [problem for problem in map(check, replies) if problem is not None]
