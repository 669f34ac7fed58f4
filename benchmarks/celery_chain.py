"""The Python peer, for comparison: a Celery chain of three no-op tasks on Redis.

    python -m benchmarks.celery_chain [--chains 2000] [--samples 200]
                                      [--pool prefork|threads|solo] [--processes N]
                                      [--concurrency 50]

What users would pick instead of our engine for "three steps, one after the other": Celery 5
with Redis as both broker and result backend (one URL), `chain(step.s(i), step.s(), step.s())`,
each `step` a no-op returning its input + 1, every result stored (Celery's default). One
worker: a separate `python -m celery -A benchmarks.celery_chain worker` process, cwd = the
repo root, which reads the Redis URL and the namespace from environment variables.

Measured:
  - chains_per_s, a drain: the worker is started, answers a ping and runs 50 chains; it is
    told to stop consuming its queue (`cancel_consumer`), all `chains` chains are published
    (their first steps wait in the queue), then the clock starts, the worker is told to consume
    again (`add_consumer`), and the clock stops when the last step of every chain has its
    result in the backend. That wait polls the result keys with MGET every 10 ms at most (see
    `wait_for_results` for why not `.get()`); the values are checked (i + 3) off the clock.
  - latency_p50_ms / latency_p99_ms: one chain at a time, the worker idle and warm, from
    `apply_async()` to `.get()` returning (Celery's pub/sub wait), over `latency_samples`
    chains after 10 untimed ones; percentiles from benchmarks/stats.py.

Namespace: the caller's Redis URL, db number included, is used as given; everything this run
writes is under a fresh prefix `celery-bench-<hex>:`. The queue is named after it, and both
`broker_transport_options` and `result_backend_transport_options` carry it as
`global_keyprefix` (kombu prefixes the control fanout's pub/sub channels too, and the result
channels are the prefixed result keys). Those keys are deleted at the end.

Pool: prefork with one child per core (2 here), which is also what a bare `celery worker`
runs. On this 2-core VM, 2000 chains, the three pools interleaved in the same minutes
(chains/s; the VM's speed moved by up to 1.8x during the runs, other jobs shared it):
prefork/2 135-247 (median ~185), threads/50 112-156 (~125), solo 91-156 (~130); prefork/4
190 and threads/8 98-146 were no better. The worker is CPU-bound (~2-3 ms of Python per
task: delivery and ack, a GET + SETEX + PUBLISH for the result, the next step's publish), so
the only pool that uses the second core wins; 50 threads add GIL contention to one core.
Latency p50 is about the same for all three (7-12 ms). The worker runs with
`--without-gossip --without-mingle --without-heartbeat` (no cluster chatter for a lone
worker) and Celery's default prefetch (4 per child).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

import redis
from celery import Celery, chain
from celery.exceptions import TimeoutError as CeleryTimeoutError

from benchmarks.stats import percentiles

ENV_URL = "CELERY_CHAIN_BENCH_REDIS_URL"
ENV_NAMESPACE = "CELERY_CHAIN_BENCH_NAMESPACE"
STEP = "benchmarks.celery_chain.step"
REPO = Path(__file__).resolve().parents[1]
WARMUP_CHAINS = 50
WARMUP_LATENCY = 10
POLL_S = 0.01  # waiting for a drain: the pause between MGETs when the front is unfinished
SWEEP = 64  # result keys per MGET
RECHECK_S = 1.0  # a single chain's .get() is asked again after this (see get_result)


def step(value: int) -> int:
    """The no-op step: input + 1."""
    return value + 1


def make_app(redis_url: str, namespace: str) -> Celery:
    """One app for the worker and one for the client, identical: same URL, queue, prefix."""
    app = Celery(
        "benchmarks.celery_chain", broker=redis_url, backend=redis_url, set_as_current=False
    )
    prefix = {"global_keyprefix": f"{namespace}:"}
    app.conf.update(
        task_default_queue=namespace,
        broker_transport_options=prefix,
        result_backend_transport_options=prefix,
        broker_connection_retry_on_startup=True,
    )
    app.task(name=STEP)(step)  # a call, not a decorator: the app is untyped
    return app


# The worker's app (`celery -A benchmarks.celery_chain` finds `app`). Importing this module
# elsewhere creates it too, without connecting: Celery connects on first use.
app = make_app(
    os.environ.get(ENV_URL, "redis://127.0.0.1:6379/0"),
    os.environ.get(ENV_NAMESPACE, "celery-bench"),
)


def pool_size(pool: str, concurrency: int, processes: int | None) -> int:
    """prefork: `processes` children, one per core by default; threads: `concurrency`."""
    sizes = {"prefork": processes or len(os.sched_getaffinity(0)), "threads": concurrency}
    return sizes.get(pool, 1)


def start_worker(
    redis_url: str, namespace: str, pool: str, concurrency: int, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """`celery worker` in a session of its own, so that prefork children can be killed with it."""
    env = {**os.environ, ENV_URL: redis_url, ENV_NAMESPACE: namespace}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "benchmarks.celery_chain",
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--loglevel=WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--queues={namespace}",
        f"--hostname={namespace}@%h",
    ]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (warm shutdown: the worker stops its pool children); SIGKILL to its process
    group if it is not gone in 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def worker_failed(proc: subprocess.Popen[bytes], log: IO[bytes], what: str) -> RuntimeError:
    log.flush()
    log.seek(0)
    tail = log.read().decode(errors="replace")[-2000:]
    return RuntimeError(f"celery worker {what} (exit code {proc.poll()}):\n{tail}")


def wait_for_worker(
    client: Celery, proc: subprocess.Popen[bytes], log: IO[bytes], timeout: float = 60
) -> None:
    """Ping until the worker answers (each ping waits up to 0.5 s for its reply)."""
    deadline = time.monotonic() + timeout
    while not client.control.ping(timeout=0.5, limit=1):
        if proc.poll() is not None:
            raise worker_failed(proc, log, "exited before answering a ping")
        if time.monotonic() > deadline:
            raise worker_failed(proc, log, f"did not answer a ping within {timeout} s")


def control(client: Celery, method: str, namespace: str) -> None:
    """`add_consumer` / `cancel_consumer`, and insist on the worker's reply. `limit=1`: a
    broadcast otherwise waits out its whole timeout for more workers than the one there is."""
    replies: list[dict[str, Any]] = getattr(client.control, method)(
        namespace, reply=True, timeout=5, limit=1
    )
    if not replies or any("ok" not in reply for reply in replies[0].values()):
        raise RuntimeError(f"celery worker did not acknowledge {method}: {replies!r}")


def three_steps(client: Celery, i: int) -> Any:
    """`chain(step.s(i), step.s(), step.s())`, bound to the client app."""
    task = client.tasks[STEP]
    return chain(task.s(i), task.s(), task.s())


def wait_for_results(client: Celery, results: list[Any], timeout: float) -> list[bytes]:
    """Until every result is in the backend, by polling its keys: MGET from the front, stepping
    past the finished prefix, a short pause only when the front is unfinished. Returns the
    stored results, still encoded. (In a drain, each next step goes to the back of the FIFO
    queue: all first steps run, then the second ones, then the last ones, in publish order,
    so chain 0 finishes about two thirds in, and the rest follow it in order.)

    Not `.get()` in a loop: Celery's redis result backend can miss a result stored while
    `.get()` starts (see `get_result`), and a many-results wait is where that happens."""
    backend = client.backend
    keys = [backend.get_key_for_task(result.id) for result in results]
    stored: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(stored) < len(keys):
        values = backend.client.mget(keys[len(stored) : len(stored) + SWEEP])
        finished = next((n for n, value in enumerate(values) if value is None), len(values))
        stored.extend(values[:finished])
        if finished == 0:
            if time.monotonic() > deadline:
                missing = len(keys) - len(stored)
                raise TimeoutError(f"{missing} celery chains not finished within {timeout} s")
            time.sleep(POLL_S)
    return stored


def check(client: Celery, stored: list[bytes]) -> None:
    """Chain i returned i + 3."""
    for i, raw in enumerate(stored):
        meta = client.backend.decode_result(raw)
        if meta["status"] != "SUCCESS" or meta["result"] != i + 3:
            raise RuntimeError(f"celery chain {i} ended {meta['status']}: {meta['result']!r}")


def get_result(result: Any, timeout: float) -> tuple[Any, int]:
    """`result.get()`, re-asked every RECHECK_S; returns (value, how many re-asks it took).

    Celery 5.7's redis result backend sends SUBSCRIBE for the result channel, then GETs the
    key on another connection without waiting for the subscription: Redis may run the GET
    first, and a result stored and PUBLISHed between the two is never delivered (seen here
    with MONITOR; `.get()` then blocks to its timeout). Each new `.get()` GETs the key again."""
    deadline = time.monotonic() + timeout
    rechecks = 0
    while True:
        try:
            return result.get(timeout=RECHECK_S), rechecks
        except CeleryTimeoutError:
            if time.monotonic() > deadline:
                raise
            rechecks += 1


def drain(client: Celery, namespace: str, chains: int) -> float:
    """Publish `chains` chains while the worker is not consuming, then time it draining them."""
    control(client, "cancel_consumer", namespace)
    results = [three_steps(client, i).apply_async() for i in range(chains)]
    started = time.perf_counter()
    control(client, "add_consumer", namespace)
    stored = wait_for_results(client, results, timeout=max(60, chains / 10))
    elapsed = time.perf_counter() - started
    check(client, stored)
    return chains / elapsed


def latency(client: Celery, samples: int) -> tuple[float, float]:
    """One chain at a time: apply_async to .get() returning, in ms; (p50, p99). A few chains
    first, untimed: the client reads the backlog of result messages left by the drain."""
    timings = []
    rechecks = 0
    for i in range(-WARMUP_LATENCY, samples):
        started = time.perf_counter()
        value, again = get_result(three_steps(client, i).apply_async(), timeout=30)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if value != i + 3:
            raise RuntimeError(f"celery chain returned {value!r}, expected {i + 3}")
        if i >= 0:
            timings.append(elapsed_ms)
            rechecks += again
    if rechecks:
        print(
            f"celery: {rechecks} of {samples} chains needed .get() asked again after "
            f"{RECHECK_S} s (a lost result notification, or a slow chain); timed as they were",
            file=sys.stderr,
        )
    return percentiles(timings)


def delete_namespace(redis_url: str, namespace: str) -> None:
    """Best effort: an unreachable Redis must not hide the error that ended the run."""
    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(redis_url) as conn:
        keys = list(conn.scan_iter(match=f"{namespace}:*", count=1000))
        for start in range(0, len(keys), 1000):
            conn.unlink(*keys[start : start + 1000])


def celery_chain(
    redis_url: str,
    chains: int = 2000,
    latency_samples: int = 200,
    concurrency: int = 50,
    *,
    pool: str = "prefork",
    processes: int | None = None,
) -> dict[str, float]:
    """Returns {"chains_per_s": ..., "latency_p50_ms": ..., "latency_p99_ms": ...}

    One Celery worker on `redis_url` as broker and result backend, under a fresh key prefix;
    a drain of `chains` 3-step chains published first, then `latency_samples` chains one at a
    time. `pool`: "prefork" (the default: fastest here) runs `processes` children, by default
    one per core (Celery's own default); "threads" runs `concurrency` threads; "solo" one task
    at a time. The worker is stopped in any case."""
    size = pool_size(pool, concurrency, processes)
    namespace = f"celery-bench-{uuid.uuid4().hex[:12]}"
    client = make_app(redis_url, namespace)
    with tempfile.TemporaryFile() as log:
        proc = start_worker(redis_url, namespace, pool, size, log)
        try:
            wait_for_worker(client, proc, log)
            warm = [three_steps(client, i).apply_async() for i in range(WARMUP_CHAINS)]
            check(client, wait_for_results(client, warm, timeout=60))
            chains_per_s = drain(client, namespace, chains)
            p50, p99 = latency(client, latency_samples)
        finally:
            stop_worker(proc)
            client.close()
            delete_namespace(redis_url, namespace)
    return {"chains_per_s": chains_per_s, "latency_p50_ms": p50, "latency_p99_ms": p99}


if __name__ == "__main__":
    from workflow_engine.embedded_redis import EmbeddedRedis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "threads", "solo"])
    parser.add_argument("--processes", type=int, help="prefork children (default: one per core)")
    parser.add_argument("--concurrency", type=int, default=50, help="threads of the threads pool")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "redis", persist=False) as server,
    ):
        size = pool_size(args.pool, args.concurrency, args.processes)
        print(f"private redis-server on {server.url}; celery pool {args.pool}, {size}")
        figures = celery_chain(
            server.url,
            args.chains,
            args.samples,
            args.concurrency,
            pool=args.pool,
            processes=args.processes,
        )
        print(figures)
