"""Requests and tokens per minute, checked before a call as a pipeline guard.

Three subjects may carry limits: the gateway token, the application and the configuration. All
their checks go to a `RateCounter` as one atomic operation, so a call refused by one subject never
uses up another's quota.

The window slides over 1-second buckets: at any moment it holds the current second and the 59
before it. A request is therefore forgotten 59 to 60 seconds after it was admitted — exact to the
second, which is the resolution a `Retry-After` header has anyway. Tokens are only known after a
call, so a tokens-per-minute limit refuses once it is used up rather than before it would be
overrun; concurrent calls admitted while it is nearly used up may overshoot it by their own tokens.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from llm_manager.errors import RateLimitExceededError
from llm_manager.services.calls import Admission, ChatCall
from llm_manager.services.configurations import ResolvedConfiguration
from llm_manager.types import RateLimits, Usage

if TYPE_CHECKING:  # annotations only: redis is imported where a client is made (manager.py)
    from redis.asyncio import Redis

WINDOW_SECONDS = 60
_KEY_TTL_SECONDS = WINDOW_SECONDS + 1
"""A key's newest bucket leaves the window within 60 s of its last write, so the key may go."""


@dataclass(frozen=True, slots=True)
class RateCheck:
    """One limit to check: `amount` is what the call adds now (0 for tokens, known only later).

    The check passes when usage in the window plus `max(amount, 1)` stays within `limit`: a
    request needs room for itself, and a tokens check needs at least one token left.
    """

    key: str
    limit: int
    amount: int


@dataclass(frozen=True, slots=True)
class RateRefusal:
    """Which check refused and how many seconds until it would pass (at least 1)."""

    check: RateCheck
    retry_after: float


class RateCounter(Protocol):
    """Sliding-window counters behind the guard: one process (memory) or many (Redis)."""

    async def admit(self, checks: Sequence[RateCheck]) -> RateRefusal | None:
        """Check every limit and, only if all pass, add each positive amount to its key.

        Returns the first failing check, having added nothing anywhere, or None when admitted.
        """
        ...

    async def record(self, keys: Sequence[str], amount: int) -> None:
        """Add `amount` (tokens a call used) to each key now."""
        ...

    async def aclose(self) -> None: ...


def _refusal(buckets: Mapping[int, int], check: RateCheck, now: float) -> RateRefusal | None:
    """The refusal of `check` against the live buckets of its key, or None if it passes.

    Mirrors the Lua script of `RedisRateCounter`: the wait ends when enough of the oldest buckets
    have left the window (bucket `b` leaves at second `b + WINDOW_SECONDS`).
    """
    needed = max(check.amount, 1)
    used = sum(buckets.values())
    if used + needed <= check.limit:
        return None
    wait = float(WINDOW_SECONDS)
    for second in sorted(buckets):
        used -= buckets[second]
        if used + needed <= check.limit:
            wait = second + WINDOW_SECONDS - now
            break
    return RateRefusal(check, max(1.0, float(math.ceil(wait))))


class MemoryRateCounter:
    """Counts in this process only: for a single server, tests and the library facade.

    Nothing awaits between reading and updating the buckets, so concurrent tasks on one event
    loop see each admission whole. Buckets that left the window are dropped as keys are touched,
    and every key is swept once a window so idle keys do not accumulate.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._buckets: dict[str, dict[int, int]] = {}
        self._next_sweep = 0

    async def admit(self, checks: Sequence[RateCheck]) -> RateRefusal | None:
        if not checks:
            return None
        now = self._clock()
        second = math.floor(now)
        self._sweep(second)
        for check in checks:
            refusal = _refusal(self._live(check.key, second), check, now)
            if refusal is not None:
                return refusal
        for check in checks:
            if check.amount > 0:
                self._add(check.key, second, check.amount)
        return None

    async def record(self, keys: Sequence[str], amount: int) -> None:
        if amount <= 0:
            return
        second = math.floor(self._clock())
        for key in keys:
            self._add(key, second, amount)

    async def aclose(self) -> None:
        self._buckets.clear()

    def _live(self, key: str, second: int) -> dict[int, int]:
        buckets = self._buckets.get(key)
        if buckets is None:
            return {}
        oldest = second - WINDOW_SECONDS + 1
        for stale in [bucket for bucket in buckets if bucket < oldest]:
            del buckets[stale]
        return buckets

    def _add(self, key: str, second: int, amount: int) -> None:
        buckets = self._buckets.setdefault(key, {})
        buckets[second] = buckets.get(second, 0) + amount

    def _sweep(self, second: int) -> None:
        if second < self._next_sweep:
            return
        self._next_sweep = second + WINDOW_SECONDS
        for key in list(self._buckets):
            if not self._live(key, second):
                del self._buckets[key]


# KEYS: one hash per check, fields are Unix seconds. ARGV: window, ttl, then limit and amount per
# check. Returns nil when admitted, else {index of the failing check (1-based), seconds to wait}.
_ADMIT_SCRIPT = """
local clock = redis.call('TIME')
local second = tonumber(clock[1])
local now = second + tonumber(clock[2]) / 1000000
local window = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local oldest = second - window + 1
for index, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * index + 1])
  local needed = math.max(tonumber(ARGV[2 * index + 2]), 1)
  local flat = redis.call('HGETALL', key)
  local buckets = {}
  local used = 0
  for i = 1, #flat, 2 do
    local bucket = tonumber(flat[i])
    if bucket < oldest then
      redis.call('HDEL', key, flat[i])
    else
      local count = tonumber(flat[i + 1])
      used = used + count
      buckets[#buckets + 1] = {bucket, count}
    end
  end
  if used + needed > limit then
    table.sort(buckets, function(a, b) return a[1] < b[1] end)
    local wait = window
    for _, entry in ipairs(buckets) do
      used = used - entry[2]
      if used + needed <= limit then
        wait = entry[1] + window - now
        break
      end
    end
    return {index, math.max(1, math.ceil(wait))}
  end
end
for index, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[2 * index + 2])
  if amount > 0 then
    redis.call('HINCRBY', key, second, amount)
    redis.call('EXPIRE', key, ttl)
  end
end
return nil
"""

# KEYS: the hashes to add to. ARGV: amount, ttl.
_RECORD_SCRIPT = """
local second = redis.call('TIME')[1]
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, second, ARGV[1])
  redis.call('EXPIRE', key, ARGV[2])
end
return nil
"""


class RedisRateCounter:
    """Counts shared by every process using the same Redis and prefix, exactly.

    Each admission is one Lua script, so check-and-add over all keys is atomic; it reads the
    server's `TIME`, so processes whose clocks disagree still share one window. Needs Redis 5 or
    later (a script may write after reading the time). The client belongs to the caller, who
    closes it.
    """

    def __init__(self, client: Redis, prefix: str) -> None:
        self._prefix = prefix
        self._admit = client.register_script(_ADMIT_SCRIPT)
        self._record = client.register_script(_RECORD_SCRIPT)

    async def admit(self, checks: Sequence[RateCheck]) -> RateRefusal | None:
        if not checks:
            return None
        arguments: list[int] = [WINDOW_SECONDS, _KEY_TTL_SECONDS]
        for check in checks:
            arguments += [check.limit, check.amount]
        reply = await self._admit(keys=[self._prefix + check.key for check in checks], args=arguments)
        if reply is None:
            return None
        index, wait = reply
        return RateRefusal(checks[int(index) - 1], float(wait))

    async def record(self, keys: Sequence[str], amount: int) -> None:
        if keys and amount > 0:
            await self._record(keys=[self._prefix + key for key in keys], args=[amount, _KEY_TTL_SECONDS])

    async def aclose(self) -> None:
        """Nothing to release: the client is the caller's."""


@dataclass(frozen=True, slots=True)
class _TokenRecording:
    """Adds a finished call's tokens to every tokens-per-minute key that applied to it."""

    counter: RateCounter
    keys: tuple[str, ...]

    async def settle(self, usage: Usage, cost: Decimal | None) -> None:
        await self.counter.record(self.keys, usage.total_tokens)

    async def release(self) -> None:
        """Nothing to give back: a call that failed upstream still counts as a request."""


class RateLimitGuard:
    """Refuses a call when its token, application or configuration has used up a limit.

    Keys look like `rate:application:3:requests` and `rate:application:3:tokens`. A call with no
    limits anywhere never touches the counter.
    """

    def __init__(self, counter: RateCounter) -> None:
        self._counter = counter

    async def admit(self, configuration: ResolvedConfiguration, call: ChatCall) -> Admission | None:
        checks: list[RateCheck] = []
        names: dict[str, str] = {}
        for kind, subject_id, limits in _subjects(configuration, call):
            for unit, limit, amount in (
                ("requests", limits.requests_per_minute, 1),
                ("tokens", limits.tokens_per_minute, 0),
            ):
                if limit is not None:
                    key = f"rate:{kind}:{subject_id}:{unit}"
                    checks.append(RateCheck(key, limit, amount))
                    names[key] = f"{kind} {subject_id} allows {limit} {unit} per minute"
        if not checks:
            return None
        refusal = await self._counter.admit(checks)
        if refusal is not None:
            raise RateLimitExceededError(
                f"rate limit: {names[refusal.check.key]}; retry in {refusal.retry_after:g} s",
                retry_after=refusal.retry_after,
            )
        token_keys = tuple(check.key for check in checks if check.amount == 0)
        return _TokenRecording(self._counter, token_keys) if token_keys else None


def _subjects(configuration: ResolvedConfiguration, call: ChatCall) -> list[tuple[str, int, RateLimits]]:
    """The subjects whose limits apply, most specific first (the first refusal is reported)."""
    context = call.context
    candidates = [
        ("token", context.token_id, context.token_limits),
        ("application", context.application_id, context.application_limits),
        ("configuration", configuration.id, configuration.rate_limits),
    ]
    return [
        (kind, subject_id, limits)
        for kind, subject_id, limits in candidates
        if subject_id is not None and limits
    ]
