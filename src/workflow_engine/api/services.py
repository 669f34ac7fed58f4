"""What the API process holds open: the store, a Redis client, the queues, the submitter."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from workflow_engine.api.auth import KeyRing
from workflow_engine.config import ConfigError, Settings
from workflow_engine.definition.expressions import ExpressionEngine
from workflow_engine.definition.validate import Limits
from workflow_engine.events.hub import StreamHub
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.keys import Keys
from workflow_engine.plan import Compiler, PlanCache
from workflow_engine.queue.admin import QueueAdmin
from workflow_engine.queue.cancel import Canceller
from workflow_engine.queue.fairness import FairnessLimits, TenantGate
from workflow_engine.queue.queues import QueueSet
from workflow_engine.queue.rerun import Rerunner
from workflow_engine.queue.resume import Resumer
from workflow_engine.queue.schedules import Scheduler
from workflow_engine.queue.submit import Submitter
from workflow_engine.queue.workflows import WorkflowLibrary
from workflow_engine.redis_pool import pooled_client
from workflow_engine.store import StateStore, open_store
from workflow_engine.vault import Vault


def fail_fast_redis(url: str) -> aioredis.Redis:
    """A client that answers "unreachable" within about a second instead of retrying for
    minutes, so that the API can say 503 and the caller can retry. One quick retry covers a
    pooled connection that went stale while Redis restarted."""
    return pooled_client(
        url,
        decode_responses=True,
        socket_connect_timeout=1,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


@dataclass
class Services:
    settings: Settings
    store: StateStore
    redis: aioredis.Redis
    queues: QueueSet
    submitter: Submitter
    keys: KeyRing
    redis_keys: Keys
    events: EventPublisher
    hub: StreamHub
    canceller: Canceller
    resumer: Resumer
    scheduler: Scheduler
    rerunner: Rerunner
    vault: Vault
    workflows: WorkflowLibrary

    @property
    def admin(self) -> QueueAdmin:
        return QueueAdmin(self.store, self.queues, self.redis, self.redis_keys, self.canceller)

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        keys = KeyRing(settings.api_keys)
        store = open_store(
            settings.store_url,
            max_batch=settings.group_commit_max,
            batch_window_ms=settings.group_commit_ms,
        )
        await store.migrate()
        vault = Vault.configured(settings.secret_key)
        if not vault.ready and await store.has_connections():
            await store.close()
            raise ConfigError(
                "the store holds connections, whose keys are encrypted: set WFE_SECRET_KEY "
                "(the key they were stored with)"
            )
        client = fail_fast_redis(settings.redis_url)
        queues = QueueSet(settings, client)
        redis_keys = Keys(settings.queue_prefix)
        events = EventPublisher(
            client, redis_keys, maxlen=settings.events_maxlen, ttl_s=settings.events_ttl_s
        )
        hub = StreamHub(settings.redis_url, redis_keys)
        plans = PlanCache(
            Compiler(
                limits=Limits(max_nodes=settings.max_nodes),
                expressions=ExpressionEngine.configured(settings),
            )
        )
        gate = TenantGate(
            client,
            redis_keys,
            FairnessLimits(settings.tenant_max_active, settings.tenant_rate),
            store.final_among,
        )
        submitter = Submitter(store, queues, plans, events, gate, settings.max_queued)
        canceller = Canceller(
            store, queues, client, redis_keys, events, hub, wait_s=settings.cancel_wait_s
        )
        return cls(
            settings,
            store,
            client,
            queues,
            submitter,
            keys,
            redis_keys,
            events,
            hub,
            canceller,
            Resumer(store, queues),
            Scheduler(queues, plans),
            Rerunner(store, plans, submitter),
            vault,
            WorkflowLibrary(store, plans),
        )

    async def close(self) -> None:
        await self.events.flush()
        await self.hub.close()
        await self.queues.close()
        await self.redis.aclose()
        await self.store.close()
