"""Fairness between tenants (SPEC section 8): admission and the place in the queue.

Every submit passes one Lua call that, atomically, checks the tenant's executions in flight
against ``WFE_TENANT_MAX_ACTIVE``, takes a token from the tenant's bucket (``WFE_TENANT_RATE``
per second) and adds the execution to the tenant's in-flight set. The set's size before it was
added (the execution's *rank* among its tenant's) becomes its BullMQ priority: a tenant with
nothing in flight goes before the 2,000 jobs another tenant queued, so a flood delays another
tenant's execution by one job slot at most (a worker takes the lowest number first). The
caller's own ``priority`` is the major key: it orders a tenant's own jobs, and since the
default (0) is the first band, no tenant can use it to jump ahead of others.

An execution leaves the set with its final event (the same Redis call) or when it parks. A
removal lost to a crash is found when a tenant reaches its cap: the members not confirmed for a
while are looked up in the store and the finished ones are dropped before the answer is 429.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from workflow_engine.errors import WorkflowEngineError
from workflow_engine.keys import Keys

RANKS = 512
"""Ranks per priority band: a tenant's 512th job in flight and later ones share a rank."""
MAX_BAND = 4095
"""Caller priorities above this share the last band (BullMQ's priorities end at 2**21)."""
CONFIRM_AFTER_MS = 30_000
"""Members older than this are looked up in the store when the tenant is at its cap."""

# Admits a batch of submits, in order. ARGV: max active (0: none), rate per second (0: none),
# bucket size, then per submit its execution id and whether the cap applies ('1'/'0'); KEYS:
# per submit, its tenant's in-flight set and token bucket. Returns per submit {0, rank} |
# {1, in flight} | {2, wait ms}.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap, rate, size = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function admit(active, bucket, id, capped)
  local count = redis.call('ZCARD', active)
  if capped and cap > 0 and count >= cap then
    return {1, count}
  end
  if rate > 0 then
    local b = redis.call('HMGET', bucket, 'tokens', 'at')
    local tokens = tonumber(b[1]) or size
    local at = tonumber(b[2]) or now
    tokens = math.min(size, tokens + math.max(0, now - at) * rate / 1000)
    if tokens < 1 then
      return {2, math.ceil((1 - tokens) * 1000 / rate)}
    end
    redis.call('HSET', bucket, 'tokens', tostring(tokens - 1), 'at', now)
    redis.call('PEXPIRE', bucket, math.ceil(size * 1000 / rate) + 1000)
  end
  redis.call('ZADD', active, now, id)
  return {0, count}
end
local replies = {}
for i = 4, #ARGV, 2 do
  local k = (i - 4)
  replies[#replies + 1] = admit(KEYS[k + 1], KEYS[k + 2], ARGV[i], ARGV[i + 1] == '1')
end
return replies
"""


class TenantBusy(WorkflowEngineError):
    """The tenant is over its cap or its submit rate: 429, retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def queue_priority(caller_priority: int, rank: int) -> int:
    """The BullMQ priority of a job: the caller's priority band first (0, the default, is the
    first), then the job's rank among its tenant's executions in flight."""
    band = min(max(caller_priority, 0), MAX_BAND)
    return band * RANKS + min(rank, RANKS - 1) + 1


@dataclass(frozen=True, slots=True)
class FairnessLimits:
    max_active: int = 0
    """Executions in flight (queued + running) per tenant; 0: no cap."""
    rate: float = 0.0
    """Submits per second per tenant (token bucket, a second's worth of burst); 0: no limit."""


class TenantGate:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        limits: FairnessLimits,
        final_among: Callable[[Sequence[str]], Awaitable[set[str]]],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.limits = limits
        self._final_among = final_among
        self._admit = redis.register_script(ADMIT)
        self._waiting: list[tuple[str, str, bool, asyncio.Future[tuple[int, int]]]] = []
        self._sender: asyncio.Future[None] | None = None

    async def admit(self, tenant: str, execution_id: str, *, capped: bool = True) -> int:
        """Add the execution to its tenant's in-flight set; its rank there. Raises
        ``TenantBusy`` (nothing added) when the tenant is at its cap or out of tokens.
        ``capped=False``: the cap does not apply (a child of an execution that holds a place
        already: it would otherwise wait for its own parent), the rate does."""
        code, value = await self._call(tenant, execution_id, capped)
        if code == 1 and await self._drop_finished(tenant):
            code, value = await self._call(tenant, execution_id, capped)
        if code == 1:
            raise TenantBusy(
                f"tenant {tenant!r} has {value} executions queued or running "
                f"(limit {self.limits.max_active}); retry when some have finished",
                1,
            )
        if code == 2:
            raise TenantBusy(
                f"tenant {tenant!r} submits faster than {self.limits.rate:g} per second",
                max(1, math.ceil(value / 1000)),
            )
        return value

    async def leave(self, tenant: str, execution_id: str) -> None:
        """Take an execution out of the in-flight set (a submit that did not go through)."""
        await self.redis.zrem(self.keys.tenant_active(tenant), execution_id)

    def _call(
        self, tenant: str, execution_id: str, capped: bool
    ) -> asyncio.Future[tuple[int, int]]:
        """Queue an admission; the submits that come while one call is in flight share the
        next (a Redis call per submit cost a third of the API's submit rate)."""
        answer: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._waiting.append((tenant, execution_id, capped, answer))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send())
        return answer

    async def _send(self) -> None:
        while self._waiting:
            await asyncio.sleep(0)  # let ready submits join this call
            batch, self._waiting = self._waiting, []
            keys: list[str] = []
            args: list[Any] = [self.limits.max_active, self.limits.rate, max(1.0, self.limits.rate)]
            for tenant, execution_id, capped, _ in batch:
                keys += [self.keys.tenant_active(tenant), self.keys.tenant_bucket(tenant)]
                args += [execution_id, "1" if capped else "0"]
            try:
                replies = cast(list[list[Any]], await self._admit(keys=keys, args=args))
            except Exception as exc:
                for *_, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (*_, answer), (code, value) in zip(batch, replies, strict=True):
                if not answer.done():
                    answer.set_result((int(code), int(value)))

    async def _drop_finished(self, tenant: str) -> bool:
        """At the cap: drop the members whose end was not recorded here (a worker died between
        its store write and its final event); confirm the others for a while. Whether any
        was dropped."""
        key = self.keys.tenant_active(tenant)
        now_ms = await self._now_ms()
        stale: list[str] = cast(
            list[str], await self.redis.zrangebyscore(key, "-inf", now_ms - CONFIRM_AFTER_MS)
        )
        if not stale:
            return False
        finished = await self._final_among(stale)
        pipe = self.redis.pipeline(transaction=False)
        if finished:
            pipe.zrem(key, *finished)
        confirmed = [m for m in stale if m not in finished]
        if confirmed:
            pipe.zadd(key, dict.fromkeys(confirmed, now_ms), xx=True)
        await pipe.execute()
        return bool(finished)

    async def _now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000
