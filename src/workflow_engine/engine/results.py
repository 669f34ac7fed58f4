"""What an execution produces: node results, progress, the outcome. Wire form is camelCase."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from workflow_engine.engine.status import ExecutionStatus, NodeStatus


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with milliseconds, as on the wire."""
    if ts is None:
        return None
    return _iso_ms(int(ts * 1000))


@functools.lru_cache(maxsize=4096)
def _iso_ms(ms: int) -> str:
    # many timestamps of a burst share a millisecond: format each millisecond once
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(text: str | None) -> float | None:
    """ISO 8601 (as ``iso`` writes it) -> epoch seconds."""
    if text is None:
        return None
    return datetime.fromisoformat(text).timestamp()


@dataclass(slots=True)
class NodeResult:
    node_id: str
    node_type: str
    name: str | None
    status: NodeStatus = NodeStatus.PENDING
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    attempt: int = 0
    started_at: float | None = None
    completed_at: float | None = None

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return round((self.completed_at - self.started_at) * 1000, 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "nodeType": self.node_type,
            "name": self.name,
            "status": str(self.status),
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "attempt": self.attempt,
            "startedAt": iso(self.started_at),
            "completedAt": iso(self.completed_at),
            "durationMs": self.duration_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeResult:
        """The inverse of ``to_dict`` (a checkpoint, an event, a result of another run)."""
        return cls(
            node_id=data["nodeId"],
            node_type=data["nodeType"],
            name=data.get("name"),
            status=NodeStatus(data["status"]),
            input=data.get("input"),
            output=data.get("output"),
            error=data.get("error"),
            attempt=int(data.get("attempt") or 0),
            started_at=from_iso(data.get("startedAt")),
            completed_at=from_iso(data.get("completedAt")),
        )


@dataclass(frozen=True, slots=True)
class Progress:
    current_node: str | None
    completed_nodes: tuple[str, ...]
    total_nodes: int

    @property
    def percentage(self) -> int:
        if self.total_nodes == 0:
            return 100
        return len(self.completed_nodes) * 100 // self.total_nodes

    def to_dict(self) -> dict[str, Any]:
        return {
            "currentNode": self.current_node,
            "completedNodes": list(self.completed_nodes),
            "totalNodes": self.total_nodes,
            "percentage": self.percentage,
        }


@dataclass(slots=True)
class ExecutionOutcome:
    execution_id: str
    workflow_id: str
    status: ExecutionStatus
    result: Any
    error: dict[str, Any] | None
    nodes: dict[str, NodeResult]
    progress: Progress
    started_at: float
    completed_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    parked: dict[str, float | None] = field(default_factory=dict)
    """When ``waiting``: the parked nodes and when each wants to resume (None: on an answer)."""

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.COMPLETED

    @property
    def resume_at(self) -> float | None:
        """The earliest time a parked node wants to resume; None when all wait for answers."""
        times = [t for t in self.parked.values() if t is not None]
        return min(times) if times else None

    def to_dict(self, *, nodes: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "executionId": self.execution_id,
            "workflowId": self.workflow_id,
            "status": str(self.status),
            "result": self.result,
            "error": self.error,
            "progress": self.progress.to_dict(),
            "startedAt": iso(self.started_at),
            "completedAt": iso(self.completed_at),
        }
        if nodes:
            data["nodes"] = [n.to_dict() for n in self.nodes.values()]
        return data
