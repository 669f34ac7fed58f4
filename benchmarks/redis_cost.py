"""What Redis spends per execution: commands (``INFO commandstats``; commands that Lua scripts
run count too) and CPU seconds (``INFO cpu``, the server process's user + system time).

Take a snapshot before and after a measured stretch of work on a Redis that nothing else uses,
and divide the difference by the number of executions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis


@dataclass(frozen=True, slots=True)
class RedisSnapshot:
    calls: dict[str, int]
    cpu_s: float

    def minus(self, before: RedisSnapshot) -> RedisSnapshot:
        calls = {
            name: count - before.calls.get(name, 0)
            for name, count in self.calls.items()
            if count - before.calls.get(name, 0) > 0
        }
        return RedisSnapshot(calls, self.cpu_s - before.cpu_s)

    def per(self, executions: int) -> dict[str, Any]:
        """Commands and CPU per execution, and the busiest commands."""
        total = sum(self.calls.values())
        top = sorted(self.calls.items(), key=lambda item: -item[1])[:8]
        return {
            "commands": total / executions,
            "cpu_us": self.cpu_s / executions * 1e6,
            "top_commands": {name: count / executions for name, count in top},
        }


async def snapshot(redis_url: str) -> RedisSnapshot:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        stats: dict[str, Any] = await client.info("commandstats")
        cpu: dict[str, Any] = await client.info("cpu")
    finally:
        await client.aclose()
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name.startswith("cmdstat_")
    }
    return RedisSnapshot(calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]))
