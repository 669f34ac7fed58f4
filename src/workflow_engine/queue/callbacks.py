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
from workflow_engine.ids import new_id
from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.queue.queues import QueueSet
from workflow_engine.store.records import CALLBACK_KEY

log = get_logger(__name__)

CALLBACK_JOB: Final = "callback"
CALLBACK_QUEUE: Final = "background"
MAX_URL: Final = 2048
FIRST_RETRY_MS: Final = 1000
KEEP_DELIVERED: Final = {"age": 86_400, "count": 1000}
"""Delivered jobs stay a day (at most 1000): an execution's end announced again meanwhile (by
a worker taking over its job after a crash) finds its delivery there and adds none."""
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


def callback_job_id(execution_id: str) -> str:
    """The delivery job of an execution's end: one id, so announcing an end twice (a worker
    that crashed after recording it, before acknowledging its job) queues one delivery."""
    return f"callback-{execution_id}"


async def announce_end(
    queues: QueueSet, settings: Settings, execution_id: str, metadata: Mapping[str, Any]
) -> None:
    """Queue the delivery of an ended execution's callback, if it asked for one (once: see
    ``callback_job_id``). Logged, not raised, when Redis refuses: the execution's end stands
    either way."""
    url = metadata.get(CALLBACK_KEY) if isinstance(metadata, Mapping) else None
    if not isinstance(url, str):
        return
    delivery = {"executionId": execution_id, "url": url, "deliveryId": new_id("dlv")}
    try:
        await queues[CALLBACK_QUEUE].add(
            CALLBACK_JOB,
            {CALLBACK_JOB: delivery},
            {
                "jobId": callback_job_id(execution_id),
                "attempts": settings.callback_attempts,
                "backoff": {"type": "exponential", "delay": FIRST_RETRY_MS},
                "removeOnComplete": KEEP_DELIVERED,
                "removeOnFail": KEEP_DELIVERED,
            },
        )
    except Exception as exc:
        log.error("could not queue a callback", executionId=execution_id, error=repr(exc))


async def forget_end(queues: QueueSet, execution_id: str) -> None:
    """An ended execution runs again (its failed job retried): its next end is announced anew."""
    await queues[CALLBACK_QUEUE].remove(callback_job_id(execution_id))


async def delivery_log(redis: aioredis.Redis, keys: Keys, execution_id: str) -> list[Any]:
    """The attempts to deliver an execution's callback, oldest first (``worker/callbacks.py``
    writes them): ``[{deliveryId, attempt, at, status | error}]``."""
    return [orjson.loads(item) for item in await redis.lrange(keys.callbacks(execution_id), 0, -1)]
