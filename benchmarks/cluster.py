"""What one execution of a 10-node graph costs, measured, and the seed's cluster row projected
from it (docs/capacity.md): 1,000+ executions in flight, 10,000+ jobs/min, kept 30 days.

    python -m benchmarks.cluster [--executions 2000] [--stores sqlite,postgres] [--quick]

For each store, ``executions`` runs of a 10-node chain (templated ``transform`` nodes, then an
``output``) are queued by the Submitter and drained by one ``wfe worker`` process on a private
Redis. Measured per execution: Redis commands and Redis CPU (``INFO commandstats`` /
``INFO cpu``), the worker process's CPU (``/proc/<pid>/stat``), and on PostgreSQL the bytes
the rows take on disk (tables and indexes of every partition) and the WAL written. Then the
projection: Redis primaries, worker processes and PostgreSQL size for the target rate.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import service
from benchmarks.redis_cost import snapshot
from benchmarks.stats import cpu_seconds
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.embedded_redis import EmbeddedRedis
from workflow_engine.queue.submit import Submission

NODES = 10
TEN_NODES: dict[str, Any] = {
    "id": "bench10",
    "nodes": [
        {"id": "n0", "type": "transform", "inputs": {"value": "{{ inputs.n }}"}},
        *(
            {
                "id": f"n{i}",
                "type": "transform",
                "inputs": {"value": f"{{{{ nodes.n{i - 1}.output + 1 }}}}"},
            }
            for i in range(1, NODES - 1)
        ),
        {
            "id": "out",
            "type": "output",
            "inputs": {"value": f"{{{{ nodes.n{NODES - 2}.output }}}}"},
        },
    ],
    "edges": [
        *({"source": f"n{i}", "target": f"n{i + 1}"} for i in range(NODES - 2)),
        {"source": f"n{NODES - 2}", "target": "out"},
    ],
}

TARGET_PER_MIN = 10_000
IN_FLIGHT = 1_000
KEEP_DAYS = 30
REDIS_HEADROOM = 0.6
"""A Redis primary planned at 60% of its one core (latency rises steeply near saturation)."""
WORKER_HEADROOM = 0.7


async def settled_cpu(pid: int, timeout: float = 60) -> float:
    """The CPU seconds of a process once it has started and gone idle (under 20 ms of CPU in
    half a second), polled with a deadline."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)  # (the sampling interval: idleness is a rate)
        now = cpu_seconds(pid)
        if now - last < 0.02:
            return now
        last = now
    raise TimeoutError(f"process {pid} did not settle in {timeout} s")


async def pg_figures(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        size = await conn.fetchval(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.relkind = 'r' AND (c.relname LIKE 'wfe_executions%' "
            "OR c.relname LIKE 'wfe_node_results%' OR c.relname LIKE 'wfe_idempotency%' "
            "OR c.relname LIKE 'wfe_execution_counts%')"
        )
        wal = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    finally:
        await conn.close()
    return {"bytes": int(size), "wal": int(wal)}


async def drain(settings: Settings, services: Services, n: int) -> dict[str, Any]:
    """Queue ``n`` executions, then one worker drains them; the costs per execution."""
    semaphore = asyncio.Semaphore(64)
    ids: list[str] = []

    async def one(i: int) -> None:
        async with semaphore:
            submitted = await services.submitter.submit(Submission(TEN_NODES, {"n": i}))
            ids.append(submitted.execution_id)

    postgres = settings.store_url.startswith("postgresql")
    store_url = settings.store_url.replace("+asyncpg", "")
    pg_before = await pg_figures(store_url) if postgres else None
    worker = subprocess.Popen(
        [service.WFE, "worker", "--queues", "workflow"],
        env=service.env_for(settings),
        stderr=subprocess.DEVNULL,
    )
    try:
        started_cpu = await settled_cpu(worker.pid)  # (its start-up is not an execution's)
        redis_before = await snapshot(settings.redis_url)
        await asyncio.gather(*(one(i) for i in range(n)))

        async def drained() -> bool:
            return (await services.store.count_by_status())["completed"] >= n

        await service.wait_for(drained, 600, every=0.25)
        worker_cpu = cpu_seconds(worker.pid) - started_cpu
    finally:
        worker.terminate()
        worker.wait()
    redis_cost = (await snapshot(settings.redis_url)).minus(redis_before).per(n)
    figures: dict[str, Any] = {
        "executions_per_s": n / await service.span_seconds(services, ids),
        "redis_commands": redis_cost["commands"],
        "redis_cpu_us": redis_cost["cpu_us"],
        "worker_cpu_ms": worker_cpu / n * 1000,
    }
    if pg_before is not None:
        after = await pg_figures(store_url)
        figures["pg_bytes"] = (after["bytes"] - pg_before["bytes"]) / n
        figures["pg_wal_bytes"] = (after["wal"] - pg_before["wal"]) / n
    return figures


def projection(figures: dict[str, Any]) -> dict[str, Any]:
    """The seed's cluster row from the per-execution figures."""
    rate = TARGET_PER_MIN / 60
    redis_core = rate * figures["redis_cpu_us"] / 1e6
    worker_cores = rate * figures["worker_cpu_ms"] / 1000
    out: dict[str, Any] = {
        "executions_per_s": rate,
        "redis_core_share": redis_core,
        "redis_primaries": max(1, math.ceil(redis_core / REDIS_HEADROOM)),
        "worker_cores": worker_cores,
        # CPU bound, plus: executions in flight (waiting on models) at ≤ 250 per process
        "worker_processes": max(2, math.ceil(worker_cores / WORKER_HEADROOM), IN_FLIGHT // 250),
    }
    if "pg_bytes" in figures:
        kept = rate * 86_400 * KEEP_DAYS
        out["pg_rows_kept"] = kept * NODES
        out["pg_gb_kept"] = kept * figures["pg_bytes"] / 1e9
        out["pg_wal_mb_per_s"] = rate * figures["pg_wal_bytes"] / 1e6
    return out


async def run(stores: list[str], n: int) -> dict[str, Any]:
    results: dict[str, Any] = {"nodes": NODES, "executions": n}
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "redis", persist=False) as redis,
    ):
        for store in stores:
            url = (
                f"sqlite:///{tmp}/cluster.db" if store == "sqlite" else await service.postgres_url()
            )
            if url is None:
                print(f"({store} unreachable: skipped)")
                continue
            settings = Settings(
                redis_url=redis.url, store_url=url, queue_prefix=f"c{time.time_ns()}"
            )
            services = await Services.open(settings)
            try:
                figures = await drain(settings, services, n)
            finally:
                await services.close()
                if store == "postgres":
                    await drop(url)
            results[store] = {"per_execution": figures, "projection": projection(figures)}
    return results


async def drop(url: str) -> None:
    admin, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(admin + "/postgres", timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def table(results: dict[str, Any]) -> list[str]:
    rows = [f"one execution of a {results['nodes']}-node chain, one worker process:"]
    for store in ("sqlite", "postgres"):
        found = results.get(store)
        if found is None:
            continue
        f, p = found["per_execution"], found["projection"]
        rows.append(
            f"  {store:<8} {f['executions_per_s']:6.0f} exec/s · Redis {f['redis_commands']:.1f} "
            f"commands, {f['redis_cpu_us']:.0f} µs CPU · worker {f['worker_cpu_ms']:.2f} ms CPU"
            + (
                f" · PostgreSQL {f['pg_bytes'] / 1024:.1f} KiB stored, "
                f"{f['pg_wal_bytes'] / 1024:.1f} KiB WAL"
                if "pg_bytes" in f
                else ""
            )
        )
        rows.append(
            f"    {TARGET_PER_MIN:,} jobs/min ({p['executions_per_s']:.0f}/s): Redis "
            f"{p['redis_core_share']:.2f} of a core -> {p['redis_primaries']} primary; workers "
            f"{p['worker_cores']:.2f} cores -> {p['worker_processes']} processes "
            f"({IN_FLIGHT:,} in flight)"
            + (
                f"; PostgreSQL {p['pg_gb_kept']:,.0f} GB for {KEEP_DAYS} days "
                f"({p['pg_rows_kept'] / 1e9:.1f} billion node results), "
                f"WAL {p['pg_wal_mb_per_s']:.1f} MB/s"
                if "pg_gb_kept" in p
                else ""
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = min(args.executions, 200) if args.quick else args.executions
    results = asyncio.run(run([s.strip() for s in args.stores.split(",") if s.strip()], n))
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
