"""Why an execution did not complete: the ``error`` of the execution context (SPEC section 4).
A record, not an exception: the engine, the worker, the canceller and the recovery sweep each
end executions, and all of them describe the end with this one shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ExecutionError:
    message: str
    type: str
    """What kind of end: ``node_error`` (or the failed node's own type), ``timeout``,
    ``cancelled``, ``lost``, ``maintenance``, ``invalid_input``, ``worker_error``, ..."""
    node_id: str | None = None
    """The node that ended the execution, when one did."""

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ``{"message", "nodeId", "type"}``."""
        return {"message": self.message, "nodeId": self.node_id, "type": self.type}
