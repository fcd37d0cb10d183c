"""Streams that outlive the request that created them: pending streams, attach, and cancel.

`POST /api/streams` registers a *pending* stream (its request and its owner); a later `GET
.../events` claims it — exactly once — and runs it in whichever process serves that GET. A cancel
may arrive at any process: it is recorded (so a stream not yet attached never starts) and
broadcast, and the process running the stream stops it.

In one process everything lives on a `MemoryStreamBoard`; with Redis (`RedisStreamBoard`), the
pending request, its owner and the cancel flag are keys with a TTL, and cancels travel on one
pub/sub channel every process listens to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:  # annotations only: redis is imported where a client is made (manager.py)
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

logger = logging.getLogger(__name__)
PENDING_TTL = 300
"""Seconds a created stream waits for its EventSource before it is forgotten."""
_OWNER_TTL = 6 * 3600


@dataclass(frozen=True, kw_only=True)
class StreamOwner:
    """Who created a stream: only they attach to it; only their application may cancel it."""

    owner: str
    """`token:<id>` (later also `session:<id>`)."""
    application_id: int | None
    ticket: str
    """A one-time secret for the events URL, since a browser `EventSource` cannot send headers."""


@dataclass(frozen=True, kw_only=True)
class PendingStream:
    id: str
    owner: StreamOwner
    request: dict[str, Any]
    """The validated body of the request that created it, replayed when it is attached."""


def new_stream_id() -> str:
    return secrets.token_urlsafe(16)


def new_ticket() -> str:
    return secrets.token_urlsafe(24)


class StreamBoard(Protocol):
    async def create(self, stream: PendingStream) -> None: ...

    async def claim(self, stream_id: str) -> PendingStream | None:
        """Take a pending stream to run it; None if unknown, expired or already claimed."""
        ...

    async def owner(self, stream_id: str) -> StreamOwner | None: ...

    async def cancel(self, stream_id: str) -> None:
        """Record and broadcast a cancel; the process running the stream (if any) stops it."""
        ...

    async def is_cancelled(self, stream_id: str) -> bool: ...

    def running(
        self, stream_id: str, on_cancel: Callable[[], None]
    ) -> contextlib.AbstractContextManager[None]:
        """While inside, a cancel of `stream_id` from any process calls `on_cancel` here."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class _LocalRunners:
    """The streams this process is running, by id, with what stops each."""

    def __init__(self) -> None:
        self._callbacks: dict[str, Callable[[], None]] = {}

    @contextlib.contextmanager
    def running(self, stream_id: str, on_cancel: Callable[[], None]) -> Iterator[None]:
        self._callbacks[stream_id] = on_cancel
        try:
            yield
        finally:
            self._callbacks.pop(stream_id, None)

    def stop(self, stream_id: str) -> None:
        callback = self._callbacks.get(stream_id)
        if callback is not None:
            callback()


class MemoryStreamBoard:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: dict[str, tuple[float, PendingStream]] = {}
        self._owners: dict[str, tuple[float, StreamOwner]] = {}
        self._cancelled: dict[str, float] = {}
        self._runners = _LocalRunners()

    async def create(self, stream: PendingStream) -> None:
        self._forget_expired()
        now = self._clock()
        self._pending[stream.id] = (now + PENDING_TTL, stream)
        self._owners[stream.id] = (now + _OWNER_TTL, stream.owner)

    async def claim(self, stream_id: str) -> PendingStream | None:
        entry = self._pending.pop(stream_id, None)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    async def owner(self, stream_id: str) -> StreamOwner | None:
        entry = self._owners.get(stream_id)
        return entry[1] if entry is not None and entry[0] >= self._clock() else None

    async def cancel(self, stream_id: str) -> None:
        self._cancelled[stream_id] = self._clock() + _OWNER_TTL
        self._runners.stop(stream_id)

    async def is_cancelled(self, stream_id: str) -> bool:
        return stream_id in self._cancelled

    def running(
        self, stream_id: str, on_cancel: Callable[[], None]
    ) -> contextlib.AbstractContextManager[None]:
        return self._runners.running(stream_id, on_cancel)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _forget_expired(self) -> None:
        now = self._clock()
        for table in (self._pending, self._owners):
            for key in [key for key, (expires, _) in table.items() if expires < now]:
                del table[key]
        for key in [key for key, expires in self._cancelled.items() if expires < now]:
            del self._cancelled[key]


class RedisStreamBoard:
    """The same board shared by every process through Redis (keys expire on their own)."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._channel = f"{prefix}streams:cancel"
        self._runners = _LocalRunners()
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None

    def _key(self, stream_id: str, part: str) -> str:
        return f"{self._prefix}stream:{stream_id}:{part}"

    async def create(self, stream: PendingStream) -> None:
        owner = orjson.dumps(asdict(stream.owner))
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._key(stream.id, "pending"), orjson.dumps(stream.request), ex=PENDING_TTL)
            pipe.set(self._key(stream.id, "owner"), owner, ex=_OWNER_TTL)
            await pipe.execute()

    async def claim(self, stream_id: str) -> PendingStream | None:
        request = await self._client.getdel(self._key(stream_id, "pending"))
        owner = await self.owner(stream_id)
        if request is None or owner is None:
            return None
        return PendingStream(id=stream_id, owner=owner, request=orjson.loads(request))

    async def owner(self, stream_id: str) -> StreamOwner | None:
        raw = await self._client.get(self._key(stream_id, "owner"))
        return None if raw is None else StreamOwner(**orjson.loads(raw))

    async def cancel(self, stream_id: str) -> None:
        await self._client.set(self._key(stream_id, "cancelled"), b"1", ex=_OWNER_TTL)
        await self._client.publish(self._channel, stream_id)
        self._runners.stop(stream_id)

    async def is_cancelled(self, stream_id: str) -> bool:
        return bool(await self._client.exists(self._key(stream_id, "cancelled")))

    def running(
        self, stream_id: str, on_cancel: Callable[[], None]
    ) -> contextlib.AbstractContextManager[None]:
        return self._runners.running(stream_id, on_cancel)

    async def start(self) -> None:
        """Subscribe before serving, so no cancel published after start-up is missed."""
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._channel)
        self._listener = asyncio.create_task(self._listen(self._pubsub), name="stream-cancel-listener")

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            try:
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        self._runners.stop(data.decode())
            except asyncio.CancelledError:
                raise
            except Exception:  # a dropped Redis connection must not end cancel delivery for good
                logger.warning("stream cancel listener lost its Redis connection; retrying", exc_info=True)
                await asyncio.sleep(1)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
