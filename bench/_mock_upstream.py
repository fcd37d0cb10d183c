"""A fast fake OpenAI upstream for the gateway benchmark: a raw asyncio protocol on uvloop.

    .venv/bin/python bench/_mock_upstream.py --port 9100

The behaviour of a reply is chosen by the path, so every client (the gateways and the direct
one) reaches the same behaviour through a plain base URL and no control channel is needed:

    POST /mock/<delay_ms>/<chunks>/<gap_ms>/v1/chat/completions

- `delay_ms`: wait before the reply (before the whole JSON, or before the first SSE chunk);
- `chunks`: content tokens in the reply (`Hello`, ` world`, ...);
- `gap_ms`: when streamed, the wait between two content chunks.

A request with `"stream": true` gets OpenAI's SSE framing (chunked transfer encoding, one
`data: {chat.completion.chunk}` event per token, a finish chunk, the usage chunk when
`stream_options.include_usage` is set, then `data: [DONE]`), copied from the recorded gpt-4o-mini
stream in shared/protocols/openai.md; otherwise one `chat.completion` object with `usage`.
Requests and responses are parsed and built with httptools and pre-encoded byte templates, so
a reply costs a few tens of microseconds and the mock is never what a measurement waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools
import orjson
import uvloop

MODEL = "mock-model"
WORDS = ("Hello", " world", ",", " this", " is", " a", " mock", " reply", ".")
PROMPT_TOKENS = 12
_CREATED = 1782955818
_ids = itertools.count(1)


def content_text(chunks: int) -> str:
    """The reply's text for `chunks` tokens (what a client should end up with)."""
    return "".join(WORDS[index % len(WORDS)] for index in range(chunks))


@dataclass(frozen=True)
class Behaviour:
    delay: float
    chunks: int
    gap: float

    @classmethod
    def from_path(cls, path: bytes) -> Behaviour | None:
        parts = path.split(b"?", 1)[0].split(b"/")
        # ['', 'mock', delay, chunks, gap, 'v1', 'chat', 'completions']
        if len(parts) != 8 or parts[1] != b"mock" or parts[5:] != [b"v1", b"chat", b"completions"]:
            return None
        try:
            delay, chunks, gap = int(parts[2]), int(parts[3]), int(parts[4])
        except ValueError:
            return None
        return cls(delay=delay / 1000, chunks=max(chunks, 1), gap=gap / 1000)


@functools.lru_cache(maxsize=64)
def completion_body(chunks: int) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": _CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content_text(chunks), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(chunks),
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        }
    )


@functools.lru_cache(maxsize=64)
def stream_events(chunks: int, include_usage: bool) -> tuple[bytes, tuple[bytes, ...], bytes]:
    """(role chunk, one framed chunk per token, the tail: finish [+ usage] + [DONE] + last chunk).

    Each item is already framed for chunked transfer encoding.
    """
    head = (
        b'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":'
        + str(_CREATED).encode()
        + b',"model":"'
        + MODEL.encode()
        + b'","service_tier":"default","system_fingerprint":"fp_mock","choices":'
    )
    usage_null = b',"usage":null}\n\n' if include_usage else b"}\n\n"

    def choice(delta: bytes, finish: bytes = b"null") -> bytes:
        return (
            head
            + b'[{"index":0,"delta":'
            + delta
            + b',"logprobs":null,"finish_reason":'
            + finish
            + b"}]"
            + usage_null
        )

    role = choice(b'{"role":"assistant","content":"","refusal":null}')
    tokens = tuple(
        choice(b'{"content":' + orjson.dumps(WORDS[index % len(WORDS)]) + b"}") for index in range(chunks)
    )
    tail = choice(b"{}", b'"stop"')
    if include_usage:
        tail += head + b'[],"usage":' + orjson.dumps(_usage(chunks)) + b"}\n\n"
    tail += b"data: [DONE]\n\n"
    return _frame(role), tuple(_frame(token) for token in tokens), _frame(tail) + b"0\r\n\r\n"


def _usage(chunks: int) -> dict[str, object]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": chunks,
        "total_tokens": PROMPT_TOKENS + chunks,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nopenai-version: 2020-10-01\r\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\nopenai-version: 2020-10-01\r\n"
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class MockProtocol(asyncio.Protocol):
    """One keep-alive connection: parse a request, answer it after its delay, repeat."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, body = self.url, b"".join(self.body)
        self.url, self.body = b"", []
        behaviour = Behaviour.from_path(url)
        if behaviour is None or self.transport is None:
            self._write(_NOT_FOUND)
            return
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._write(_NOT_FOUND)
            return
        if request.get("stream"):
            options = request.get("stream_options") or {}
            self._later(behaviour.delay, self._start_stream, behaviour, bool(options.get("include_usage")))
        else:
            self._later(behaviour.delay, self._complete, behaviour)

    def _later(self, delay: float, callback: Callable[..., None], *args: object) -> None:
        if delay > 0:
            self.loop.call_later(delay, callback, *args)
        else:
            callback(*args)

    def _complete(self, behaviour: Behaviour) -> None:
        body = completion_body(behaviour.chunks)
        self._write(
            _JSON_HEAD
            + b"x-request-id: req_"
            + str(next(_ids)).encode()
            + b"\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    def _start_stream(self, behaviour: Behaviour, include_usage: bool) -> None:
        role, tokens, tail = stream_events(behaviour.chunks, include_usage)
        head = _SSE_HEAD + b"x-request-id: req_" + str(next(_ids)).encode() + b"\r\n\r\n"
        if behaviour.gap <= 0:
            self._write(head + role + b"".join(tokens) + tail)
            return
        transport, last = self.transport, len(tokens) - 1
        self._write(head + role + tokens[0] + (tail if last == 0 else b""))
        for index in range(1, len(tokens)):
            data = tokens[index] + tail if index == last else tokens[index]
            self.loop.call_later(behaviour.gap * index, self._write_to, transport, data)

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    @staticmethod
    def _write_to(transport: asyncio.Transport | None, data: bytes) -> None:
        if transport is not None and not transport.is_closing():
            transport.write(data)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock upstream listening on http://{host}:{port} (pid {os.getpid()})", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
