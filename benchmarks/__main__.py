"""Every benchmark side by side, in one run, on one private Redis.

    python -m benchmarks [--executions 2000] [--stores sqlite,postgres,mongodb] [--quick]
                         [--peers celery,dbos] [--scale cluster,ai,submit,parked,history]
                         [--parked 100000] [--out docs/benchmarks] [--baseline FILE]

Prints one table and writes ``results.json`` and ``throughput.png`` under ``--out``. Beside
each figure, the same figure of an earlier run (``--baseline``, a ``results.json``; by default
the previous round's, ``benchmarks/previous_round.json``):

1. raw Python bullmq no-op jobs/s, 1 and 2 worker processes (the ceiling for a Python worker);
2. our engine, a trivial 3-node workflow, queued by the Submitter and drained by 1 and 2
   ``wfe worker`` processes, persisted in SQLite, PostgreSQL and MongoDB (``WFE_TEST_MONGODB_URL``,
   else a private nx-27017 on a free port): executions/s, and the
   submit-to-complete p50/p99 at low load; the same through the HTTP API (``wfe api``);
3. the same 3 steps as a Celery chain on the same Redis: chains/s and single-chain latency;
4. 40 sequential light steps (Windmill's benchmark shape): wall time in-process and end to end
   through the queue; executor µs per node for 1,000-node chains and fan-outs;
5. Redis commands and Redis CPU per execution (``INFO commandstats`` / ``INFO cpu``) for the
   engine and for a raw no-op job, to project a shard's capacity (docs/capacity.md);
6. cancel latency p50/p99 and event delivery to 100 WebSocket clients;
7. durable peers (``--peers dbos``, benchmarks/dbos_peer.py): DBOS's 3-step and 40-step
   workflows against ours with effectful steps (each result checkpointed before the next
   starts), both on the PostgreSQL server of the ``postgres`` store, beside ours with pure steps;
8. at scale (``--scale``, each section its own module and private Redis): a 10-node
   execution's costs and the cluster row projected from them (``cluster``); 500 ``llm``
   streams to 500 WebSocket clients and 200 ``code`` nodes in flight (``ai``); submits/s over
   HTTP with wrk, 32 connections, one API process (``submit``); 100,000 parked executions on
   one worker and their resume (``parked``); ``/stats`` counts, list, status read and
   retention from 1,000 to 1,000,000 executions (``history``).

Every figure of one run comes from the same machine and Redis, so the ratios hold even where
the absolute numbers move with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import ai_load, cluster, dbos_peer, history, http_submit, live, parked, service
from benchmarks import executor as executor_bench
from benchmarks.baseline import PREVIOUS_ROUND, STORES, Baseline
from benchmarks.redis_cost import snapshot
from benchmarks.stats import percentiles
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.embedded_redis import EmbeddedRedis
from workflow_engine.engine.executor import Executor
from workflow_engine.vocabulary import ExecutionStatus

FORTY_STEPS = {
    "id": "forty",
    "nodes": [{"id": f"s{i}", "type": "transform", "inputs": {"value": i}} for i in range(40)],
    "edges": [{"source": f"s{i}", "target": f"s{i + 1}"} for i in range(39)],
}


PEERS = ("celery", "dbos")
SCALE = ("cluster", "ai", "submit", "parked", "history")


def settings_for(redis_url: str, store_url: str) -> Settings:
    return Settings(redis_url=redis_url, store_url=store_url, queue_prefix=f"b{time.time_ns()}")


def store_names(value: str) -> list[str]:
    """``--stores``: a name not in STORES is an error, not a section left out of the table."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in STORES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown store {', '.join(unknown) or '(none)'}; choose from {', '.join(STORES)}"
        )
    return names


def scale_names(value: str) -> list[str]:
    """``--scale``: the sections at scale to run ("" for none); an unknown name is an error."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCALE]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown)}; choose from {', '.join(SCALE)}"
        )
    return names


def peer_names(value: str) -> list[str]:
    """``--peers``: the other systems run beside ours; an unknown name is an error."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown peer {', '.join(unknown)}; choose from {', '.join(PEERS)}"
        )
    return names


async def store_url_of(store: str, tmp: str, stack: contextlib.ExitStack) -> str | None:
    """A fresh database of ``store``; a MongoDB server started for it stops with ``stack``."""
    if store == "sqlite":
        return f"sqlite:///{tmp}/bench-{time.time_ns()}.db"
    if store == "mongodb":
        return mongodb_url(tmp, stack)
    return await service.postgres_url()


def mongodb_url(tmp: str, stack: contextlib.ExitStack) -> str | None:
    from tests.support import mongo  # the tests' MongoDB: a real one, else nx-27017

    server_url = mongo.configured_url()
    if server_url is None:
        try:
            server_url = stack.enter_context(mongo.NxServer(Path(tmp) / "mongodb")).url
        except mongo.NxServerError as exc:
            print(f"(no MongoDB: {exc})")
            return None
    url = mongo.database_url(server_url, prefix="wfe_bench")
    stack.callback(mongo.drop_database, url)  # before the server stops (last in, first out)
    return url


async def raw_section(redis_url: str, n: int) -> dict[str, Any]:
    before = await snapshot(redis_url)
    one = await service.raw_bullmq(redis_url, n, 1)
    cost = (await snapshot(redis_url)).minus(before).per(n)
    two = await service.raw_bullmq(redis_url, n, 2)
    return {"jobs_per_s": {"1": one, "2": two}, "redis_per_job": cost}


async def engine_section(redis_url: str, store_url: str, n: int, api_n: int) -> dict[str, Any]:
    drain: dict[str, float] = {}
    redis_cost: dict[str, Any] = {}
    for workers in (1, 2):
        settings = settings_for(redis_url, store_url)
        services = await Services.open(settings)
        try:
            before = await snapshot(redis_url)
            drain[str(workers)] = await service.engine_drain(settings, services, n, workers)
            if workers == 1:  # submit + run + events + ack, everything an execution costs
                redis_cost = (await snapshot(redis_url)).minus(before).per(n)
        finally:
            await services.close()
    settings = settings_for(redis_url, store_url)
    services = await Services.open(settings)
    try:
        p50, p99 = percentiles(await service.engine_latency(settings, services, 200))
        forty = percentiles(await service.engine_latency(settings, services, 30, FORTY_STEPS))
        api_rate = await service.through_api(settings, services, api_n, 2)
    finally:
        await services.close()
    return {
        "executions_per_s": drain,
        "latency_ms": {"p50": p50, "p99": p99},
        "forty_steps_end_to_end_ms": {"p50": forty[0], "p99": forty[1]},
        "api_executions_per_s_2_workers": api_rate,
        "redis_per_execution": redis_cost,
    }


async def executor_section(repeat: int) -> dict[str, Any]:
    per_node: dict[str, float] = {}
    for name, build in (("chain", executor_bench.chain), ("fan_out", executor_bench.fan_out)):
        median, _, _ = await executor_bench.measure(build, 1000, True, None, repeat)
        per_node[name] = median
    async with Executor() as executor:
        plan = executor.compile(FORTY_STEPS)
        samples = []
        for _ in range(max(repeat, 5)):
            t0 = time.perf_counter()
            outcome = await executor.run(plan, {})
            samples.append((time.perf_counter() - t0) * 1000)
            assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    return {"us_per_node_templated": per_node, "forty_steps_in_process_ms": min(samples)}


def celery_section(redis_url: str, n: int, samples: int) -> dict[str, Any]:
    try:
        from benchmarks.celery_chain import celery_chain
    except ImportError as exc:  # celery is in the `bench` extra
        return {"skipped": f"celery is not installed ({exc}): pip install -e '.[bench]'"}
    return celery_chain(redis_url, chains=n, latency_samples=samples)


def table(results: dict[str, Any], baseline: Baseline | None = None) -> list[str]:
    """This run's figures, 1 and 2 workers, and beside them the ``baseline``'s (the previous
    round's by default) where it has them."""
    was = baseline or Baseline({})
    raw = results["raw_bullmq"]["jobs_per_s"]
    rows = [f"{'what':<50} {'1 worker':>11} {'2 workers':>11}   {was.heading}"]

    def row(label: str, one: str = "", two: str = "", before: str = "") -> None:
        rows.append(f"{label:<50} {one:>11} {two:>11}   {before}".rstrip())

    row(
        "raw bullmq no-op jobs/s",
        f"{raw['1']:.0f}",
        f"{raw['2']:.0f}",
        was.pair(("raw_bullmq", "jobs_per_s"), "{:.0f}"),
    )
    for store in STORES:
        found = results.get(store)
        if found is None:
            continue
        rate = found["executions_per_s"]
        row(
            f"engine 3-node ({store}) executions/s",
            f"{rate['1']:.0f}",
            f"{rate['2']:.0f}",
            was.pair((store, "executions_per_s"), "{:.0f}"),
        )
        row(
            "   share of raw bullmq",
            f"{rate['1'] / raw['1']:.0%}",
            f"{rate['2'] / raw['2']:.0%}",
            was.share(store),
        )
        row(
            "   2 workers / 1 worker",
            "",
            f"{rate['2'] / rate['1']:.2f}x",
            was.scaling(store),
        )
        latency = found["latency_ms"]
        row(
            "   submit-to-complete p50 / p99 ms",
            f"{latency['p50']:.1f}",
            f"{latency['p99']:.1f}",
            was.pair((store, "latency_ms"), "{:.1f}", ("p50", "p99")),
        )
        forty = found["forty_steps_end_to_end_ms"]
        row(
            "   40 sequential steps end to end p50 / p99 ms",
            f"{forty['p50']:.1f}",
            f"{forty['p99']:.1f}",
            was.pair((store, "forty_steps_end_to_end_ms"), "{:.1f}", ("p50", "p99")),
        )
        row(
            "   through the HTTP API (2 workers) exec/s",
            "",
            f"{found['api_executions_per_s_2_workers']:.0f}",
            was.one((store, "api_executions_per_s_2_workers"), "{:.0f}"),
        )
        cost = found["redis_per_execution"]
        row(
            "   Redis commands / CPU µs per execution",
            f"{cost['commands']:.1f}",
            f"{cost['cpu_us']:.0f}",
            was.pair((store, "redis_per_execution"), ("{:.1f}", "{:.0f}"), ("commands", "cpu_us")),
        )
    cost = results["raw_bullmq"]["redis_per_job"]
    row(
        "raw bullmq: Redis commands / CPU µs per job",
        f"{cost['commands']:.1f}",
        f"{cost['cpu_us']:.0f}",
        was.pair(("raw_bullmq", "redis_per_job"), ("{:.1f}", "{:.0f}"), ("commands", "cpu_us")),
    )
    celery = results.get("celery")
    if celery and "chains_per_s" in celery:
        row(
            "Celery chain of 3 no-op tasks, chains/s",
            f"{celery['chains_per_s']:.0f}",
            "",
            was.one(("celery", "chains_per_s"), "{:.0f}"),
        )
        row(
            "   one chain p50 / p99 ms",
            f"{celery['latency_p50_ms']:.1f}",
            f"{celery['latency_p99_ms']:.1f}",
            was.pair(("celery",), "{:.1f}", ("latency_p50_ms", "latency_p99_ms")),
        )
        best = max(results[s]["executions_per_s"]["1"] for s in STORES if s in results)
        row(
            "   engine (1 worker) / Celery",
            f"{best / celery['chains_per_s']:.1f}x",
            "",
            was.over_celery(),
        )
    elif celery:
        row(f"Celery: {celery['skipped']}")
    durable = results.get("durable")
    if durable:
        rows.extend(dbos_peer.table(durable))
        rows.extend(was.by_hand_dbos())
        rows.append("")
    ex = results["executor"]
    row(
        "executor µs per node, 1,000-node chain / fan-out",
        f"{ex['us_per_node_templated']['chain']:.1f}",
        f"{ex['us_per_node_templated']['fan_out']:.1f}",
        was.pair(("executor", "us_per_node_templated"), "{:.1f}", ("chain", "fan_out")),
    )
    row(
        "40 sequential steps in-process, ms",
        f"{ex['forty_steps_in_process_ms']:.1f}",
        "",
        was.one(("executor", "forty_steps_in_process_ms"), "{:.1f}"),
    )
    found_live = results.get("live")
    if found_live:
        fan, cancel = found_live["fan_out"], found_live["cancel"]
        row(
            f"events/s to {fan['clients']} WebSocket clients (all got all)",
            f"{fan['events_per_s']:.0f}",
            "",
            was.one(("live", "fan_out", "events_per_s"), "{:.0f}"),
        )
        row(
            "cancel of a running execution p50 / p99 ms",
            f"{cancel['p50_ms']:.1f}",
            f"{cancel['p99_ms']:.1f}",
            was.pair(("live", "cancel"), "{:.1f}", ("p50_ms", "p99_ms")),
        )
    return rows


def scale_table(results: dict[str, Any], baseline: Baseline | None = None) -> list[str]:
    """The sections at scale, each as its own module prints it, with the ``baseline``'s
    figure where the previous round had one."""
    was = baseline or Baseline({})
    rows: list[str] = []
    found = results.get("cluster")
    if found:
        rows += ["", *cluster.table(found)]
    ai = results.get("ai")
    if ai:
        rows += ["", "AI-shaped load (python -m benchmarks.ai_load):"]
        if "llm" in ai:
            llm = ai["llm"]
            rows.append(
                f"  {llm['streams']} llm streams x {llm['tokens_per_stream']} tokens at "
                f"{ai['llm']['rate']:.0f}/s to as many WebSocket clients: token lag p50 "
                f"{llm['lag_ms']['p50']:.0f} ms, p99 {llm['lag_ms']['p99']:.0f} ms; worker "
                f"{llm['worker_cpu_s_per_1k_tokens']:.3f} s and API "
                f"{llm['api_cpu_s_per_1k_tokens']:.3f} s CPU per 1,000 tokens; "
                f"{llm['stream_events_per_token']:.2f} stream events per token; every client "
                f"got every token: {llm['every_client_got_every_token']}"
            )
        if "code" in ai:
            code = ai["code"]
            rows.append(
                f"  code nodes, {code['in_flight']} in flight: {code['executions_per_s']:.0f} "
                f"executions/s, p50 {code['submit_to_complete_ms']['p50']:.0f} ms, p99 "
                f"{code['submit_to_complete_ms']['p99']:.0f} ms, worker RSS "
                f"{code['worker_rss_mb']:.0f} MB, {code['failed']} failed"
            )
    for store, submit in (results.get("submit") or {}).items():
        if "skipped" in submit:
            rows += ["", f"submit over HTTP ({store}): {submit['skipped']}"]
            continue
        rows += [
            "",
            f"submit over HTTP, wrk {submit['connections']} connections, one API process "
            f"({store}, no worker): {submit['requests_per_s']:.0f}/s (target "
            f"{http_submit.TARGET_PER_S}/s), p50 {submit.get('p50_ms', 0):.1f} ms, p99 "
            f"{submit.get('p99_ms', 0):.1f} ms, non-2xx {submit['non_2xx']}; API CPU "
            f"{submit['api_cpu_ms_per_request']:.2f} ms per submit",
        ]
    found = results.get("parked")
    if found:
        rows += [
            "",
            f"{found['count']:,} parked executions, one worker ({found['store']}): peak RSS "
            f"{found['parked_peak_rss_mb']:.0f} MB (target < 300), Redis "
            f"{found['parked_redis_used_mb']:.0f} MB; all resumed at once: "
            f"{found['resume_calls_per_s']:.0f} resumes/s, {found['completed_per_s']:.0f} "
            f"completions/s, {found['resume_refused']} refused",
        ]
        if was.parked():
            rows.append(f"   {was.parked()}")
    found = results.get("history")
    if found:
        rows += ["", "history (python -m benchmarks.history):", history.table(found)]
        if was.stats_by_group():
            rows.append(was.stats_by_group())
    return rows


async def scale_section(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The sections at scale (``--scale``), small with ``--quick``."""
    sql_stores = [s for s in args.stores if s in ("sqlite", "postgres")] or ["sqlite"]
    if "cluster" in args.scale:
        results["cluster"] = await cluster.run(sql_stores, args.executions)
    if "ai" in args.scale:
        results["ai"] = await ai_load.run(quick=args.quick)
    if "submit" in args.scale:
        results["submit"] = {}
        for store in sql_stores:
            try:
                results["submit"][store] = await http_submit.run(
                    store, duration=5 if args.quick else 15
                )
            except RuntimeError as exc:  # no wrk
                results["submit"][store] = {"skipped": str(exc)}
    if "parked" in args.scale:
        results["parked"] = await parked.run(min(args.parked, 1000) if args.quick else args.parked)
    if "history" in args.scale:
        urls = {"sqlite": "sqlite:///unused", "postgres": history.DEFAULT_POSTGRES}
        sizes = history.QUICK_SIZES if args.quick else history.SIZES
        results["history"] = [
            await history.run(urls[store], sizes, reads=30 if args.quick else 200)
            for store in sql_stores
        ]


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors = [], [], []
    for workers in ("1", "2"):
        labels.append(f"raw bullmq\n{workers} worker(s)")
        values.append(results["raw_bullmq"]["jobs_per_s"][workers])
        colors.append("#9a9a9a")
        for store in STORES:
            if store in results:
                labels.append(f"engine {store}\n{workers} worker(s)")
                values.append(results[store]["executions_per_s"][workers])
                colors.append("#4878a8")
    celery = results.get("celery") or {}
    if "chains_per_s" in celery:
        labels.append("Celery chain\n(3 tasks)")
        values.append(celery["chains_per_s"])
        colors.append("#d9822b")
    durable = results.get("durable") or {}
    if "engine_effectful" in durable:
        labels.append("engine postgres\neffectful, 1 worker")
        values.append(durable["engine_effectful"]["executions_per_s"])
        colors.append("#2f5577")
    if "workflows_per_s" in durable.get("dbos", {}):
        labels.append("DBOS\n(3 steps, PG)")
        values.append(durable["dbos"]["workflows_per_s"])
        colors.append("#b05a2b")
    fig, ax = plt.subplots(figsize=(11, 4.5))
    bars = ax.bar(range(len(values)), values, color=colors)
    ax.bar_label(bars, fmt="%.0f")
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_ylabel("per second")
    ax.set_title(
        "3-step workflow: executions/s (raw bullmq: no-op jobs/s) — same machine, same Redis"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


async def collect(args: argparse.Namespace) -> dict[str, Any]:
    n, api_n = args.executions, args.api_executions
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
        "executions": n,
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "redis", persist=False) as redis,
        contextlib.ExitStack() as stack,
    ):
        print(f"private redis-server on {redis.url}; N={n}\n", flush=True)
        results["raw_bullmq"] = await raw_section(redis.url, n)
        for store in args.stores:
            url = await store_url_of(store, tmp, stack)
            if url is None:
                print(f"({store} unreachable: skipped)")
                continue
            try:
                results[store] = await engine_section(redis.url, url, n, api_n)
            finally:
                if store == "postgres":  # (its database is the run's own)
                    await dbos_peer.drop_database(url)
        if "dbos" in args.peers:
            sizes = dbos_peer.Sizes(
                executions=n,
                dbos_workflows=100 if args.quick else 1000,
                samples=30 if args.quick else 200,
                forty=5 if args.quick else 30,
            )
            pure = results.get("postgres")  # ours, pure steps, on the same server: reused
            results["durable"] = await dbos_peer.durable_peers(
                redis.url, Path(tmp), sizes, FORTY_STEPS, pure
            )
        if "celery" in args.peers:
            results["celery"] = await asyncio.to_thread(
                celery_section, redis.url, n, 50 if args.quick else 200
            )
        results["executor"] = await executor_section(3 if args.quick else 7)
        await scale_section(args, results)
        if not args.no_live:
            results["live"] = await live.run_live(
                redis.url,
                f"sqlite:///{tmp}/live.db",
                clients=20 if args.quick else 100,
                executions=10 if args.quick else 40,
                cancels=20 if args.quick else 100,
            )
    return results


def report(results: dict[str, Any], out: Path, baseline: Baseline) -> None:
    print("\n".join(table(results, baseline) + scale_table(results, baseline)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    try:
        chart(results, out / "throughput.png")
    except ImportError:
        print("(matplotlib is not installed: no chart; pip install -e '.[bench]')")
        return
    print(f"\nwrote {out / 'results.json'} and {out / 'throughput.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--api-executions", type=int, default=1000)
    parser.add_argument(
        "--stores", type=store_names, default="sqlite,postgres", help=f"from {', '.join(STORES)}"
    )
    parser.add_argument(
        "--peers", type=peer_names, default="celery,dbos", help=f"from {', '.join(PEERS)}"
    )
    parser.add_argument(
        "--scale",
        type=scale_names,
        default=",".join(SCALE),
        help=f"sections at scale, from {', '.join(SCALE)} ('' for none)",
    )
    parser.add_argument("--parked", type=int, default=100_000, help="executions to park")
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--no-live", action="store_true", help="skip WebSocket fan-out/cancel")
    parser.add_argument(
        "--baseline",
        default=str(PREVIOUS_ROUND),
        help="an earlier run's results.json, printed beside this run's figures (default: the "
        "previous round's; '' for none)",
    )
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.executions = min(arguments.executions, 200)
        arguments.api_executions = min(arguments.api_executions, 100)
    runner: Any = asyncio.run
    try:  # as `wfe api` and `wfe worker` run: on uvloop when it is installed
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    baseline = Baseline.load(Path(arguments.baseline) if arguments.baseline else None)
    results = runner(collect(arguments))
    report(results, Path(arguments.out), baseline)
