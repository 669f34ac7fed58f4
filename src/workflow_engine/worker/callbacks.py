"""Sending completion callbacks (``queue/callbacks.py`` queues them): POST the execution's final
status (the body of ``GET /api/workflow/status/{id}``) to its ``callbackUrl``, through the
egress policy (SPEC section 8), signed ``X-WFE-Signature: sha256=<HMAC of the body>`` with
the tenant's callback key (``queue/callbacks.py``), with ``X-WFE-Delivery`` (the same on every
attempt: a receiver that gets a delivery twice drops the second). A 2xx answer delivers it;
anything else, or no answer within ``TIMEOUT_S``, fails the attempt and BullMQ retries it later
with exponential backoff (the job waits delayed, no worker slot held). Each attempt is logged
in Redis, shown by the status route."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, Final

import httpx
import orjson
import redis.asyncio as aioredis

from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.queue.bullmq_adapter import JobHandle, UnrecoverableError
from workflow_engine.queue.callbacks import CALLBACK_JOB, DELIVERY, SIGNATURE
from workflow_engine.store.base import StateStore
from workflow_engine.vocabulary import iso

log = get_logger(__name__)

TIMEOUT_S: Final = 10.0
KEEP_ATTEMPTS: Final = 50
LOG_TTL_S: Final = 30 * 86_400


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class CallbackSender:
    def __init__(
        self,
        store: StateStore,
        redis: aioredis.Redis,
        keys: Keys,
        http: Callable[[], httpx.AsyncClient],
        secret: Callable[[str], bytes | None],
        queue_class: Callable[[str], str] = str,
    ) -> None:
        self.store = store
        self.queue_class = queue_class
        """A queue's class (a named queue's declared one): the context's ``type``."""
        self.redis = redis
        self.keys = keys
        self.http = http
        self.secret = secret
        """The signing key of a tenant's callbacks."""

    async def deliver(self, job: JobHandle) -> dict[str, Any]:
        delivery: dict[str, Any] = job.data[CALLBACK_JOB]
        execution_id = str(delivery["executionId"])
        record = await self.store.get(execution_id)
        secret = self.secret(record.tenant_id) if record is not None else None
        if record is None or secret is None:
            raise UnrecoverableError("nothing to deliver (execution gone, or no callback key)")
        body: dict[str, Any] = {
            "context": record.context(self.queue_class(record.queue)),
            "progress": record.progress_or_empty(),
            "result": record.result,
        }
        if record.variables is not None:
            body["variables"] = record.variables
        payload = orjson.dumps(body)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE: sign(secret, payload),
            DELIVERY: str(delivery["deliveryId"]),
            "User-Agent": "workflow-engine-callbacks",
        }
        entry: dict[str, Any] = {
            "deliveryId": delivery["deliveryId"],
            "attempt": job.attempt,
            "at": iso(time.time()),
        }
        try:
            # only the status counts: the receiver's body is never read (a hostile one could
            # answer with gigabytes)
            async with self.http().stream(
                "POST", str(delivery["url"]), content=payload, headers=headers, timeout=TIMEOUT_S
            ) as response:
                status = response.status_code
        except Exception as exc:  # refused by the egress policy, unreachable, timed out
            entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
            await self._log(execution_id, entry)
            raise RuntimeError(
                f"callback of {execution_id} not delivered: {entry['error']}"
            ) from None
        entry["status"] = status
        await self._log(execution_id, entry)
        if not 200 <= status < 300:
            raise RuntimeError(f"callback of {execution_id} answered {status}")
        log.info("callback delivered", executionId=execution_id, attempt=job.attempt)
        return {"executionId": execution_id, "delivered": True}

    async def _log(self, execution_id: str, entry: dict[str, Any]) -> None:
        key = self.keys.callbacks(execution_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, orjson.dumps(entry))
        pipe.ltrim(key, -KEEP_ATTEMPTS, -1)
        pipe.expire(key, LOG_TTL_S)
        try:
            await pipe.execute()
        except Exception as exc:
            log.warning("callback attempt not logged", executionId=execution_id, error=repr(exc))
