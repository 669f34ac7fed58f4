"""``code`` node cost per language, warm pool, in-process (the worker's executor; no Redis):

    python -m benchmarks.code [--runs 300] [--concurrency 4]

Latency: one trivial code node at a time (p50/p99 ms per execution). Throughput: ``runs``
executions of one trivial code node, ``concurrency`` at a time (the pool size), in nodes/s.
The pool is warmed first (its processes started), as on a worker that has run code before.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from benchmarks.stats import percentiles
from workflow_engine.engine.executor import Executor
from workflow_engine.sandbox.limits import SandboxLimits
from workflow_engine.vocabulary import ExecutionStatus

TRIVIAL = {
    "python": "def main(n):\n    return {'double': n * 2}\n",
    "javascript": "function main({n}) { return {double: n * 2} }",
}


def workflow(language: str) -> dict[str, Any]:
    inputs = {"language": language, "code": TRIVIAL[language], "inputs": {"n": "{{ inputs.n }}"}}
    return {"id": f"code_{language}", "nodes": [{"id": "c", "type": "code", "inputs": inputs}]}


async def measure(language: str, runs: int, concurrency: int) -> dict[str, float]:
    async with Executor(sandbox=SandboxLimits(pool_size=concurrency)) as executor:
        plan = executor.compile(workflow(language))

        async def one(n: int) -> float:
            started = time.perf_counter()
            outcome = await executor.run(plan, {"n": n})
            if outcome.status is not ExecutionStatus.COMPLETED:
                raise RuntimeError(f"{language} run failed: {outcome.error}")
            return time.perf_counter() - started

        await asyncio.gather(*(one(i) for i in range(concurrency)))  # warm: start the pool
        latencies = [await one(i) for i in range(runs)]
        started = time.perf_counter()
        queue = iter(range(runs))

        async def lane() -> None:
            for n in queue:
                await one(n)

        await asyncio.gather(*(lane() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    p50, p99 = percentiles(latencies)
    return {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "nodes_per_s": runs / elapsed}


async def main(runs: int, concurrency: int) -> dict[str, dict[str, float]]:
    results = {}
    for language in TRIVIAL:
        results[language] = figures = await measure(language, runs, concurrency)
        print(
            f"{language:<11} {figures['nodes_per_s']:7.0f} trivial code nodes/s "
            f"({concurrency} at a time)   p50 {figures['p50_ms']:5.1f} ms   "
            f"p99 {figures['p99_ms']:5.1f} ms (one at a time)"
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.concurrency))
