"""What running a node produces, and how far an execution got. Wire form is camelCase."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflow_engine.vocabulary.status import NodeStatus
from workflow_engine.vocabulary.times import from_iso, iso


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
