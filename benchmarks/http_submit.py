"""Submit throughput over HTTP: ``wrk`` against one API process, POSTing a small 3-node
workflow to ``/api/workflow/execute``.

    python -m benchmarks.http_submit [--store sqlite|postgres] [--duration 15] [--connections 32]
                                     [--threads 2] [--workers 0] [--server wfe|uvicorn]
                                     [--uvicorn-arg=--http=h11 ...] [--factory MODULE:NAME]
                                     [--profile FILE]

Needs ``wrk`` (``apt-get install -y wrk``). On a private Redis (EmbeddedRedis, no persistence)
and a fresh store (a SQLite file, or with ``--store postgres`` a private database on
``WFE_TEST_POSTGRES_URL``'s server, else ``postgresql://postgres@127.0.0.1:5432``, dropped at
the end), starts ONE API process: ``wfe api`` (``--server wfe``, the default), or
``python -m uvicorn --factory workflow_engine.api.app:create_app`` with ``--uvicorn-arg``s
(``--http h11|httptools``, ``--loop asyncio|uvloop``, ``--no-access-log``, ...) to try server
settings that need no code change; ``--factory module:name`` runs another app factory instead
(a patched app, to measure a change before making it). ``--workers N`` starts N ``wfe worker``
processes draining the queue (default 0: none, the queue grows by the submits; the tenant cap is
lifted so that no submit is refused for it). Every process logs at WARNING. The API process's
and redis-server's CPU time per submit is printed too: on a busy machine the rate moves with
the load, the CPU per submit much less.

wrk runs a warm-up of 3 s, then ``--duration`` seconds with a Lua script that sets the method,
JSON body and headers; its report is parsed: requests/s, latency p50/p90/p99, non-2xx count and
socket errors. The executions the store recorded are counted afterwards, as a check.
``--profile FILE``: ``py-spy record --nonblocking`` samples the API process during the measured
run (raw collapsed stacks into FILE) and prints the share of samples per part of the submit path.

The target (issue 21): at least 1,500 submits/s with one API process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.parked import store_url_for
from benchmarks.service import THREE_NODES, WFE, env_for
from benchmarks.stats import cpu_seconds
from workflow_engine.config import Settings
from workflow_engine.embedded_redis import EmbeddedRedis, free_port
from workflow_engine.store import open_store

BIN = Path(sys.executable).parent
TARGET_PER_S = 1500
WARM_UP_S = 3
FACTORY = "workflow_engine.api.app:create_app"
PROFILE_RATE = 200
BODY = {"workflowDefinition": THREE_NODES, "inputs": {"n": 1}}

LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
"""

# where the API's event loop thread spends its time: a sample counts for a part when one of its
# frames matches. A sample counts for the first unindented part it matches only (a task's stack
# starts at its own coroutine: what ``asyncio.gather`` runs is a task of its own, outside the
# request's); an indented part is within the unindented one above it.
PARTS: tuple[tuple[str, str], ...] = (
    (
        "request task: middleware, routing, dependencies, route, response",
        r"^RequestResponseCycle\.|\((starlette|fastapi)/|workflow_engine/api/",
    ),
    ("  dependencies (principal, bounded_body, services)", r"^solve_dependencies "),
    ("    a sync dependency run in the threadpool", r"^run_in_threadpool "),
    ("  request body read + JSON parse (bounded_body)", r"^Request\.(json|body) "),
    ("  route handler execute(), but for the tasks below", r"^execute \(workflow_engine/api/"),
    ("    BullMQ Queue.add (Lua)", r"^Queue\.add \(bullmq"),
    ("  response: encode + send", r"^(serialize_response|Response\.__call__) "),
    ("store.create task (insert + commit)", r"^StateStore\.create "),
    ("TenantGate.admit task (Redis Lua)", r"^TenantGate\.(admit|_send) "),
    ("EventPublisher flush loop (first events, XADD)", r"^EventPublisher\._flush_loop "),
    ("redis-py, outside the stacks above", r"\(redis/"),
    ("HTTP protocol callbacks (uvicorn/httptools/h11)", r"^(HttpToolsProtocol|H11Protocol)\."),
    ("uvloop itself (C: I/O, callbacks; the leaf is Runner.run)", r"^Runner\.run \(asyncio/"),
)
HELPER_ROOT = "Thread._bootstrap "
"""Stacks of threads other than the event loop's start here."""


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    return env_for(settings, WFE_TENANT_MAX_ACTIVE="0", WFE_METRICS_PORT="0", **extra)


def seconds(value: str) -> float:
    """``812.00us``, ``12.5ms``, ``1.02s``, ``2m`` as seconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {value!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures of wrk's report (run with ``--latency``)."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    if rate is None or total is None:
        raise ValueError(f"no figures in wrk's output:\n{output}")
    latency = {
        f"p{m.group(1)}_ms": seconds(m.group(2)) * 1000
        for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return {
        "requests_per_s": float(rate.group(1)),
        "requests": int(total.group(1)),
        "seconds": seconds(total.group(2)),
        **latency,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
    }


def wrk(url: str, script: Path, duration: float, connections: int, threads: int) -> str:
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def samples_of(collapsed: str) -> list[tuple[list[str], int]]:
    """The stacks (root first) and sample counts of a py-spy raw (collapsed) profile."""
    stacks = []
    for line in collapsed.splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            stacks.append((stack.split(";"), int(number)))
    return stacks


def shares(collapsed: str) -> tuple[int, int, list[tuple[str, float]]]:
    """Of a py-spy profile recorded without ``--idle``: the event loop thread's samples, the
    other threads' samples, and per part of PARTS its share of the loop thread's samples (the
    last part by the leaf frame only), then "other": the samples of no unindented part."""
    patterns = [(name, re.compile(pattern)) for name, pattern in PARTS]
    counts: Counter[str] = Counter()
    loop = helpers = 0
    for frames, samples in samples_of(collapsed):
        if frames[0].startswith(HELPER_ROOT):
            helpers += samples
            continue
        loop += samples
        placed = False
        for index, (name, pattern) in enumerate(patterns):
            last = index == len(patterns) - 1
            apart = not name.startswith(" ")
            if apart and placed:
                continue  # the unindented parts are counted once each: the first one found
            if any(pattern.search(frame) for frame in (frames[-1:] if last else frames)):
                counts[name] += samples
                placed = placed or apart
        if not placed:
            counts["other"] += samples
    names = [name for name, _ in PARTS] + ["other"]
    return loop, helpers, [(name, counts[name] / max(loop, 1)) for name in names]


def top_functions(collapsed: str, limit: int = 15) -> list[tuple[str, float]]:
    """The event loop thread's leaf functions (self time) with the most samples."""
    counts: Counter[str] = Counter()
    total = 0
    for frames, samples in samples_of(collapsed):
        if not frames[0].startswith(HELPER_ROOT):
            total += samples
            counts[frames[-1]] += samples
    return [(name, n / max(total, 1)) for name, n in counts.most_common(limit)]


def start_api(
    settings: Settings, port: int, server: str, uvicorn_args: Sequence[str], factory: str
) -> subprocess.Popen[bytes]:
    env = settings_env(settings, WFE_PORT=str(port), WFE_HOST="127.0.0.1")
    if server == "wfe":
        argv = [WFE, "api"]
    else:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *uvicorn_args,
        ]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)


async def wait_up(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited with code {proc.returncode}")
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API did not answer on {base} within {timeout:.0f}s")
            await asyncio.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def measure(
    settings: Settings,
    tmp: Path,
    *,
    duration: float,
    connections: int,
    threads: int,
    workers: int,
    server: str,
    uvicorn_args: Sequence[str],
    profile: Path | None,
    redis_pid: int,
    factory: str,
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    script = tmp / "submit.lua"
    script.write_text(LUA.format(body=json.dumps(json.dumps(BODY))))
    api = start_api(settings, port, server, uvicorn_args, factory)
    drains = [
        subprocess.Popen(
            [WFE, "worker", "--queues", "workflow"],
            env=settings_env(settings),
            stdout=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    spy: subprocess.Popen[bytes] | None = None
    try:
        await wait_up(base, api)
        url = f"{base}/api/workflow/execute"
        async with httpx.AsyncClient(timeout=10) as client:
            probe = await client.post(url, json=BODY)
        if probe.status_code != 202:
            raise RuntimeError(f"a submit answered {probe.status_code}: {probe.text}")
        await asyncio.to_thread(wrk, url, script, WARM_UP_S, connections, threads)
        if profile is not None:
            spy = subprocess.Popen(
                [
                    str(BIN / "py-spy") if (BIN / "py-spy").exists() else "py-spy",
                    "record",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--rate",
                    str(PROFILE_RATE),
                    "-d",
                    f"{duration + 1:g}",
                    "-o",
                    str(profile),
                    "-p",
                    str(api.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        watched = {"api": api.pid, "redis": redis_pid}
        before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        load = os.getloadavg()[0]
        output = await asyncio.to_thread(wrk, url, script, duration, connections, threads)
        used = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
        if spy is not None:
            spy.wait(timeout=60)
            spy = None
    finally:
        if spy is not None:
            stop(spy)
        for proc in [api, *drains]:
            stop(proc)
    figures = parse_wrk(output)
    figures["load_average_1m"] = load
    for name, seconds_used in used.items():  # per request, and the share of one core
        figures[f"{name}_cpu_ms_per_request"] = seconds_used * 1000 / max(figures["requests"], 1)
        figures[f"{name}_cpu_share"] = seconds_used / figures["seconds"]
    store = open_store(settings.store_url)
    try:
        counts = await store.count_by_status()
    finally:
        await store.close()
    figures["recorded_executions"] = sum(counts.values())
    figures["wrk_output"] = output
    return figures


async def run(
    store: str = "sqlite",
    duration: float = 15,
    connections: int = 32,
    threads: int = 2,
    workers: int = 0,
    server: str = "wfe",
    uvicorn_args: Sequence[str] = (),
    profile: Path | None = None,
    factory: str = FACTORY,
) -> dict[str, Any]:
    """One measured wrk run against one API process; wrk's figures and the store's count."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    from benchmarks import dbos_peer

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "redis", persist=False) as redis,
    ):
        store_url = await store_url_for(store, tmp)
        settings = Settings(
            redis_url=redis.url, store_url=store_url, queue_prefix=f"submit{time.time_ns()}"
        )
        migrated = open_store(store_url)  # the tables exist before the API and workers start
        await migrated.migrate()
        await migrated.close()
        try:
            figures = await measure(
                settings,
                Path(tmp),
                duration=duration,
                connections=connections,
                threads=threads,
                workers=workers,
                server=server,
                uvicorn_args=uvicorn_args,
                profile=profile,
                redis_pid=redis.process.pid if redis.process else os.getpid(),
                factory=factory,
            )
        finally:
            if store == "postgres":
                with contextlib.suppress(Exception):
                    await dbos_peer.drop_database(store_url)
    app = f" --factory {factory}" if server == "uvicorn" and factory != FACTORY else ""
    setup = f"{server}{app} {' '.join(uvicorn_args)}".strip()
    return {
        "store": store,
        "server": setup,
        "connections": connections,
        "threads": threads,
        "workers": workers,
        **figures,
    }


def report(results: dict[str, Any], profile: Path | None) -> None:
    rate = results["requests_per_s"]
    verdict = "meets" if rate >= TARGET_PER_S else "BELOW"
    print(
        f"{results['store']}, {results['server']}, {results['connections']} connections, "
        f"{results['workers']} draining worker(s): {rate:.0f} submits/s ({verdict} the "
        f"{TARGET_PER_S}/s target); latency p50 {results.get('p50_ms', 0):.1f} ms, "
        f"p90 {results.get('p90_ms', 0):.1f} ms, p99 {results.get('p99_ms', 0):.1f} ms; "
        f"{results['requests']} requests, non-2xx {results['non_2xx']}, socket errors "
        f"{results['socket_errors']}; executions recorded {results['recorded_executions']}"
    )
    api_ms = results["api_cpu_ms_per_request"]
    print(
        f"API process CPU {api_ms:.2f} ms per submit, {results['api_cpu_share']:.0%} of a core "
        f"(so at most {1000 / max(api_ms, 1e-9):.0f} submits/s on a core of its own); "
        f"redis-server {results['redis_cpu_ms_per_request']:.2f} ms per submit, "
        f"{results['redis_cpu_share']:.0%} of a core; machine load average "
        f"{results['load_average_1m']:.1f} on {os.cpu_count()} cores when wrk started"
    )
    if profile is not None and profile.exists():
        collapsed = profile.read_text()
        loop, helpers, parts = shares(collapsed)
        busy = loop / (PROFILE_RATE * results["seconds"])
        print(
            f"\nprofile of the API process ({profile}, py-spy at {PROFILE_RATE}/s, idle samples "
            f"left out): the event loop thread was busy in {min(busy, 1):.0%} of the samples; "
            f"the other threads (SQLite, threadpool) add {helpers} samples to its {loop}. "
            "Share of the loop thread's samples, by part:"
        )
        for name, share in parts:
            print(f"  {share:6.1%}  {name}")
        print("its top leaf functions (self time):")
        for name, share in top_functions(collapsed):
            print(f"  {share:6.1%}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--duration", type=float, default=15, help="seconds of the measured run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk's threads")
    parser.add_argument("--workers", type=int, default=0, help="wfe workers draining the queue")
    parser.add_argument("--server", choices=("wfe", "uvicorn"), default="wfe")
    parser.add_argument(
        "--uvicorn-arg",
        action="append",
        default=[],
        help="passed to uvicorn with --server uvicorn (repeat; e.g. --uvicorn-arg=--http=h11)",
    )
    parser.add_argument(
        "--factory",
        default=FACTORY,
        help="the app factory uvicorn runs with --server uvicorn (to try a patched app)",
    )
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the API to FILE")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    results = asyncio.run(
        run(
            args.store,
            args.duration,
            args.connections,
            args.threads,
            args.workers,
            args.server,
            args.uvicorn_arg,
            args.profile,
            args.factory,
        )
    )
    report(results, args.profile)
    if args.json:
        print(json.dumps({k: v for k, v in results.items() if k != "wrk_output"}, indent=2))


if __name__ == "__main__":
    main()
