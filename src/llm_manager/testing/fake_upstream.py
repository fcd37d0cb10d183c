"""A scripted HTTP/1.1 server that replays recorded provider bytes exactly.

It is a real socket server (not a mock transport) so that the same bytes can be fed to our
adapters and to the official SDKs, and so that slow first bytes, dropped connections and clients
that hang up mid-stream behave as they do on a network. It runs its own event loop on a
background thread, which makes it usable from sync and async tests alike.

    with FakeUpstream() as upstream:
        upstream.add("POST", "/v1/chat/completions", Reply.sse(openai_text_stream()))
        ...  # point a client at upstream.url
        assert upstream.requests[0].json()["stream"] is True
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted response.

    `chunks` are written in order; a streamed reply uses chunked transfer encoding so each chunk
    reaches the client as the upstream would send it. `drop_after` closes the socket after that
    many chunks without finishing the body, as a crashed upstream would.
    """

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    chunks: Sequence[bytes] = ()
    streamed: bool = False
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    drop_after: int | None = None

    @classmethod
    def json(cls, body: Any, *, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Reply:
        """A JSON body; `headers` may carry their own content-type (e.g. with a charset)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        has_type = any(name.lower() == "content-type" for name, _ in headers)
        content_type = () if has_type else (("content-type", "application/json"),)
        return cls(status=status, headers=(*content_type, *headers), chunks=(raw,))

    @classmethod
    def sse(
        cls,
        chunks: Iterable[bytes],
        *,
        content_type: str = "text/event-stream; charset=utf-8",
        **options: Any,
    ) -> Reply:
        return cls(headers=(("content-type", content_type),), chunks=tuple(chunks), streamed=True, **options)

    @classmethod
    def ndjson(cls, chunks: Iterable[bytes], **options: Any) -> Reply:
        return cls(
            headers=(("content-type", "application/x-ndjson"),),
            chunks=tuple(chunks),
            streamed=True,
            **options,
        )


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Route:
    replies: deque[Reply] = field(default_factory=deque)

    def next(self) -> Reply:
        return self.replies.popleft() if len(self.replies) > 1 else self.replies[0]


class FakeUpstream:
    """A fake provider server on 127.0.0.1 with a random port."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], _Route] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.aborted = threading.Event()
        """Set when a client hung up before a streamed reply was finished."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = 0

    @staticmethod
    def closed_port_url() -> str:
        """A URL on which nothing listens: connecting is refused."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, method: str, path: str, *replies: Reply) -> None:
        """Script the replies to `method path`: each request takes the next; the last repeats."""
        with self._lock:
            self._routes[(method.upper(), path)] = _Route(deque(replies))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start")

    def stop(self) -> None:
        if self._loop and self._server:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await _read_request(reader):
                self.requests.append(request)
                keep_open = await self._answer(request, reader, writer)
                if not keep_open:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            return  # the server is stopping; ending quietly keeps asyncio from logging the cancel
        finally:
            writer.close()

    def _reply_for(self, request: RecordedRequest) -> Reply:
        with self._lock:
            route = self._routes.get((request.method, request.path.split("?")[0]))
            if route is None:
                body = {"error": {"message": f"no fake route for {request.method} {request.path}"}}
                return Reply.json(body, status=404)
            return route.next()

    async def _answer(
        self, request: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        reply = self._reply_for(request)
        if reply.first_byte_delay:
            await asyncio.sleep(reply.first_byte_delay)
        head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
        head += [f"{name}: {value}" for name, value in reply.headers]
        if reply.streamed:
            head.append("transfer-encoding: chunked")
        else:
            head.append(f"content-length: {sum(len(chunk) for chunk in reply.chunks)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for number, chunk in enumerate(reply.chunks):
            if reply.drop_after is not None and number >= reply.drop_after:
                writer.transport.abort()
                return False
            if number and reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            if reader.at_eof() or writer.is_closing():
                self.aborted.set()
                return False
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if reply.streamed else chunk)
            try:
                await writer.drain()
            except ConnectionError:
                self.aborted.set()
                return False
        if reply.streamed:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RecordedRequest(method=method.upper(), path=path, headers=headers, body=body)
