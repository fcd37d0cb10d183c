"""Per-process answer caches on the request path, and how a change reaches every process.

A `TtlCache` keeps an answer (the caller behind a token, the budgets that apply to a call) for a
second or so; `Invalidations` clears the caches of one topic at once in this process and, with
Redis, in every process of the deployment (one pub/sub channel). The TTL bounds what a process
that missed a message (no Redis, a CLI writing the same SQLite file) may serve stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:  # annotations only: redis is imported lazily, where a client is made (manager.py)
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

logger = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Entry(Generic[V]):
    """A cached answer: until when it may be served, and whether anyone asked for it since it was stored."""

    __slots__ = ("deadline", "used", "value")

    def __init__(self, deadline: float, value: V) -> None:
        self.deadline = deadline
        self.value = value
        self.used = False


class TtlCache(Generic[K, V]):
    """A per-process answer cache with a time bound and a generation guard.

    `clear()` bumps the generation; an answer loaded while a clear happened is not stored, so a
    lookup racing a change can never put the old answer back after the change was announced.
    """

    def __init__(self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._refreshing: set[asyncio.Task[None]] = set()
        """Background reloads in flight (referenced here so they are not collected mid-way)."""
        self._timers: dict[K, asyncio.TimerHandle] = {}
        """Each loaded key's reload-ahead, due at the middle of its answer's life."""
        self._closed = False
        self.generation = 0

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached answer, or `load()`'s — one load per key at a time, shared by every waiter.

        When an answer expires under load, every request in flight would otherwise miss at the
        same instant and each ask the database (on SQLite, queueing on its one connection); here
        the first one loads and the others await its answer. A failed load fails its waiters the
        same way; a cancelled one (its caller went away) lets the next waiter load instead.

        An answer asked for since it was loaded is reloaded in the background at the middle of
        its life (`_reload_ahead`), and one read in its second half is reloaded at once, so under
        steady traffic no request waits for a reload — and nothing is ever served past its TTL.
        """
        entry = self._entries.get(key)
        if entry is not None:
            left = entry.deadline - self._clock()
            if left > 0:
                entry.used = True
                if left < self._ttl / 2 and key not in self._loading:
                    self._refresh_in_background(key, load)
                return entry.value
        while True:
            cached = self.get(key)
            if cached is not None:
                return cached
            pending = self._loading.get(key)
            if pending is None:
                return await self._load(key, load)
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise

    async def aclose(self) -> None:
        """Stop reloading ahead and wait for the reloads in flight, so none outlives the database it reads."""
        self._closed = True
        self._cancel_timers()
        if self._refreshing:
            await asyncio.gather(*self._refreshing, return_exceptions=True)

    def _refresh_in_background(self, key: K, load: Callable[[], Awaitable[V]]) -> None:
        """Reload `key` in a task of its own, registered as loading before this returns.

        Registering it only once the task first ran let every request served before that
        (hundreds, under load) start a reload of its own: a herd of identical reads queued on
        the database connections each time an answer reached the second half of its life.
        """
        pending, generation = self._begin(key)

        async def refresh() -> None:
            with contextlib.suppress(Exception):  # the answer in hand stays; a real miss will report
                await self._finish(key, pending, generation, load)

        task = asyncio.create_task(refresh())
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)
        task.add_done_callback(lambda _: self._abandon(key, pending))

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        pending, generation = self._begin(key)
        return await self._finish(key, pending, generation, load)

    def _begin(self, key: K) -> tuple[asyncio.Future[V], int]:
        """Register a load of `key`: from now on, lookups wait for it instead of loading."""
        pending = self._loading[key] = asyncio.get_running_loop().create_future()
        return pending, self.generation

    async def _finish(
        self, key: K, pending: asyncio.Future[V], generation: int, load: Callable[[], Awaitable[V]]
    ) -> V:
        try:
            value = await load()
        except asyncio.CancelledError:
            pending.cancel()
            raise
        except BaseException as error:
            pending.set_exception(error)
            pending.exception()  # retrieved, so an error nobody waited for logs no warning
            raise
        finally:
            if self._loading.get(key) is pending:
                del self._loading[key]
        pending.set_result(value)
        self.put(key, value, generation=generation)
        self._schedule_reload_ahead(key, load)
        return value

    def _schedule_reload_ahead(self, key: K, load: Callable[[], Awaitable[V]]) -> None:
        """Reload `key` at the middle of its answer's life if it is asked for meanwhile.

        Reloading only when a request finds an answer in its second half put the reload on that
        request: with calls a fraction of a second apart, every call after a pause started one,
        and the reads ran beside it (~2 ms more for it on SQLite). On a timer, the reload mostly
        falls between calls; an answer nobody asked for is left to expire.
        """
        entry = self._entries.get(key)
        if self._closed or entry is None:
            return
        previous = self._timers.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(
            self._ttl / 2, self._reload_ahead, key, entry, load
        )

    def _reload_ahead(self, key: K, entry: _Entry[V], load: Callable[[], Awaitable[V]]) -> None:
        self._timers.pop(key, None)
        if self._entries.get(key) is entry and entry.used and key not in self._loading and not self._closed:
            self._refresh_in_background(key, load)

    def _abandon(self, key: K, pending: asyncio.Future[V]) -> None:
        """A reload cancelled before it ran: its waiters load for themselves instead of hanging."""
        if not pending.done():
            pending.cancel()
        if self._loading.get(key) is pending:
            del self._loading[key]

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.deadline <= self._clock():
            del self._entries[key]
            return None
        entry.used = True
        return entry.value

    def put(self, key: K, value: V, *, generation: int) -> None:
        """Store `value`, loaded when the cache was at `generation`, unless it was cleared since."""
        if generation != self.generation:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # a bound, not an LRU: entries are cheap to reload
            self._cancel_timers()
        self._entries[key] = _Entry(self._clock() + self._ttl, value)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._cancel_timers()

    def _cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


class Invalidations:
    """Tells every process of a deployment that its cached answers on a topic are stale.

    `publish` clears this process's caches at once; with Redis it also sends the topic on one
    pub/sub channel every process listens to. Without Redis only this process hears it, so the
    caches' TTLs bound what other processes may miss.
    """

    def __init__(self) -> None:
        self._redis: Redis | None = None
        self._channel = ""
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, topic: str, clear: Callable[[], None]) -> None:
        self._listeners.setdefault(topic, []).append(clear)

    async def publish(self, topic: str) -> None:
        self._clear(topic)
        if self._redis is not None:
            await self._redis.publish(self._channel, topic)

    async def start(self, redis: Redis | None, prefix: str) -> None:
        """Join the deployment's channel (when there is Redis) before serving, so no change
        published after start-up is missed."""
        if redis is None or self._task is not None:
            return
        self._redis = redis
        self._channel = f"{prefix}cache:invalidate"
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._channel)
        self._task = asyncio.create_task(self._listen(self._pubsub), name="cache-invalidation-listener")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None
        self._redis = None

    def _clear(self, topic: str) -> None:
        for clear in self._listeners.get(topic, ()):
            clear()

    def _clear_all(self) -> None:
        for topic in self._listeners:
            self._clear(topic)

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            try:
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        self._clear(data.decode())
            except asyncio.CancelledError:
                raise
            except Exception:  # messages may be lost while disconnected: forget everything
                logger.warning(
                    "cache invalidation listener lost its Redis connection; retrying", exc_info=True
                )
                self._clear_all()
                await asyncio.sleep(1)
                self._clear_all()
