"""Long-running processes: the API server, a worker, and ``dev`` (both plus an embedded Redis).

Signals: the first SIGINT/SIGTERM stops gracefully (uvicorn drains, the worker lets active
executions finish within the grace period, then releases them); the servers shut down in order.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from pydantic import SecretStr

from workflow_engine.api.app import create_app
from workflow_engine.api.auth import KeyRing, check_bind
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.egress import LOOPBACK, policy_for
from workflow_engine.embedded_redis import EmbeddedRedis
from workflow_engine.monitor import tracing
from workflow_engine.monitor.logging import get_logger
from workflow_engine.store import open_store
from workflow_engine.vault import dev_key
from workflow_engine.worker.worker import WorkerService, worker_executor

log = get_logger(__name__)

DEV_DIR = Path(".wfe")
LEFTOVER_WAIT_S = 5


def run(main: Any) -> None:
    """Run a coroutine on uvloop when it is installed."""
    try:
        import uvloop

        uvloop.run(main)
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(main)


def freeze_startup_heap() -> None:
    """Move every object alive once a process has started (its modules, classes, the app and
    its routes: ~160,000 objects in the API) to the collector's permanent generation. Python's
    cyclic collector otherwise walks them all at each full collection, and a busy process
    triggers one every few hundred requests: freezing them cut a submit from 0.69-0.70 to
    0.48-0.56 ms of CPU (docs/benchmarks.md). What is frozen is never collected, so only what
    lives for the whole process is frozen: ``gc.collect`` first drops start-up's garbage."""
    gc.collect()
    gc.freeze()


def _on_stop_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Route SIGINT/SIGTERM to ``stop``. Uses ``signal.signal`` so that uvicorn, which swaps
    handlers while it serves and re-raises what it caught, hands the signal on to us."""
    loop = asyncio.get_running_loop()
    previous = {
        sig: signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


DRAIN_QUIET_S = 0.5
DRAIN_MAX_S = 5.0
KEEP_ALIVE_S = 75
"""How long an idle keep-alive connection stays open: longer than a proxy keeps its idle
connections to us (nginx's upstream ``keepalive_timeout``, 60 s), so that the proxy closes
them, not the API. uvicorn's default (5 s) closed some just as nginx sent a request on them
("upstream prematurely closed connection"): a POST that nginx does not retry, a 503."""


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with a shutdown that a load balancer keeping connections open
    (nginx's upstream ``keepalive``) does not turn into errors. uvicorn closes idle keep-alive
    connections as soon as it stops; a request the balancer has just written on one is reset,
    and nginx never retries a POST elsewhere: the client got a 503 (seen under load by
    tests/deploy/test_rolling_restart.py). Here the listening socket closes first (a refused
    connection is retried on another process), every response from then on says
    ``Connection: close``, and idle connections are closed only once no request has started or
    ended for ``DRAIN_QUIET_S`` (at most ``DRAIN_MAX_S``); then uvicorn's own shutdown."""

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        for server in self.servers:
            server.close()
        state = self.server_state
        state.default_headers = [*state.default_headers, (b"connection", b"close")]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_MAX_S
        seen, quiet_since = (state.total_requests, len(state.tasks)), loop.time()
        while state.connections and loop.time() < deadline:
            now = (state.total_requests, len(state.tasks))  # (a long stream changes neither)
            if now != seen:
                seen, quiet_since = now, loop.time()
            elif loop.time() - quiet_since >= DRAIN_QUIET_S:
                break
            await asyncio.sleep(0.05)  # (uvicorn has no event for a request)
        await super().shutdown(sockets)


def _server(app: Any, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return DrainingServer(config)


async def serve_api(settings: Settings) -> None:
    check_bind(settings.host, KeyRing(settings.api_keys))
    tracing.configure("workflow-engine-api")
    stop = asyncio.Event()
    restore = _on_stop_signals(stop)
    server = _server(create_app(settings), settings.host, settings.port)
    freeze_startup_heap()
    try:
        serving = asyncio.ensure_future(server.serve())
        await asyncio.wait(
            {serving, asyncio.ensure_future(stop.wait())}, return_when="FIRST_COMPLETED"
        )
        server.should_exit = True
        await serving
    finally:
        restore()


def without_password(url: str) -> str:
    """A URL fit to print: its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


async def serve_worker(settings: Settings, queues: Sequence[str] | None = None) -> None:
    store = open_store(
        settings.store_url,
        max_batch=settings.group_commit_max,
        batch_window_ms=settings.group_commit_ms,
    )
    await store.migrate()
    tracing.configure("workflow-engine-worker")
    service = WorkerService(settings, store, queues)
    executor = service.executor
    freeze_startup_heap()
    try:
        await service.run_until_stopped()
    finally:
        await executor.aclose()
        await store.close()
        await _stop_leftover_tasks()


async def _stop_leftover_tasks() -> None:
    """Cancel what is still running once the service has stopped (library timers and the like)
    and wait a little for it. A task that swallows cancellation would keep the process alive
    for ever (asyncio waits for it on the way out): everything is flushed by now, so name it
    and exit."""
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in leftover:
        task.cancel()
    if not leftover:
        return
    _, pending = await asyncio.wait(leftover, timeout=LEFTOVER_WAIT_S)
    if pending:
        for task in pending:
            log.warning("task does not stop; exiting without it", task=repr(task.get_coro()))
        sys.stderr.flush()
        os._exit(0)


async def serve_dev(settings: Settings, announce: Callable[[str], None]) -> None:
    """API + worker + embedded Redis + SQLite in ``./.wfe``: one command, nothing to set up."""
    check_bind(settings.host, KeyRing(settings.api_keys))
    redis_server = EmbeddedRedis(DEV_DIR / "redis", persist=True, die_with_parent=True).start()
    # connections' keys are stored encrypted: without WFE_SECRET_KEY, a key made once in .wfe
    secret = settings.secret_key or SecretStr(dev_key(DEV_DIR))
    settings = settings.model_copy(update={"redis_url": redis_server.url, "secret_key": secret})
    stop = asyncio.Event()
    restore = _on_stop_signals(stop)
    services: Services | None = None
    worker: WorkerService | None = None
    try:
        services = await Services.open(settings)
        # loopback allowed (SPEC 8: the banner says so); the embedded Redis stays refused
        executor = worker_executor(
            settings, services.store, egress=policy_for(settings, own_api=True).with_loopback()
        )
        worker = WorkerService(settings, services.store, executor=executor)
        app = create_app(settings, services)
        freeze_startup_heap()  # (before the worker takes jobs: theirs are not for ever)
        await worker.start()
        server = _server(app, settings.host, settings.port)
        serving = asyncio.ensure_future(server.serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.01)
        if serving.done():
            await serving  # it failed to start: say why
            return
        base = f"http://{settings.host}:{settings.port}"
        also = f" and {settings.egress_allow}" if settings.egress_allow else ""
        announce(
            f"workflow-engine dev is running\n"
            f"  API      {base}   (OpenAPI docs: {base}/docs)\n"
            f"  Redis    {redis_server.url}   (data in {DEV_DIR / 'redis'})\n"
            f"  store    {without_password(settings.store_url)}\n"
            f"  worker   queues {', '.join(settings.queue_names)}\n"
            f"  egress   workflows may reach loopback ({LOOPBACK}){also} (dev only)\n"
            f"Press Ctrl-C to stop."
        )
        await asyncio.wait(
            {serving, asyncio.ensure_future(stop.wait())}, return_when="FIRST_COMPLETED"
        )
        server.should_exit = True
        await serving
    finally:
        if worker is not None:
            await worker.stop()
            await worker.executor.aclose()
        if services is not None:
            await services.close()
        redis_server.stop()
        restore()
