"""What every adapter shares: the pooled HTTP client, stream decoding and error mapping.

Upstream failures become our error tree here, once, so adapters only say how their error body
looks. Every message is redacted of the connection's secrets before it leaves this module.
The stream decoders (`iter_sse`, `iter_ndjson`) are on the hot path of every streamed call: each
reads the body's chunks itself and splits lines with one C call a chunk, with no generator
between it and the socket.
"""

from __future__ import annotations

import base64
import email.utils
import re
import struct
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson

from llm_manager._lazy import lazy_import
from llm_manager.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    InvalidInputError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    UnavailableError,
    UpstreamTimeoutError,
)
from llm_manager.providers._http import (
    ChunkReader,
    LineSplitter,
    UpstreamClient,
    UpstreamResponse,
    first_chunk,
)
from llm_manager.providers._http import HttpTimeouts as HttpTimeouts

if TYPE_CHECKING:
    import aiohttp
else:
    aiohttp = lazy_import("aiohttp")  # see llm_manager._lazy

_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{3,}|sk_[A-Za-z0-9_\-*]{3,}|Bearer\s+\S+)")
_CONTEXT_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "prompt is too long",
    "context window",
    "too many tokens",
)
_ERROR_MESSAGE_LIMIT = 500


def new_http_client(timeouts: HttpTimeouts | None = None, *, max_connections: int = 1000) -> UpstreamClient:
    """The one pooled client all adapters share; first-byte and idle limits live in the pipeline."""
    return UpstreamClient(timeouts, max_connections=max_connections)


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove the connection's secrets and anything that looks like an API key."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload)


def loads(data: str | bytes) -> Any:
    return orjson.loads(data)


def decode_json(data: str | bytes, *, provider: str) -> Any:
    """Decode upstream JSON; a body or event that is not JSON is an upstream failure."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UnavailableError(f"{provider} sent malformed JSON", provider=provider) from None


def arguments_object(call_id: str, arguments: str) -> dict[str, Any]:
    """A tool call's JSON-text arguments as the object Anthropic and Ollama expect on the wire."""
    try:
        parsed = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidInputError(
            f"tool call {call_id!r} has arguments that are not a JSON object", field="messages"
        )
    return parsed


async def error_body(response: UpstreamResponse) -> Any:
    """The decoded body of a failed response, or None when it is not JSON."""
    await response.aread()
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


async def iter_sse(response: ChunkReader) -> AsyncIterator[tuple[str, str]]:
    """Yield `(event, data)` for each server-sent event, as the SSE specification dispatches them.

    `data:` lines accumulate (joined with "\n"), `event:` names the event ("message" when
    absent), a blank line dispatches an event that has data, `:` comments (keep-alives) and
    `id:` / `retry:` are ignored. An event the stream ends without a blank line after is still
    dispatched if it has data.
    """
    lines = LineSplitter()
    event = ""
    data: list[bytes] = []
    chunk = await first_chunk(response)
    while True:
        batch = lines.feed(chunk) if chunk else [*lines.finish(), b""]
        for line in batch:
            if line[:5] == b"data:":  # nearly every line: checked first
                value = line[5:]
                data.append(value[1:] if value[:1] == b" " else value)
            elif not line:
                if data:
                    yield event or "message", b"\n".join(data).decode("utf-8", errors="replace")
                    data = []
                event = ""
            elif line[0] != 58:  # not a b":" comment
                name, value = _sse_field(line)
                if name == b"event":
                    event = value.decode("utf-8", errors="replace")
                elif name == b"data":
                    data.append(value)
        if not chunk:
            return
        chunk = await response.read_chunk()


def _sse_field(line: bytes) -> tuple[bytes, bytes]:
    """`name: value`, split at the first colon with one space after it dropped; no colon, no value."""
    name, _, value = line.partition(b":")
    return name, value[1:] if value[:1] == b" " else value


async def iter_ndjson(response: ChunkReader, *, provider: str = "upstream") -> AsyncIterator[Any]:
    """Yield one decoded JSON value per non-empty line."""
    lines = LineSplitter()
    while chunk := await response.read_chunk():
        for line in lines.feed(chunk):
            if line.strip():
                yield decode_json(line, provider=provider)
    for line in lines.finish():
        if line.strip():
            yield decode_json(line, provider=provider)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms`, `retry-after` (seconds or HTTP date)."""
    if value := headers.get("retry-after-ms"):
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if _looks_like_date(value) else None
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


def _looks_like_date(value: str) -> bool:
    return any(char.isalpha() for char in value)


def classify_error(
    *,
    provider: str,
    status: int | None,
    message: str,
    error_type: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
    secrets: Sequence[str] = (),
) -> ProviderError:
    """Map an upstream failure to the error tree, from its status and the body's type/code."""
    clean = redact(message, secrets)[:_ERROR_MESSAGE_LIMIT] or f"{provider} returned HTTP {status}"
    codes = " ".join(filter(None, (error_type, code))).lower()
    hints = f"{codes} {message}".lower()
    kind: type[ProviderError]
    if "insufficient_quota" in codes or (status == 402 and "credits" in hints):
        kind = QuotaExceededError
    elif status in (401, 403) or "authentication" in codes or "invalid_api_key" in codes:
        kind = AuthenticationError
    elif status == 429 or "rate_limit" in codes:
        kind = RateLimitedError
    elif status == 529 or "overloaded" in hints:
        kind = OverloadedError
    elif any(hint in hints for hint in _CONTEXT_HINTS):
        kind = ContextLengthExceededError
    elif status == 404 or "model_not_found" in codes or ("not found" in hints and "model" in hints):
        kind = ModelNotFoundError
    elif status in (408, 504) or "timeout" in codes:
        kind = UpstreamTimeoutError
    elif status is not None and 400 <= status < 500:
        kind = BadRequestError
    else:
        kind = UnavailableError
    return kind(
        clean,
        provider=provider,
        status_code=status,
        upstream_code=code or error_type,
        retry_after=retry_after,
    )


@contextmanager
def transport_errors(provider: str, secrets: Sequence[str] = ()) -> Iterator[None]:
    """Turn aiohttp's transport failures into `UnavailableError` / `UpstreamTimeoutError`.

    Only aiohttp's own timeouts are the upstream's: a bare `TimeoutError` is some caller's timer
    (the pipeline's first-byte `asyncio.timeout()`), and it passes through untouched, as does
    `asyncio.CancelledError`, which is not an `Exception`.
    """
    try:
        yield
    except aiohttp.ServerTimeoutError as exc:
        raise UpstreamTimeoutError(
            redact(f"{provider} timed out: {type(exc).__name__}", secrets), provider=provider
        ) from None
    except TimeoutError:
        raise
    except aiohttp.ClientConnectorError as exc:
        raise UnavailableError(
            redact(f"cannot reach {provider}: {exc}", secrets), provider=provider
        ) from None
    except (
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientPayloadError,
        aiohttp.ClientResponseError,
        OSError,
    ) as exc:
        raise UnavailableError(
            redact(f"{provider} connection dropped: {exc}", secrets), provider=provider
        ) from None
    except aiohttp.ClientError as exc:
        raise UnavailableError(
            redact(f"cannot reach {provider}: {exc}", secrets), provider=provider
        ) from None


def decode_base64_floats(data: str) -> tuple[float, ...]:
    """Decode an embedding sent as base64 little-endian float32 (OpenAI's compact format)."""
    raw = base64.b64decode(data)
    return struct.unpack(f"<{len(raw) // 4}f", raw)


def encode_base64_floats(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def estimate_tokens(text: str) -> int:
    """A deliberately simple estimate (about four characters a token), flagged where used."""
    return (len(text) + 3) // 4 if text else 0
