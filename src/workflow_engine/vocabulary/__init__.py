"""The words every layer shares: statuses, the node result and progress records, the execution
error, how times are written, the queue classes. The bottom of the package: it imports nothing
of ours, so the store, the queue, the API, the events and the nodes can name a status without
depending on the engine that produces it."""

from workflow_engine.vocabulary.errors import ExecutionError
from workflow_engine.vocabulary.results import NodeResult, Progress
from workflow_engine.vocabulary.service import DEFAULT_API_URL, QUEUE_NAMES
from workflow_engine.vocabulary.status import (
    ACTIVE_STATUSES,
    FINAL_NODE_STATUSES,
    FINAL_STATUSES,
    ExecutionStatus,
    NodeStatus,
)
from workflow_engine.vocabulary.times import from_iso, iso, iso_ms, now_ms

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_API_URL",
    "FINAL_NODE_STATUSES",
    "FINAL_STATUSES",
    "QUEUE_NAMES",
    "ExecutionError",
    "ExecutionStatus",
    "NodeResult",
    "NodeStatus",
    "Progress",
    "from_iso",
    "iso",
    "iso_ms",
    "now_ms",
]
