"""The worker process: one BullMQ Worker per chosen queue class, all feeding one JobRunner.

Shutdown (SIGTERM/SIGINT): stop taking jobs, let the active ones finish within the grace period,
then release the rest to the queue so that another worker resumes them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bullmq import Queue

from workflow_engine.config import Settings
from workflow_engine.connections import FirstFound, ServerConnections
from workflow_engine.definition.expressions import ExpressionEngine
from workflow_engine.definition.validate import Limits
from workflow_engine.egress import EgressPolicy, policy_for
from workflow_engine.engine.executor import Executor
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.monitor.metrics import count_tenants
from workflow_engine.queue.bullmq_adapter import ChainingWorker
from workflow_engine.queue.callbacks import callback_secret
from workflow_engine.queue.children import ChildLauncher
from workflow_engine.queue.fairness import FairnessLimits, TenantGate
from workflow_engine.queue.queues import QueueSet
from workflow_engine.queue.submit import Submitter
from workflow_engine.redis_pool import from_url, is_sentinel, pooled_client
from workflow_engine.sandbox.limits import SandboxLimits
from workflow_engine.store.base import StateStore
from workflow_engine.vault import Vault
from workflow_engine.worker.callbacks import CallbackSender
from workflow_engine.worker.cancel import CancelListener
from workflow_engine.worker.connections import StoredConnections
from workflow_engine.worker.periodic import repeat
from workflow_engine.worker.probes import Probes
from workflow_engine.worker.recovery import Recovery
from workflow_engine.worker.retention import Retention
from workflow_engine.worker.runner import JobRunner

log = get_logger(__name__)

CANCEL_WATCH_S = 2.0
# BullMQ blocks in BZPOPMIN for up to 10 s while a queue is idle; redis-py >= 6 times every read
# out after 5 s unless told otherwise, and bullmq then retries with a back-off of seconds.
BLOCKING_SOCKET_TIMEOUT_S = 30


def blocking_connection(redis_url: str) -> str:
    """The Redis URL for a BullMQ worker: ``redis_url`` with a socket timeout longer than the
    longest blocking wait (an explicit ``socket_timeout`` in the URL is kept)."""
    parts = urlsplit(redis_url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_timeout", str(BLOCKING_SOCKET_TIMEOUT_S))
    return urlunsplit(parts._replace(query=urlencode(query)))


def bullmq_connection(redis_url: str, *, blocking: bool = False) -> Any:
    """The ``connection`` option of a BullMQ Queue or Worker: the URL (``blocking``: with
    ``blocking_connection``'s socket timeout), or for a Sentinel URL a client of its own that
    follows the primary (bullmq reads only plain URLs)."""
    if is_sentinel(redis_url):
        options: dict[str, Any] = {"decode_responses": True}
        if blocking:
            options["socket_timeout"] = BLOCKING_SOCKET_TIMEOUT_S
        return from_url(redis_url, **options)
    return blocking_connection(redis_url) if blocking else redis_url


def worker_executor(
    settings: Settings, store: StateStore, egress: EgressPolicy | None = None
) -> Executor:
    """The executor of a worker: its limits, budgets and sandbox from ``settings``; egress as
    ``settings`` says unless given; the tenant's stored connections, then the server-wide."""
    return Executor(
        limits=Limits(max_nodes=settings.max_nodes, max_loop_results=settings.max_loop_results),
        park_after=settings.park_after_s,
        egress=egress if egress is not None else policy_for(settings),
        expressions=ExpressionEngine.configured(settings),
        max_output_bytes=settings.max_output_bytes,
        sandbox=SandboxLimits.configured(settings),
        connections=FirstFound(
            StoredConnections(store, Vault.configured(settings.secret_key)),
            ServerConnections(settings.connections),
        ),
    )


class WorkerService:
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        queues: Sequence[str] | None = None,
        executor: Executor | None = None,
    ) -> None:
        queues = settings.queue_names if queues is None else queues
        unknown = sorted(set(queues) - set(settings.queue_names))
        if unknown:
            raise ValueError(
                f"unknown queue(s): {', '.join(unknown)} (known: {', '.join(settings.queue_names)})"
            )
        self.settings = settings
        self.store = store
        self.queue_names = list(queues)
        self.executor = executor or worker_executor(settings, store)
        self.keys = Keys(settings.queue_prefix)
        self.redis = pooled_client(settings.redis_url, decode_responses=True)
        self.events = EventPublisher(
            self.redis,
            self.keys,
            maxlen=settings.events_maxlen,
            ttl_s=settings.events_ttl_s,
            checkpoint_ttl_s=settings.checkpoint_ttl_s,
        )
        self.runner = JobRunner(settings, store, self.executor, self.events)
        self.cancels = CancelListener(settings.redis_url, self.keys, self.runner)
        self.workers: dict[str, ChainingWorker] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self.retention = Retention(
            store,
            self.redis,
            self.keys,
            days=settings.retention_days,
            interval_s=settings.cleanup_interval_s,
            worker_id=settings.worker_id,
        )
        self.recovery = Recovery(
            store,
            QueueSet(settings, self.redis),
            self.redis,
            self.keys,
            self.events,
            interval_s=settings.recovery_interval_s,
            stale_s=settings.recovery_after_s,
        )
        self._periodic: list[asyncio.Task[None]] = []
        # ``workflow`` nodes start their children here, and children tell their parents
        gate = TenantGate(
            self.redis,
            self.keys,
            FairnessLimits(settings.tenant_max_active, settings.tenant_rate),
            store.final_among,
        )
        submitter = Submitter(
            store, self.recovery.queues, self.runner.plans, self.events, gate, settings.max_queued
        )
        children = ChildLauncher(submitter, settings.max_depth)
        self.executor.children = children
        self.runner.children = children
        self.runner.queues = self.recovery.queues
        self.runner.callbacks = CallbackSender(
            store,
            self.redis,
            self.keys,
            self.executor.http_client,
            partial(callback_secret, settings),
            settings.queue_class,
        )
        count_tenants(settings.metrics_tenant_label)
        self.probes: Probes | None = None
        if settings.metrics_port:
            self.probes = Probes(
                settings.host,
                settings.metrics_port,
                lambda: bool(self.workers) and not self._stopping.is_set(),
                {"redis": self.redis.ping, "store": store.ping},
                settings.metrics_token,
            )

    async def start(self) -> None:
        keys = self.keys
        if self.probes is not None:
            await self.probes.start()
        await self.cancels.start()
        for name in self.queue_names:
            queue_settings = self.settings.queue(name)
            worker = ChainingWorker(
                name,
                self.runner.process,
                {
                    "connection": bullmq_connection(self.settings.redis_url, blocking=True),
                    "prefix": keys.bullmq_prefix,
                    "concurrency": queue_settings.concurrency,
                    "stalledInterval": self.settings.stalled_interval_ms,
                    "drainDelay": self.settings.drain_delay_s,
                    "maxStalledCount": self.settings.max_stalled_count,
                    "lockDuration": self.settings.lock_duration_ms,
                    "autorun": False,
                    "name": self.settings.worker_id,
                },
            )
            worker.on("error", lambda err, *_: log.warning("bullmq worker error", error=repr(err)))
            self.workers[name] = worker
            self._tasks.append(asyncio.ensure_future(worker.run()))
        if self.settings.rate_limit_max:
            await self._apply_rate_limit()
        self._watch = asyncio.ensure_future(self._watch_cancelled())
        if self.settings.retention_days > 0:
            cleanup = repeat("cleanup", self.settings.cleanup_interval_s, self.retention.run_once)
            self._periodic.append(asyncio.ensure_future(cleanup))
        recovery = repeat("recovery", self.settings.recovery_interval_s, self.recovery.run_once)
        self._periodic.append(asyncio.ensure_future(recovery))
        log.info(
            "worker started",
            queues=self.queue_names,
            concurrency={n: self.settings.queue(n).concurrency for n in self.queue_names},
        )

    async def _apply_rate_limit(self) -> None:
        keys = Keys(self.settings.queue_prefix)
        for name in self.queue_names:
            queue = Queue(
                name,
                {
                    "connection": bullmq_connection(self.settings.redis_url),
                    "prefix": keys.bullmq_prefix,
                },
            )
            try:
                await queue.setGlobalRateLimit(
                    self.settings.rate_limit_max, self.settings.rate_limit_duration_ms
                )
            finally:
                await queue.close()

    async def _watch_cancelled(self) -> None:
        """A cancel can miss a worker (its pub/sub connection was being re-made); the record
        cannot: every few seconds, runs whose record was ended by someone else are cancelled."""
        while True:
            await asyncio.sleep(CANCEL_WATCH_S)
            ids = list(self.runner.active)
            if not ids:
                continue
            try:
                ended = await self.store.final_among(ids)
            except Exception as exc:
                log.debug("cancel watch skipped", error=repr(exc))
                continue
            for execution_id in ended:
                self.runner.request_cancel(execution_id)

    async def _hand_over_wake_ups(self) -> None:
        """BullMQ wakes one idle worker when a job becomes delayed (a parked execution); if that
        was this one, the wake-up leaves with it and the others would notice the job only at
        their next idle poll. A fresh marker makes another worker look now."""
        pipe = self.redis.pipeline(transaction=False)
        for name in self.queue_names:
            pipe.zadd(self.keys.bullmq_marker(name), {"0": 0})
        try:
            await pipe.execute()
        except Exception as exc:
            log.warning("could not wake the other workers", error=repr(exc))

    def request_stop(self) -> None:
        self._stopping.set()

    async def run_until_stopped(self) -> None:
        """Run until SIGTERM/SIGINT (or ``request_stop``), then shut down gracefully. A second
        signal skips the grace period."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal)
        try:
            await self.start()
            await self._stopping.wait()
            await self.stop()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        if self._stopping.is_set():
            log.warning("second signal: releasing active executions now")
            self.runner.release_all()
        self._stopping.set()

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.shutdown_grace_s if grace is None else grace
        log.info("worker stopping", active=len(self.runner.active), grace_s=grace)
        closing = asyncio.ensure_future(
            asyncio.gather(*(w.close() for w in self.workers.values()), return_exceptions=True)
        )
        done, _ = await asyncio.wait({closing}, timeout=grace)
        if not done:
            log.warning(
                "grace period over: releasing active executions", active=len(self.runner.active)
            )
            self.runner.release_all()
            await closing
        await asyncio.gather(*self._tasks, return_exceptions=True)
        background = [task for task in (self._watch, *self._periodic) if task is not None]
        for task in background:
            task.cancel()
        # done before the clients they use are closed (a command after that would reconnect)
        await asyncio.gather(*background, return_exceptions=True)
        await self.cancels.stop()
        await self.store.flush()
        await self.events.flush()
        await self._hand_over_wake_ups()
        await self.recovery.queues.close()
        await self.redis.aclose()
        if self.probes is not None:
            await self.probes.stop()
        log.info("worker stopped")
