"""Live events and cancellation, measured end to end over real sockets.

    python -m benchmarks.live [--clients 100] [--executions 40] [--cancels 100]

- fan-out: N WebSocket clients subscribe to one clientId; executions of a 10-node chain are
  submitted for it; every client must receive every event of every execution (checked against
  the Redis streams); prints events delivered per second (all clients together);
- cancel latency: executions parked in a 60 s `delay` node on a worker process are cancelled
  one at a time through the API; prints p50/p99 of the cancel call (it returns once the worker
  confirmed), and checks each ended `cancelled`.

The API and the worker are separate `wfe` processes on a private Redis and a SQLite store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import websockets

from benchmarks.stats import percentiles
from workflow_engine.embedded_redis import EmbeddedRedis, free_port
from workflow_engine.keys import Keys

WFE = str(Path(sys.executable).with_name("wfe"))
PREFIX = "live"


def chain(n: int) -> dict[str, Any]:
    nodes = [{"id": f"n{i}", "type": "echo", "inputs": {"i": i}} for i in range(n)]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(n - 1)]
    return {"id": "chain", "nodes": nodes, "edges": edges}


PARKED = {"id": "parked", "nodes": [{"id": "wait", "type": "delay", "inputs": {"seconds": 60}}]}


def env(redis_url: str, store_url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    return base | {
        "WFE_REDIS_URL": redis_url,
        "WFE_STORE_URL": store_url,
        "WFE_QUEUE_PREFIX": PREFIX,
        "WFE_LOG_LEVEL": "WARNING",
        "WFE_PARK_AFTER_S": "3600",  # the 60 s delay keeps its worker: a running execution
        **extra,
    }


async def wait_http(base: str) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"{base}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not start")
            await asyncio.sleep(0.05)


async def fan_out(base: str, redis_url: str, clients: int, executions: int) -> dict[str, Any]:
    ws_base = base.replace("http://", "ws://")
    sockets = [
        await websockets.connect(f"{ws_base}/ws/bench", max_size=None) for _ in range(clients)
    ]
    for socket in sockets:
        await socket.send(json.dumps({"type": "subscribe"}))
    await asyncio.sleep(0.5)  # let every subscription take effect before the first submit
    received: list[dict[str, list[str]]] = [{} for _ in sockets]

    async def listen(index: int, socket: Any) -> None:
        finals = 0
        async for raw in socket:
            event = json.loads(raw)
            if "executionId" not in event:
                continue
            received[index].setdefault(event["executionId"], []).append(event["id"])
            if event["type"] in {"execution.completed", "execution.failed", "execution.cancelled"}:
                finals += 1
                if finals == executions:
                    return

    listeners = [asyncio.ensure_future(listen(i, s)) for i, s in enumerate(sockets)]
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        ids = [
            (
                await http.post(
                    "/api/workflow/execute",
                    json={"workflowDefinition": chain(10), "clientId": "bench"},
                )
            ).json()["executionId"]
            for _ in range(executions)
        ]
    await asyncio.wait_for(asyncio.gather(*listeners), 300)
    elapsed = time.perf_counter() - started
    for socket in sockets:
        await socket.close()
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = Keys(PREFIX)
    expected = {i: [e for e, _ in await redis.xrange(keys.events(i)) or []] for i in ids}
    await redis.aclose()
    complete = all(got == expected for got in received)
    per_client = sum(len(v) for v in expected.values())
    return {
        "clients": clients,
        "executions": executions,
        "events_per_client": per_client,
        "delivered": per_client * clients,
        "seconds": elapsed,
        "events_per_s": per_client * clients / elapsed,
        "every_client_got_every_event": complete,
    }


async def cancel_latency(base: str, count: int) -> dict[str, Any]:
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(count):
            execution_id = (
                await http.post("/api/workflow/execute", json={"workflowDefinition": PARKED})
            ).json()["executionId"]
            while True:  # until the delay node is running on the worker
                status = (await http.get(f"/api/workflow/status/{execution_id}")).json()
                if status["context"]["status"] == "running":
                    break
                await asyncio.sleep(0.005)
            t0 = time.perf_counter()
            response = await http.post(f"/api/workflow/cancel/{execution_id}")
            samples.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, response.text
            final = (await http.get(f"/api/workflow/status/{execution_id}")).json()
            assert final["context"]["status"] == "cancelled"
    p50, p99 = percentiles(samples)
    return {"cancels": count, "p50_ms": p50, "p99_ms": p99, "max_ms": max(samples)}


async def run_live(
    redis_url: str, store_url: str, clients: int, executions: int, cancels: int
) -> dict[str, Any]:
    """Fan-out and cancel latency with an API and a worker process on ``redis_url``."""
    port = free_port()
    api = subprocess.Popen(
        [WFE, "api"],
        env=env(redis_url, store_url, WFE_PORT=str(port)),
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [WFE, "worker"], env=env(redis_url, store_url), stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(base)
        spread = await fan_out(base, redis_url, clients, executions)
        cancel = await cancel_latency(base, cancels)
    finally:
        for process in (api, worker):
            process.terminate()
            process.wait()
    return {"fan_out": spread, "cancel": cancel}


async def main(clients: int, executions: int, cancels: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "redis", persist=False) as redis,
    ):
        measured = await run_live(
            redis.url, f"sqlite:///{tmp}/live.db", clients, executions, cancels
        )
    spread, cancel = measured["fan_out"], measured["cancel"]
    print(
        f"fan-out: {spread['clients']} WebSocket clients x {spread['executions']} executions "
        f"({spread['events_per_client']} events each client)"
    )
    print(
        f"  delivered {spread['delivered']} events in {spread['seconds']:.2f} s = "
        f"{spread['events_per_s']:.0f} events/s; every client got every event: "
        f"{spread['every_client_got_every_event']}"
    )
    print(f"cancel of a running execution (worker in another process), {cancel['cancels']} times:")
    p50, p99, most = cancel["p50_ms"], cancel["p99_ms"], cancel["max_ms"]
    print(f"  p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {most:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--executions", type=int, default=40)
    parser.add_argument("--cancels", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.executions, args.cancels))
