"""Executor overhead in-process: microseconds per node for 1,000-node chains and fan-outs,
and per body node of a loop over 1,000 items with a 3-node body.

    python -m benchmarks.executor [--nodes 1000] [--repeat 7]

Runs each shape ``repeat`` times and prints the median and best µs per node, with and without
templated inputs, without hooks and with hooks that override every method and do nothing (the
executor then builds every event it reports, as for a worker's hooks). No Redis, no store: this
is the cost of the graph machinery itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import (
    ExecutionHooks,
    NodeFinished,
    NodeRetrying,
    NodeStarted,
    NodeStreamed,
    ProgressChanged,
)
from workflow_engine.vocabulary import ExecutionStatus


def chain(n: int, templated: bool) -> dict[str, Any]:
    nodes = [{"id": "n0", "type": "echo", "inputs": {"step": 0}}]
    for i in range(1, n):
        value: Any = f"{{{{ nodes.n{i - 1}.output.step + 1 }}}}" if templated else i
        nodes.append({"id": f"n{i}", "type": "echo", "inputs": {"step": value}})
    edges = [{"source": f"n{i - 1}", "target": f"n{i}"} for i in range(1, n)]
    return {"id": "chain", "nodes": nodes, "edges": edges}


def fan_out(n: int, templated: bool) -> dict[str, Any]:
    leaves = n - 2
    value: Any = "{{ nodes.root.output.step }}" if templated else 1
    nodes = [{"id": "root", "type": "echo", "inputs": {"step": 0}}]
    nodes += [{"id": f"l{i}", "type": "echo", "inputs": {"step": value}} for i in range(leaves)]
    nodes.append({"id": "join", "type": "echo", "inputs": {"done": True}})
    edges = [{"source": "root", "target": f"l{i}"} for i in range(leaves)]
    edges += [{"source": f"l{i}", "target": "join"} for i in range(leaves)]
    return {"id": "fan_out", "nodes": nodes, "edges": edges, "max_parallel": 16}


def loop_body(n: int, templated: bool) -> dict[str, Any]:
    """A loop over ``n`` items whose body is a chain of three echo nodes (3n body nodes run)."""
    first: Any = "{{ item }}" if templated else 0
    step: Any = "{{ nodes.b0.output.step + 1 }}" if templated else 1
    body = {
        "nodes": [
            {"id": "b0", "type": "echo", "inputs": {"step": first}},
            {"id": "b1", "type": "echo", "inputs": {"step": step}},
            {"id": "b2", "type": "echo", "inputs": {"step": step}},
        ],
        "edges": [{"source": "b0", "target": "b1"}, {"source": "b1", "target": "b2"}],
        "output": "b2",
    }
    loop = {"id": "loop", "type": "loop", "inputs": {"items": list(range(n)), "body": body}}
    return {"id": "loop", "nodes": [loop]}


SHAPES: tuple[tuple[str, Callable[[int, bool], dict[str, Any]], int], ...] = (
    ("chain", chain, 1),
    ("fan-out", fan_out, 1),
    ("loop", loop_body, 3),
)
"""Name, definition, nodes run per unit of ``n``."""


class EveryHook(ExecutionHooks):
    async def on_node_start(self, event: NodeStarted) -> None:
        return None

    async def on_node_retry(self, event: NodeRetrying) -> None:
        return None

    async def on_node_complete(self, event: NodeFinished) -> None:
        return None

    async def on_node_stream(self, event: NodeStreamed) -> None:
        return None

    async def on_progress(self, event: ProgressChanged) -> None:
        return None

    async def checkpoint(self) -> None:
        return None


async def measure(
    build: Callable[[int, bool], dict[str, Any]],
    n: int,
    templated: bool,
    hooks: ExecutionHooks | None,
    repeat: int,
    per: int = 1,
) -> tuple[float, float, float]:
    """(median, best) µs per node of running, and ms to validate + compile once."""
    async with Executor() as executor:
        definition = build(n, templated)
        t0 = time.perf_counter()
        plan = executor.compile(definition)
        compile_ms = (time.perf_counter() - t0) * 1000
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            outcome = await executor.run(plan, {}, hooks=hooks)
            samples.append((time.perf_counter() - t0) / (n * per) * 1e6)
            assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    return statistics.median(samples), min(samples), compile_ms


async def main(n: int, repeat: int) -> None:
    print(f"executor overhead, {n}-node graphs of echo nodes, {repeat} runs each (µs per node)")
    print(f"{'shape':<10} {'inputs':<10} {'hooks':<7} {'median':>8} {'best':>8} {'compile ms':>11}")
    for name, build, per in SHAPES:
        for templated in (False, True):
            for hooks in (None, EveryHook()):
                median, best, compile_ms = await measure(build, n, templated, hooks, repeat, per)
                print(
                    f"{name:<10} {'templated' if templated else 'static':<10} "
                    f"{'every' if hooks else 'none':<7} {median:8.1f} {best:8.1f} "
                    f"{compile_ms:11.1f}"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(main(args.nodes, args.repeat))
