"""The shared stream decoders and the transport-error mapping of `providers/_wire.py`.

The decoders are checked with every way of cutting a stream into chunks, since a network may
split bytes anywhere (inside a `\\r\\n`, inside a UTF-8 character), and then through a real socket.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest

from llm_manager.errors import UnavailableError, UpstreamTimeoutError
from llm_manager.providers import _wire
from llm_manager.providers._http import HttpTimeouts, UpstreamClient
from llm_manager.testing.fake_upstream import FakeUpstream, Reply

Events = list[tuple[str, str]]

SSE_CASES: list[tuple[str, bytes, Events]] = [
    ("one event", b"data: hello\n\n", [("message", "hello")]),
    ("named event", b"event: ping\ndata: {}\n\n", [("ping", "{}")]),
    ("data lines joined", b"data: a\ndata: b\n\n", [("message", "a\nb")]),
    ("empty data line kept", b"data: a\ndata:\ndata: b\n\n", [("message", "a\n\nb")]),
    ("comments skipped", b": OPENROUTER PROCESSING\n\ndata: x\n: ping\n\n", [("message", "x")]),
    ("crlf", b"event: e\r\ndata: x\r\n\r\ndata: y\r\n\r\n", [("e", "x"), ("message", "y")]),
    ("cr", b"data: x\rdata: y\r\revent: z\rdata: 1\r\r", [("message", "x\ny"), ("z", "1")]),
    ("mixed line ends", b"data: a\r\ndata: b\rdata: c\n\r\n", [("message", "a\nb\nc")]),
    ("last event without blank line", b"data: x\n\ndata: last", [("message", "x"), ("message", "last")]),
    ("last event ended by one newline", b"event: e\ndata: last\n", [("e", "last")]),
    ("last event ended by cr", b"data: last\r", [("message", "last")]),
    ("event without data not dispatched", b"event: ping\n\ndata: x\n\n", [("message", "x")]),
    ("trailing event without data", b"data: x\n\nevent: y", [("message", "x")]),
    ("event name reset after dispatch", b"event: a\ndata: 1\n\ndata: 2\n\n", [("a", "1"), ("message", "2")]),
    ("id and retry ignored", b"id: 7\nretry: 100\ndata: x\nid\n\n", [("message", "x")]),
    ("unknown fields ignored", b"foo: bar\ndata: x\n\n", [("message", "x")]),
    ("no space after colon", b"data:x\nevent:e\n\n", [("e", "x")]),
    ("only one space stripped", b"data:  x \n\n", [("message", " x ")]),
    ("field without colon", b"data\n\n", [("message", "")]),
    ("colons inside data", b'data: {"a": "b:c"}\n\n', [("message", '{"a": "b:c"}')]),
    ("byte order mark", b"\xef\xbb\xbfdata: x\n\n", [("message", "x")]),
    ("utf-8", "data: café ✓\n\n".encode(), [("message", "café ✓")]),
    ("line separator inside data", "data: a\u2028b\x85c\n\n".encode(), [("message", "a\u2028b\x85c")]),
    ("blank lines only", b"\n\n\r\n\r", []),
    ("empty stream", b"", []),
]


class Chunks:
    """A response body delivered in the given pieces, as the decoders read one."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = iter([chunk for chunk in chunks if chunk])

    async def read_chunk(self) -> bytes:
        return next(self._chunks, b"")


def splits(raw: bytes) -> Iterator[list[bytes]]:
    """Every cut of `raw` into two and three pieces, and one byte at a time."""
    yield [raw]
    yield [raw[index : index + 1] for index in range(len(raw))]
    for cut in range(1, len(raw)):
        yield [raw[:cut], raw[cut:]]
    for first, second in itertools.combinations(range(1, len(raw)), 2):
        yield [raw[:first], raw[first:second], raw[second:]]


async def sse(chunks: Sequence[bytes]) -> Events:
    return [event async for event in _wire.iter_sse(Chunks(chunks))]


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in SSE_CASES], ids=[c[0] for c in SSE_CASES])
async def test_sse_framing_holds_wherever_the_stream_is_cut(raw: bytes, expected: Events) -> None:
    for pieces in splits(raw):
        assert await sse(pieces) == expected, pieces


async def test_sse_through_a_real_socket(upstream: FakeUpstream, http: UpstreamClient) -> None:
    raw = b"".join(case[1] for case in SSE_CASES[:8])
    expected = [event for case in SSE_CASES[:8] for event in case[2]]
    upstream.add("POST", "/sse", Reply.sse([raw[index : index + 7] for index in range(0, len(raw), 7)]))

    async with http.stream("POST", f"{upstream.url}/sse", content=b"{}") as response:
        events = await collect(_wire.iter_sse(response))

    assert events == expected


async def test_ndjson_decodes_each_line_wherever_the_stream_is_cut() -> None:
    raw = b'{"a": 1}\n\n{"b": "x\\ny"}\r\n  \n[2]'
    for pieces in splits(raw):
        assert await collect(_wire.iter_ndjson(Chunks(pieces))) == [{"a": 1}, {"b": "x\ny"}, [2]]


async def test_ndjson_line_that_is_not_json_is_unavailable() -> None:
    with pytest.raises(UnavailableError, match="malformed JSON"):
        await collect(_wire.iter_ndjson(Chunks([b'{"a": 1}\n{oops\n']), provider="ollama"))


# -- transport errors ---------------------------------------------------------------------------


async def test_connection_refused_cannot_reach(http: UpstreamClient) -> None:
    with (
        pytest.raises(UnavailableError, match="cannot reach openai") as caught,
        _wire.transport_errors("openai"),
    ):
        await http.post(f"{FakeUpstream.closed_port_url()}/v1/chat/completions", content=b"{}")

    assert caught.value.retryable


async def test_server_closing_mid_stream_is_a_dropped_connection(
    upstream: FakeUpstream, http: UpstreamClient
) -> None:
    upstream.add("POST", "/sse", Reply.sse([b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"], drop_after=1))
    seen: Events = []

    with pytest.raises(UnavailableError, match="openai connection dropped"), _wire.transport_errors("openai"):
        async with http.stream("POST", f"{upstream.url}/sse", content=b"{}") as response:
            async for event in _wire.iter_sse(response):
                seen.append(event)

    assert seen == [("message", "1")]


async def test_server_closing_before_answering_is_a_dropped_connection(http: UpstreamClient) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(UnavailableError, match="connection dropped"), _wire.transport_errors("ollama"):
            await http.post(f"http://127.0.0.1:{port}/api/chat", content=b"{}")
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "reply",
    [
        Reply.sse([b"data: late\n\n"], first_byte_delay=1.0),
        Reply.sse([b"data: 1\n\n", b"data: late\n\n"], chunk_delay=1.0),
    ],
    ids=["before the first byte", "between chunks"],
)
async def test_a_read_timeout_is_an_upstream_timeout(upstream: FakeUpstream, reply: Reply) -> None:
    upstream.add("POST", "/slow", reply)

    async with UpstreamClient(HttpTimeouts(read=0.2)) as http:
        with (
            pytest.raises(UpstreamTimeoutError, match="anthropic timed out"),
            _wire.transport_errors("anthropic"),
        ):
            async with http.stream("POST", f"{upstream.url}/slow", content=b"{}") as response:
                await collect(_wire.iter_sse(response))


async def test_a_watched_stream_leaves_the_silences_to_its_caller(upstream: FakeUpstream) -> None:
    # The adapters' streamed calls: the pipeline's idle watchdog bounds them, not a read timer
    # re-armed on every chunk.
    upstream.add("POST", "/slow", Reply.sse([b"data: 1\n\n", b"data: late\n\n"], chunk_delay=0.4))

    async with (
        UpstreamClient(HttpTimeouts(read=0.2)) as http,
        http.stream("POST", f"{upstream.url}/slow", content=b"{}", watched=True) as response,
    ):
        events = await collect(_wire.iter_sse(response))

    assert [data for _event, data in events] == ["1", "late"]


async def test_a_callers_own_timeout_is_not_the_upstreams(
    upstream: FakeUpstream, http: UpstreamClient
) -> None:
    # The pipeline's first-byte timer surfaces as a bare TimeoutError outside the mapping.
    upstream.add("POST", "/slow", Reply.sse([b"data: late\n\n"], first_byte_delay=1.0))

    with pytest.raises(TimeoutError) as caught:
        async with asyncio.timeout(0.1):
            with _wire.transport_errors("openai"):
                await http.post(f"{upstream.url}/slow", content=b"{}")

    assert not isinstance(caught.value, UpstreamTimeoutError)


def test_a_bare_timeout_error_passes_through_unmapped() -> None:
    with pytest.raises(TimeoutError) as caught, _wire.transport_errors("openai"):
        raise TimeoutError

    assert type(caught.value) is TimeoutError


async def test_cancellation_is_never_swallowed(upstream: FakeUpstream, http: UpstreamClient) -> None:
    upstream.add("POST", "/slow", Reply.sse([b"data: late\n\n"], first_byte_delay=1.0))
    started = asyncio.Event()

    async def call() -> None:
        with _wire.transport_errors("openai"):
            started.set()
            await http.post(f"{upstream.url}/slow", content=b"{}")

    task = asyncio.create_task(call())
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
