"""Completion callbacks (``callbackUrl`` on ``execute``): when an execution ends, a delivery
job on the ``background`` queue POSTs its final status to the URL (``worker/callbacks.py``
sends it). Queued wherever an execution ends: a worker settling its run, a cancel that ends
it without a worker."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis

from workflow_engine.config import Settings
from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.queue.queues import QueueSet
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import CALLBACK_KEY, ExecutionRecord

log = get_logger(__name__)

CALLBACK_JOB: Final = "callback"
CALLBACK_QUEUE: Final = "background"
MAX_URL: Final = 2048
FIRST_RETRY_MS: Final = 1000
KEEP_DELIVERED: Final = {"age": 86_400, "count": 1000}
"""Delivered jobs stay a day (at most 1000): an execution's end announced again meanwhile (by
a worker taking over its job after a crash) finds its delivery there and adds none; later, it
is delivered again with the same ``X-WFE-Delivery``."""
SIGNATURE: Final = "X-WFE-Signature"
DELIVERY: Final = "X-WFE-Delivery"


def callback_secret(settings: Settings, tenant: str) -> bytes | None:
    """The key ``tenant``'s callbacks are signed with: ``WFE_CALLBACK_SECRET`` when the
    operator set one (every tenant's), else the tenant's own, derived from ``WFE_SECRET_KEY``
    (``tenant_callback_secret``); None when neither is set (callbacks are refused then)."""
    if settings.callback_secret is not None:
        return settings.callback_secret.get_secret_value().encode()
    if settings.secret_key is not None:
        return tenant_callback_secret(settings.secret_key.get_secret_value(), tenant).encode()
    return None


def tenant_callback_secret(secret_key: str, tenant: str) -> str:
    """A tenant's callback key, issued by ``GET /api/callbacks/secret``: HMAC-SHA256 of the
    tenant's name under ``secret_key``, in hex. Nothing to store, the same on every worker, and
    one tenant's key says nothing of another's."""
    message = b"wfe-callbacks:" + tenant.encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a callback URL; None when it can (the egress policy is checked
    at delivery, from the worker)."""
    if len(url) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is no number in 0-65535)
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http or https URL"
    return None


def is_callback(data: Mapping[str, Any]) -> bool:
    return isinstance(data.get(CALLBACK_JOB), dict)


def delivery_id(execution_id: str, ended_at: int) -> str:
    """The delivery of one end of an execution: the same id however often that end is
    announced (a worker that crashed after recording it, before acknowledging its job, is
    taken over and announces it again); a retried run's end is another delivery."""
    return f"dlv_{execution_id}_{ended_at}"


async def announce_end(queues: QueueSet, settings: Settings, record: ExecutionRecord) -> None:
    """Queue the delivery of an ended execution's callback, if it asked for one: one job per
    end (its id is the delivery's, so an end announced twice queues one delivery while the
    first is kept). Logged, not raised, when Redis refuses: the execution's end stands either
    way."""
    url = record.metadata.get(CALLBACK_KEY) if isinstance(record.metadata, Mapping) else None
    if not isinstance(url, str):
        return
    execution_id = record.execution_id
    delivery_key = delivery_id(execution_id, record.completed_at or 0)
    delivery = {"executionId": execution_id, "url": url, "deliveryId": delivery_key}
    try:
        await queues[CALLBACK_QUEUE].add(
            CALLBACK_JOB,
            {CALLBACK_JOB: delivery},
            {
                "jobId": delivery_key,
                "attempts": settings.callback_attempts,
                "backoff": {"type": "exponential", "delay": FIRST_RETRY_MS},
                "removeOnComplete": KEEP_DELIVERED,
                "removeOnFail": KEEP_DELIVERED,
            },
        )
    except Exception as exc:
        log.error("could not queue a callback", executionId=execution_id, error=repr(exc))


async def announce_end_of(
    queues: QueueSet, settings: Settings, store: StateStore, execution_id: str, metadata: Any
) -> None:
    """``announce_end`` for an execution that just ended, read again from the store (for the
    time of its end) only when it asked for a callback."""
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get(CALLBACK_KEY), str):
        return
    try:
        record = await store.get(execution_id)
    except Exception as exc:
        log.error("could not queue a callback", executionId=execution_id, error=repr(exc))
        return
    if record is not None:
        await announce_end(queues, settings, record)


async def delivery_log(redis: aioredis.Redis, keys: Keys, execution_id: str) -> list[Any]:
    """The attempts to deliver an execution's callback, oldest first (``worker/callbacks.py``
    writes them): ``[{deliveryId, attempt, at, status | error}]``."""
    return [orjson.loads(item) for item in await redis.lrange(keys.callbacks(execution_id), 0, -1)]
