"""Windowed counters, checked and counted in one atomic step: in Redis (shared by every instance) or in
this process (the local store).

`admit` looks at every counter an exchange is subject to and either refuses (naming the first one over
its limit, without counting anything) or counts the request against all of them; in Redis that is one
Lua script, one round trip, so N gateways share one limit without races. `charge` adds the tokens an
exchange used once its reply reports them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Check:
    key: str
    limit: int
    increment: int  # 1 for a request counter; 0 for tokens and budgets (charged afterwards)
    ttl_ms: int  # how long the window lives from its first count


@dataclass(frozen=True, slots=True)
class Verdict:
    denied: int | None  # index of the first check over its limit, or None
    values: tuple[int, ...]  # each counter after this admission
    reset_ms: tuple[int, ...]  # each counter's remaining window


class CounterStore(Protocol):
    async def admit(self, checks: Sequence[Check]) -> Verdict: ...

    async def charge(self, charges: Sequence[tuple[str, int, int]]) -> None:
        """(key, amount, ttl_ms) added to each counter."""

    async def close(self) -> None: ...


def _over(current: int, check: Check) -> bool:
    # A request counter refuses the request that would pass the limit; a token counter refuses once the
    # window's tokens are spent (the next reply's size is unknown until it arrives).
    return current + check.increment > check.limit if check.increment else current >= check.limit


class LocalCounters:
    """Per process: each worker of a `--workers N` gateway counts on its own (the Redis store shares)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expires at)

    def _get(self, key: str, now: float) -> tuple[int, float]:
        value, expires = self._counters.get(key, (0, 0.0))
        return (value, expires) if expires > now else (0, 0.0)

    async def admit(self, checks: Sequence[Check]) -> Verdict:
        now = self._clock()
        current = [self._get(check.key, now) for check in checks]
        for index, check in enumerate(checks):
            if _over(current[index][0], check):
                return Verdict(index, tuple(value for value, _ in current), tuple(_reset(expires, now) for _, expires in current))
        after = []
        for (value, expires), check in zip(current, checks, strict=True):
            if check.increment:
                expires = expires or now + check.ttl_ms / 1000
                value += check.increment
                self._counters[check.key] = (value, expires)
            after.append((value, expires))
        if len(self._counters) > 100_000:
            self._counters = {key: entry for key, entry in self._counters.items() if entry[1] > now}
        return Verdict(None, tuple(value for value, _ in after), tuple(_reset(expires, now) for _, expires in after))

    async def charge(self, charges: Sequence[tuple[str, int, int]]) -> None:
        now = self._clock()
        for key, amount, ttl_ms in charges:
            value, expires = self._get(key, now)
            self._counters[key] = (value + amount, expires or now + ttl_ms / 1000)

    async def close(self) -> None:
        return None


def _reset(expires: float, now: float) -> int:
    return max(int((expires - now) * 1000), 0) if expires else 0


# KEYS: the counters; ARGV: limit, increment, ttl_ms for each. Returns {denied index or 0, values..., pttls...}.
_ADMIT = """
local n = #KEYS
local values = {}
for i = 1, n do
  values[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = 1, n do
  local limit, inc = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  local over
  if inc > 0 then over = values[i] + inc > limit else over = values[i] >= limit end
  if over then
    local result = {i}
    for j = 1, n do result[1 + j] = values[j] end
    for j = 1, n do result[1 + n + j] = redis.call('PTTL', KEYS[j]) end
    return result
  end
end
local result = {0}
for i = 1, n do
  local inc = tonumber(ARGV[3 * i - 1])
  if inc > 0 then
    values[i] = redis.call('INCRBY', KEYS[i], inc)
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[3 * i]) end
  end
  result[1 + i] = values[i]
end
for i = 1, n do result[1 + n + i] = redis.call('PTTL', KEYS[i]) end
return result
"""

_CHARGE = """
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2 * i]) end
end
return 0
"""


class RedisCounters:
    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis  # noqa: PLC0415 - redis loads only with the redis store

        self.prefix = prefix
        self.client: Any = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._admit = self.client.register_script(_ADMIT)
        self._charge = self.client.register_script(_CHARGE)

    async def admit(self, checks: Sequence[Check]) -> Verdict:
        keys = [self.prefix + check.key for check in checks]
        args = [value for check in checks for value in (check.limit, check.increment, check.ttl_ms)]
        result = [int(item) for item in await self._admit(keys=keys, args=args)]
        count = len(checks)
        denied = result[0] - 1 if result[0] else None
        return Verdict(denied, tuple(result[1:1 + count]), tuple(max(pttl, 0) for pttl in result[1 + count:]))

    async def charge(self, charges: Sequence[tuple[str, int, int]]) -> None:
        if charges:
            await self._charge(keys=[self.prefix + key for key, _, _ in charges], args=[value for _, amount, ttl in charges for value in (amount, ttl)])

    async def close(self) -> None:
        await self.client.aclose()
