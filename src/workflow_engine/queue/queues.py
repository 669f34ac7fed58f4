"""The queues as BullMQ queues, with their job defaults: the four classes (SPEC section 3) and
the named queues of the configuration (``WFE_NAMED_QUEUES``), each with its class's defaults."""

from __future__ import annotations

from typing import Any

from bullmq import Queue

from workflow_engine.config import QueueSettings, Settings
from workflow_engine.keys import Keys

JOB_NAME = "execute"


def job_defaults(queue: QueueSettings) -> dict[str, Any]:
    """BullMQ ``defaultJobOptions`` for a queue class. The execution timeout is not a BullMQ
    option: the worker enforces it."""
    options: dict[str, Any] = {
        "attempts": queue.attempts,
        "removeOnComplete": queue.remove_on_complete,
        "removeOnFail": queue.remove_on_fail,
    }
    if queue.backoff_ms:
        options["backoff"] = {"type": "exponential", "delay": queue.backoff_ms}
    return options


JOB_STATES = ("waiting", "prioritized", "paused", "active", "delayed", "completed", "failed")
"""BullMQ's job states, as ``getJobCounts`` names them."""


class UnknownQueue(KeyError):
    """A queue this process's configuration does not declare (a named queue another process
    has, or one since removed from ``WFE_NAMED_QUEUES``)."""

    def __str__(self) -> str:
        return (
            f"queue {self.args[0]!r} is not declared in this process (WFE_NAMED_QUEUES): "
            "every API and worker process needs the same named queues"
        )


class QueueSet:
    """One BullMQ ``Queue`` per queue (class or named queue), sharing a connection.

    ``connection`` is a redis-py asyncio client (``decode_responses=True``) or a URL. The API
    passes a client that fails fast, so that a Redis outage is a 503, not a hang.
    """

    def __init__(self, settings: Settings, connection: Any) -> None:
        self.settings = settings
        keys = Keys(settings.queue_prefix)
        self.queues = {
            name: Queue(
                name,
                {
                    "connection": connection,
                    "prefix": keys.bullmq_prefix,
                    "defaultJobOptions": job_defaults(settings.queue(name)),
                },
            )
            for name in settings.queue_names
        }

    def __getitem__(self, name: str) -> Queue:
        try:
            return self.queues[name]
        except KeyError:
            raise UnknownQueue(name) from None

    async def counts(self) -> dict[str, dict[str, int]]:
        """Per queue: waiting (including prioritized and paused), active, completed, failed,
        delayed."""
        out: dict[str, dict[str, int]] = {}
        for name, queue in self.queues.items():
            raw = await queue.getJobCounts(
                "waiting", "prioritized", "paused", "active", "completed", "failed", "delayed"
            )
            out[name] = {
                "waiting": raw["waiting"] + raw["prioritized"] + raw["paused"],
                "active": raw["active"],
                "completed": raw["completed"],
                "failed": raw["failed"],
                "delayed": raw["delayed"],
            }
        return out

    async def states(self) -> dict[str, dict[str, int]]:
        """Per queue: BullMQ's own count of each job state (``JOB_STATES``)."""
        out: dict[str, dict[str, int]] = {}
        for name, queue in self.queues.items():
            raw = await queue.getJobCounts(*JOB_STATES)
            out[name] = {state: int(raw.get(state) or 0) for state in JOB_STATES}
        return out

    async def close(self) -> None:
        for queue in self.queues.values():
            await queue.close()
