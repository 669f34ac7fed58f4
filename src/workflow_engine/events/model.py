"""The event of SPEC section 5, the same JSON on WebSocket and SSE:
``{"id", "executionId", "type", "timestamp", "data"}`` where ``id`` is the Redis stream id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

EXECUTION_QUEUED = "execution.queued"
EXECUTION_STARTED = "execution.started"
EXECUTION_PROGRESS = "execution.progress"
EXECUTION_WAITING = "execution.waiting"
EXECUTION_COMPLETED = "execution.completed"
EXECUTION_FAILED = "execution.failed"
EXECUTION_CANCELLED = "execution.cancelled"
NODE_STARTED = "node.started"
NODE_COMPLETED = "node.completed"
NODE_FAILED = "node.failed"
NODE_SKIPPED = "node.skipped"
NODE_RETRYING = "node.retrying"
NODE_STREAM = "node.stream"
NODE_LOG = "node.log"

FINAL_TYPES = frozenset({EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_CANCELLED})
FINAL_TYPE_OF_STATUS = {
    "completed": EXECUTION_COMPLETED,
    "failed": EXECUTION_FAILED,
    "cancelled": EXECUTION_CANCELLED,
    "skipped": EXECUTION_COMPLETED,
}


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    execution_id: str
    type: str
    timestamp: str
    data: Any

    @property
    def final(self) -> bool:
        return self.type in FINAL_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "executionId": self.execution_id,
            "type": self.type,
            "timestamp": self.timestamp,
            "data": self.data,
        }

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()


FIELD = "e"
"""Each stream entry has one field: the event without its id and execution id (both implied)."""


def encode_entry(event_type: str, timestamp: str, data: Any) -> str:
    return orjson.dumps({"t": event_type, "ts": timestamp, "d": data}).decode()


def entry_type(fields: dict[str, str]) -> str | None:
    """The event type of a stream entry, without decoding its data."""
    raw = fields.get(FIELD, "")
    start = raw.find('"t":"')
    return raw[start + 5 : raw.index('"', start + 5)] if start >= 0 else None


def decode_entry(execution_id: str, entry_id: str, fields: dict[str, str]) -> Event:
    body = orjson.loads(fields[FIELD])
    return Event(entry_id, execution_id, body["t"], body["ts"], body["d"])


def final_event(
    status: str, result: Any, error: Any, progress: Any, *, recovered: bool = False
) -> tuple[str, dict[str, Any]]:
    """The type and data of the event that ends an execution with ``status``."""
    data: dict[str, Any] = {"progress": progress}
    if status == "completed":
        data["result"] = result
    else:
        data["error"] = error
    if status == "skipped":  # (a schedule's tick in the maintenance window)
        data["status"] = status
    if recovered:
        data["recovered"] = True
    return FINAL_TYPE_OF_STATUS[status], data


_MAX_PART = 2**64 - 1


def valid_stream_id(value: str) -> bool:
    """``<ms>-<seq>`` or ``<ms>``, each part a 64-bit unsigned number (what Redis accepts)."""
    ms, sep, seq = value.partition("-")
    parts = [ms, seq] if sep else [ms]
    return all(p.isdigit() and len(p) <= 20 and int(p) <= _MAX_PART for p in parts)


def stream_id_after(a: str, b: str) -> bool:
    """Whether stream id ``a`` comes after ``b`` (``ms-seq`` compared as numbers)."""
    return _parse(a) > _parse(b)


def _parse(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
