"""The durable peer, for comparison: DBOS against our engine with effectful steps, both on the
same PostgreSQL server.

    python -m benchmarks.dbos_peer [--workflows 1000] [--samples 200] [--forty 30]
                                   [--concurrency 16]

DBOS (the ``dbos`` package, durable execution as a library on PostgreSQL): a workflow of three
steps, each ``@DBOS.step()`` returning its input + 1 inside a ``@DBOS.workflow()``, so every
step's output is committed to PostgreSQL before the next step starts; and a 40-step workflow of
the same steps. It runs in a child process of its own (DBOS is one object per process), on a
fresh database ``wfe_bench_dbos_<hex>`` of the server the engine's PostgreSQL store uses, which
is dropped afterwards. Measured:

  - workflows_per_s: ``workflows`` workflows, ``concurrency`` of them in flight (that many
    client threads, each ``DBOS.start_workflow(...).get_result()`` in a loop), run by DBOS's
    default executor (a thread pool without a bound, over a pool of 20 connections); the wall
    time from the first start to the last result, after 20 untimed workflows. A start records
    the workflow (DBOS's submit), so that is inside the time; the engine's drain is queued
    before its clock starts.
  - latency_p50_ms / latency_p99_ms: one workflow at a time, ``start_workflow`` until
    ``get_result`` returns, ``samples`` workflows after 20 untimed ones;
  - forty_steps_ms: the same for the 40-step workflow, ``forty`` samples.

Our side, like for like (``engine_effectful``): the engine's 3-node and 40-node benchmark
workflows with every node of type ``bench_effect``: ``transform``'s work (output the templated
``value``) in a node type that is not ``pure``, installed as a plug-in the way a user installs
one (an entry point in a ``.dist-info`` on ``PYTHONPATH``). No node option makes a built-in node
effectful: purity is a property of the node type (``NodeType.pure``), and the built-in effectful
types (``http``, ``code``, ``llm``, ``loop``, ``workflow``, ``wait_input``) all do real work
(a request, a sandbox run, a sub-run). An effectful node's result goes to the execution's
checkpoint hash in Redis, in the round trip of its event, and the executor waits for that write
before the node's dependants start (worker/hooks.py, docs/decisions.md "Durable execution"); every
node result also goes to the store's group commit, committed with the outcome before the job is
acknowledged. Its durability per step is therefore Redis's: the run's private Redis keeps no
AOF, so the section measures it twice, as is and with ``appendonly yes`` + ``appendfsync
always`` set on that Redis for the variant (every checkpoint fsynced before the next node
starts, the nearest to DBOS's per-step commit), and restores the setting afterwards.
One ``wfe worker`` process (concurrency 50), a fresh database ``wfe_bench_effect_<hex>``
(dropped afterwards); executions/s from the store's own timestamps (first start to last
completion), latency as ``benchmarks.service.engine_latency`` takes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow_engine.nodes.transform import TransformNode

if TYPE_CHECKING:
    from workflow_engine.api.services import Services
    from workflow_engine.config import Settings

REPO = Path(__file__).resolve().parents[1]
EFFECT_TYPE = "bench_effect"
WARM_UP = 20
DBOS_CONCURRENCY = 16
DBOS_POOL = 20  # DBOS's default system-database pool (``pool_size`` of its engine)

DURABILITY = {
    "dbos": "every step's output is committed to PostgreSQL (its own transaction, "
    "synchronous_commit on) before the next step starts; recovery resumes after the last "
    "recorded step",
    "engine_effectful": "each node's result is written to the execution's Redis checkpoint "
    "(awaited) before the next node starts, and committed to PostgreSQL with the outcome "
    "before the ack; per step as durable as Redis is (this run's Redis: no AOF, or "
    "appendfsync always in the fsync row)",
    "engine_pure": "the default for pure nodes (transform, output): node results and the "
    "outcome committed to PostgreSQL in the group commit before the ack, no wait between "
    "nodes; a crash re-runs the pure nodes not yet recorded (they have no effect)",
}


class EffectStep(TransformNode):
    """``transform``'s work in an effectful node type: its result is checkpointed (and that
    awaited) before its dependants start."""

    type_name = EFFECT_TYPE
    description = "Outputs `value`, as `transform`; not pure (benchmarks: a cheap effectful step)."
    pure = False


@dataclass(frozen=True, slots=True)
class Sizes:
    executions: int
    """The engine's drain (one worker)."""
    dbos_workflows: int
    """DBOS's throughput run (DBOS runs ~10x slower: fewer keep the section short)."""
    samples: int
    """Latency samples of the 3-step workflow, each side."""
    forty: int
    """Latency samples of the 40-step workflow, each side."""


def effectful(definition: dict[str, Any]) -> dict[str, Any]:
    """``definition`` with every node of type ``bench_effect`` (same inputs, same edges)."""
    nodes = [{**node, "type": EFFECT_TYPE} for node in definition["nodes"]]
    return {**definition, "id": f"{definition['id']}-effect", "nodes": nodes}


@contextlib.contextmanager
def plugin_installed(tmp: Path) -> Iterator[None]:
    """``bench_effect`` installed for the worker processes started meanwhile: a ``.dist-info``
    with the entry point (as ``tests/support/plugin_path``) and this repository on PYTHONPATH."""
    info = tmp / "wfe_bench_effect-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wfe-bench-effect\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[workflow_engine.nodes]\n{EFFECT_TYPE} = benchmarks.dbos_peer:EffectStep\n"
    )
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp), str(REPO), before]))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


# -- PostgreSQL: a fresh database per side ------------------------------------------------------


def admin_url() -> str:
    return os.environ.get("WFE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def create_database(prefix: str) -> str | None:
    """A fresh database ``<prefix>_<hex>`` on the tests' PostgreSQL server; its URL, or None
    when the server (or asyncpg) is not there."""
    try:
        import asyncpg
    except ImportError:
        return None
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(admin_url(), timeout=5)
    except OSError:
        return None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url().rsplit("/", 1)[0] + "/" + name


async def drop_database(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url(), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


# -- DBOS ---------------------------------------------------------------------------------------


def dbos_measure(
    url: str, workflows: int, samples: int, forty: int, concurrency: int
) -> dict[str, Any]:
    """In this process (a child of the benchmark): DBOS on the database at ``url``."""
    from dbos import DBOS

    from benchmarks.stats import percentiles

    DBOS(config={"name": "wfe-bench", "system_database_url": url, "log_level": "WARNING"})

    @DBOS.step()
    def step(value: int) -> int:
        return value + 1

    @DBOS.workflow()
    def three(n: int) -> int:
        return step(step(step(n)))

    @DBOS.workflow()
    def forty_steps(n: int) -> int:
        for _ in range(40):
            n = step(n)
        return n

    def one(n: int) -> float:
        t0 = time.perf_counter()
        assert DBOS.start_workflow(three, n).get_result() == n + 3
        return (time.perf_counter() - t0) * 1000

    DBOS.launch()
    try:
        for i in range(WARM_UP):
            one(i)
        latency = percentiles([one(i) for i in range(samples)])
        forty_samples = []
        for i in range(forty + 2):
            t0 = time.perf_counter()
            assert DBOS.start_workflow(forty_steps, i).get_result() == i + 40
            forty_samples.append((time.perf_counter() - t0) * 1000)
        forty_p = percentiles(forty_samples[2:])
        numbers = iter(range(workflows))
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    n = next(numbers, None)
                if n is None:
                    return
                assert DBOS.start_workflow(three, n).get_result() == n + 3

        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rate = workflows / (time.perf_counter() - t0)
    finally:
        DBOS.destroy()
    return {
        "workflows_per_s": rate,
        "concurrency": concurrency,
        "latency_p50_ms": latency[0],
        "latency_p99_ms": latency[1],
        "forty_steps_ms": {"p50": forty_p[0], "p99": forty_p[1]},
        "workflows": workflows,
    }


async def dbos_peer(
    workflows: int, samples: int, forty: int, concurrency: int = DBOS_CONCURRENCY
) -> dict[str, Any]:
    """DBOS measured in a child process on a fresh database, dropped afterwards."""
    try:
        dbos_version = version("dbos")
    except PackageNotFoundError:  # dbos is in the `bench` extra
        return {"skipped": "dbos is not installed: pip install -e '.[bench]'"}
    url = await create_database("wfe_bench_dbos")
    if url is None:
        return {"skipped": "PostgreSQL is not reachable (WFE_TEST_POSTGRES_URL)"}
    command = [sys.executable, "-m", "benchmarks.dbos_peer", "--child", url]
    command += ["--workflows", str(workflows), "--samples", str(samples), "--forty", str(forty)]
    command += ["--concurrency", str(concurrency)]
    try:
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=REPO, capture_output=True, text=True, timeout=900
        )
    finally:
        await drop_database(url)
    if done.returncode != 0:
        raise RuntimeError(f"the DBOS benchmark failed:\n{done.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    found["version"] = dbos_version
    found["pool"] = DBOS_POOL
    return found


# -- our engine, effectful steps ----------------------------------------------------------------


async def engine_drain(
    settings: Settings, services: Services, definition: dict[str, Any], n: int
) -> float:
    """``benchmarks.service.engine_drain`` for any definition, one worker: executions queued
    first, then a ``wfe worker`` drains them; first start to last completion, from the store."""
    from benchmarks import service
    from workflow_engine.queue.submit import Submission

    semaphore = asyncio.Semaphore(64)
    ids: list[str] = []

    async def one(i: int) -> None:
        async with semaphore:
            submitted = await services.submitter.submit(Submission(definition, {"n": i}))
            ids.append(submitted.execution_id)

    await asyncio.gather(*(one(i) for i in range(n)))
    proc = subprocess.Popen(
        [service.WFE, "worker", "--queues", "workflow"],
        env=service.env_for(settings),
        stderr=subprocess.DEVNULL,
    )

    async def drained() -> bool:
        counts = await services.store.count_by_status()
        return counts["completed"] + counts["failed"] >= n

    try:
        await service.wait_for(drained, 600, every=0.25)
    finally:
        proc.terminate()
        proc.wait()
    counts = await services.store.count_by_status()
    assert counts["completed"] >= n, counts
    return n / await service.span_seconds(services, ids)


async def engine_side(
    redis_url: str,
    tmp: Path,
    sizes: Sizes,
    forty_steps: dict[str, Any],
    *,
    pure: bool,
    fsync: bool,
) -> dict[str, Any] | None:
    """One worker on a fresh PostgreSQL database: the suite's 3-node workflow and
    ``forty_steps``, effectful (or ``pure``, as they are), Redis with ``appendfsync always``
    while ``fsync``."""
    import redis.asyncio as aioredis

    from benchmarks import service
    from benchmarks.stats import percentiles
    from workflow_engine.api.services import Services
    from workflow_engine.config import Settings

    url = await create_database("wfe_bench_effect")
    if url is None:
        return None
    n, samples, forty = sizes.executions, sizes.samples, sizes.forty
    three, forty_def = service.THREE_NODES, forty_steps
    if not pure:
        three, forty_def = effectful(three), effectful(forty_def)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    aof = str((await client.config_get("appendonly"))["appendonly"])
    fsync_before = str((await client.config_get("appendfsync"))["appendfsync"])
    try:
        if fsync:
            await client.config_set("appendfsync", "always")
            await client.config_set("appendonly", "yes")
        with plugin_installed(tmp / "plugin"):
            prefix = f"b{time.time_ns()}"
            settings = Settings(redis_url=redis_url, store_url=url, queue_prefix=prefix)
            services = await Services.open(settings)
            services.submitter.plans.compiler.registry.register(EffectStep)
            try:
                rate = await engine_drain(settings, services, three, n)
                latency = percentiles(
                    await service.engine_latency(settings, services, samples, three)
                )
                forty_p = percentiles(
                    await service.engine_latency(settings, services, forty, forty_def)
                )
            finally:
                await services.close()
    finally:
        await client.config_set("appendonly", aof)
        await client.config_set("appendfsync", fsync_before)
        await client.aclose()
        await drop_database(url)
    return {
        "executions_per_s": rate,
        "workers": 1,
        "concurrency": service.CONCURRENCY,
        "latency_p50_ms": latency[0],
        "latency_p99_ms": latency[1],
        "forty_steps_ms": {"p50": forty_p[0], "p99": forty_p[1]},
        "redis_appendfsync_always": fsync,
    }


async def durable_peers(
    redis_url: str,
    tmp: Path,
    sizes: Sizes,
    forty_steps: dict[str, Any],
    pure: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The durable-peers section: ours effectful (Redis as is, and fsynced), ours pure (the
    PostgreSQL section's figures when given, else measured here), DBOS; all on PostgreSQL."""
    section: dict[str, Any] = {"durability": DURABILITY}
    effect = await engine_side(redis_url, tmp, sizes, forty_steps, pure=False, fsync=False)
    if effect is None:
        return {"skipped": "PostgreSQL is not reachable (WFE_TEST_POSTGRES_URL)"}
    section["engine_effectful"] = effect
    section["engine_effectful_fsync"] = await engine_side(
        redis_url, tmp, sizes, forty_steps, pure=False, fsync=True
    )
    if pure is not None:
        section["engine_pure"] = {
            "executions_per_s": pure["executions_per_s"]["1"],
            "workers": 1,
            "latency_p50_ms": pure["latency_ms"]["p50"],
            "latency_p99_ms": pure["latency_ms"]["p99"],
            "forty_steps_ms": pure["forty_steps_end_to_end_ms"],
            "from": "the postgres section",
        }
    else:
        section["engine_pure"] = await engine_side(
            redis_url, tmp, sizes, forty_steps, pure=True, fsync=False
        )
    section["dbos"] = await dbos_peer(sizes.dbos_workflows, sizes.samples, sizes.forty)
    return section


def table(section: dict[str, Any]) -> list[str]:
    """The durable-peers rows of ``python -m benchmarks``' table."""
    rows = ["", "durable peers, 3 steps, 1 process each, PostgreSQL on the same server"]
    if "skipped" in section:
        return [*rows, f"   {section['skipped']}"]
    rows.append(f"{'':<44} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'40 steps p50':>13}")

    def row(label: str, found: dict[str, Any] | None, rate_key: str) -> None:
        if found is None or "skipped" in found:
            rows.append(f"{label:<44} {(found or {}).get('skipped', 'not run')}")
            return
        rows.append(
            f"{label:<44} {found[rate_key]:>8.0f} {found['latency_p50_ms']:>8.1f} "
            f"{found['latency_p99_ms']:>8.1f} {found['forty_steps_ms']['p50']:>13.1f}"
        )

    effect, dbos = section["engine_effectful"], section["dbos"]
    row("engine, effectful steps (Redis: no AOF)", effect, "executions_per_s")
    row(
        "engine, effectful steps (appendfsync always)",
        section["engine_effectful_fsync"],
        "executions_per_s",
    )
    row("engine, pure steps (the default transform)", section["engine_pure"], "executions_per_s")
    concurrency = dbos.get("concurrency", DBOS_CONCURRENCY)
    row(f"DBOS {dbos.get('version', '')} ({concurrency} in flight)", dbos, "workflows_per_s")
    if "workflows_per_s" in dbos:
        rate = dbos["workflows_per_s"]
        ratios = [f"{effect['executions_per_s'] / rate:.1f}x"]
        fsynced = section["engine_effectful_fsync"]
        if fsynced is not None:
            ratios.append(f"{fsynced['executions_per_s'] / rate:.1f}x fsynced")
        rows.append(f"   engine effectful / DBOS: {' · '.join(ratios)} (target 5x)")
    for name, text in section["durability"].items():
        rows.append(f"   {name}: {text}")
    return rows


async def standalone(args: argparse.Namespace) -> dict[str, Any]:
    """The section alone, on a private Redis (``python -m benchmarks.dbos_peer``)."""
    import tempfile

    from benchmarks.__main__ import FORTY_STEPS
    from workflow_engine.embedded_redis import EmbeddedRedis

    if args.dbos_only:
        return await dbos_peer(args.workflows, args.samples, args.forty, args.concurrency)
    sizes = Sizes(args.executions, args.workflows, args.samples, args.forty)
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "redis", persist=False) as redis,
    ):
        return await durable_peers(redis.url, Path(tmp), sizes, FORTY_STEPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=2000, help="the engine's drain")
    parser.add_argument("--workflows", type=int, default=1000, help="DBOS's throughput run")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--forty", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=DBOS_CONCURRENCY)
    parser.add_argument("--dbos-only", action="store_true")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        found = dbos_measure(args.child, args.workflows, args.samples, args.forty, args.concurrency)
        print(json.dumps(found))
        return
    result = asyncio.run(standalone(args))
    print(json.dumps(result, indent=2))
    if "dbos" in result or "skipped" in result:
        print("\n".join(table(result)))


if __name__ == "__main__":
    main()
