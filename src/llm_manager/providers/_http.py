"""The one pooled upstream HTTP client every adapter shares, and the response it hands back.

Built on aiohttp because a proxied call must cost well under a millisecond of CPU (issue 3): on
this machine, with 64 concurrent requests on one pooled client, aiohttp spent 0.15 ms per request
where httpx 0.28 spent 9.4 ms. Adapters see only `UpstreamClient` and `UpstreamResponse`, so they
read as before and the library underneath can change without touching a wire adapter.

How `HttpTimeouts` maps onto aiohttp's `ClientTimeout`:

- `connect` → `sock_connect`: opening one new TCP (and TLS) connection;
- `pool` → folded into `connect`, which in aiohttp covers waiting for a free pooled connection
  *and* opening it, so it gets `pool + connect`;
- `read` → `sock_read`: the longest silence while reading the response, from the moment the
  request was sent (so it also bounds the wait for the first byte);
- no `total`: a stream lasts as long as the model writes; the pipeline's first-byte and idle
  timeouts bound a call as a whole.

A `watched` stream (`UpstreamClient.stream(..., watched=True)`, what the adapters' streamed calls
use) has no `sock_read`: the pipeline's idle watchdog already bounds its silences, and aiohttp
re-arms its read timer, a new event-loop timer, for every chunk it receives.

aiohttp has no write timeout. Request bodies are small, and a request stuck while being sent is
bounded by the pipeline's first-byte timeout, which runs from before the request goes out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from llm_manager._lazy import lazy_import

if TYPE_CHECKING:
    import aiohttp
else:
    aiohttp = lazy_import("aiohttp")  # loaded by the first upstream call: see llm_manager._lazy

Headers = Mapping[str, str]
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, kw_only=True)
class HttpTimeouts:
    """Seconds; see the module docstring for how each maps onto aiohttp."""

    connect: float = 10.0
    read: float = 300.0
    pool: float = 10.0


class ChunkReader(Protocol):
    """What the stream decoders need: the body's bytes as they arrive, `b""` at its end."""

    async def read_chunk(self) -> bytes: ...


class UpstreamResponse:
    """An upstream's answer: status and headers at once, the body read on demand.

    Leaving `UpstreamClient.stream()` gives the connection back to the pool only when the body was
    received to its end; a body the caller stopped reading early closes the connection, since a
    half-read HTTP/1.1 connection cannot carry the next request.
    """

    __slots__ = ("_body", "_response")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._body: bytes | None = None

    @property
    def status_code(self) -> int:
        return self._response.status

    @property
    def is_success(self) -> bool:
        return 200 <= self._response.status < 300

    @property
    def headers(self) -> Headers:
        """Case-insensitive, like HTTP header names."""
        return self._response.headers

    @property
    def content(self) -> bytes:
        """The whole (decompressed) body; `aread()` it first."""
        if self._body is None:
            raise RuntimeError("the response body has not been read; await aread() first")
        return self._body

    @property
    def text(self) -> str:
        """The body as text, in the charset the response names (UTF-8 when it names none)."""
        charset = self._response.charset or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    async def aread(self) -> bytes:
        """Read the rest of the body; repeated calls return the same bytes."""
        if self._body is None:
            self._body = await self._response.read()
        return self._body

    async def read_chunk(self) -> bytes:
        """The next bytes of the body as soon as any arrive; `b""` once it has ended."""
        return await self._response.content.readany()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while chunk := await self._response.content.readany():
            yield chunk

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines without their ends; `\\r\\n`, `\\n` and `\\r` each end a line."""
        lines = LineSplitter()
        while chunk := await self._response.content.readany():
            for line in lines.feed(chunk):
                yield line.decode("utf-8", errors="replace")
        for line in lines.finish():
            yield line.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Release the connection to the pool if the body ended, or drop it if it did not."""
        if self._response.content.is_eof():
            self._response.release()
        else:
            self._response.close()


class LineSplitter:
    """Splits a byte stream into lines at `\\r\\n`, `\\n` or `\\r`, across chunk boundaries.

    `bytes.splitlines` splits at exactly these three (unlike `str.splitlines`, which would also
    split at U+2028 inside a JSON string), so a chunk costs one C call; what is left after the
    last line end waits for the next chunk. A `\\r` at the end of a chunk may be the first half of
    a `\\r\\n`, so a `\\n` that starts the next chunk is skipped.
    """

    __slots__ = ("_after_cr", "_partial")

    def __init__(self) -> None:
        self._partial = b""
        self._after_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._after_cr:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        data = self._partial + chunk if self._partial else chunk
        if not data:
            return []
        lines = data.splitlines()
        last = data[-1]
        if last == 10 or last == 13:  # b"\n", b"\r"
            self._partial = b""
            self._after_cr = last == 13
        else:
            self._partial = lines.pop()
        return lines

    def finish(self) -> list[bytes]:
        """At the end of the stream: the last line if nothing ended it."""
        partial, self._partial = self._partial, b""
        return [partial] if partial else []


async def first_chunk(reader: ChunkReader) -> bytes:
    """The body's first bytes without the UTF-8 byte order mark an event stream may start with,
    even when the mark itself arrived split across chunks."""
    chunk = await reader.read_chunk()
    while 0 < len(chunk) < len(_BOM) and _BOM.startswith(chunk):
        more = await reader.read_chunk()
        if not more:
            break
        chunk += more
    if chunk.startswith(_BOM):
        chunk = chunk[len(_BOM) :] or await reader.read_chunk()
    return chunk


class UpstreamClient:
    """The pooled keep-alive client all adapters share.

    Its aiohttp session is created on first use, because aiohttp binds a session to the running
    event loop and the client may be built before one runs. It never follows redirects (an
    upstream that moved must be reconfigured, not followed with the key attached), ignores proxy
    settings from the environment, keeps no cookies (one upstream's cookies must not reach
    another caller's requests), and decodes gzip and deflate bodies.
    """

    def __init__(self, timeouts: HttpTimeouts | None = None, *, max_connections: int = 1000) -> None:
        self._timeouts = timeouts or HttpTimeouts()
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._watched_timeout: aiohttp.ClientTimeout | None = None
        """The session's timeouts without `sock_read`; set with the session."""
        self._closed = False

    def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Headers | None = None,
        params: Mapping[str, str] | None = None,
        watched: bool = False,
    ) -> _StreamContext:
        """`async with client.stream(...) as response`: the body is read by the caller.

        `watched`: the caller bounds the silences between chunks itself, so no read timeout runs.
        """
        session = self._session or self._open_session()
        timeout = self._watched_timeout if watched and self._watched_timeout else session.timeout
        return _StreamContext(session, method, url, content, headers, params, timeout)

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: Headers | None = None,
        params: Mapping[str, str] | None = None,
    ) -> UpstreamResponse:
        """A whole exchange: the body is read and the connection is back in the pool."""
        async with self.stream(method, url, content=content, headers=headers, params=params) as response:
            await response.aread()
        return response

    async def post(
        self, url: str, *, content: bytes | None = None, headers: Headers | None = None
    ) -> UpstreamResponse:
        return await self.request("POST", url, content=content, headers=headers)

    async def get(
        self, url: str, *, headers: Headers | None = None, params: Mapping[str, str] | None = None
    ) -> UpstreamResponse:
        return await self.request("GET", url, headers=headers, params=params)

    async def aclose(self) -> None:
        """Close every pooled connection; the client cannot be used afterwards."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the upstream HTTP client has been closed")
        timeouts = self._timeouts
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.pool + timeouts.connect,
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        )
        self._watched_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout.connect, sock_connect=timeout.sock_connect, sock_read=None
        )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0),
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            raise_for_status=False,
            auto_decompress=True,
        )
        return self._session


class _StreamContext:
    """Sends the request on entry; on exit gives back or drops the connection (see `close`)."""

    __slots__ = ("_content", "_headers", "_method", "_params", "_response", "_session", "_timeout", "_url")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        content: bytes | None,
        headers: Headers | None,
        params: Mapping[str, str] | None,
        timeout: aiohttp.ClientTimeout,
    ) -> None:
        self._session = session
        self._method = method
        self._url = url
        self._content = content
        self._headers = headers
        self._params = params
        self._timeout = timeout
        self._response: UpstreamResponse | None = None

    async def __aenter__(self) -> UpstreamResponse:
        response = await self._session.request(
            self._method,
            self._url,
            data=self._content,
            headers=self._headers,
            params=self._params,
            allow_redirects=False,
            timeout=self._timeout,
        )
        self._response = UpstreamResponse(response)
        return self._response

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._response is not None:
            self._response.close()
