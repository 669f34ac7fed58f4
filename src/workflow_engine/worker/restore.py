"""Where a run starts from: the node results it must not run again, merged from the job (a
rerun's reused outputs), the store and the Redis checkpoint (the newer), and the attempts that
interrupted runs made of the nodes they were running."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflow_engine.events.publisher import EventPublisher, read_checkpoint
from workflow_engine.store.base import StateStore
from workflow_engine.vocabulary import NodeResult, NodeStatus

RESTORABLE = frozenset(
    {NodeStatus.COMPLETED, NodeStatus.SKIPPED, NodeStatus.FAILED, NodeStatus.WAITING}
)
"""Results a run keeps (the executor decides which of them run again: a failed node under
``on_error: fail``, a parked one with its ticket)."""


@dataclass(frozen=True, slots=True)
class RestorePoint:
    restored: dict[str, NodeResult] = field(default_factory=dict)
    prior_attempts: dict[str, int] = field(default_factory=dict)
    """Node -> attempts made of it by runs that were interrupted while running it."""
    unsaved: list[NodeResult] = field(default_factory=list)
    """The restored results the store does not have yet, in the order they finished."""


async def restore_point(
    store: StateStore,
    events: EventPublisher,
    execution_id: str,
    data: dict[str, Any],
    *,
    resumed: bool,
) -> RestorePoint:
    """``data`` is the job's; ``resumed``: an earlier run had the execution."""
    given = {r["nodeId"]: NodeResult.from_dict(r) for r in data.get("restored") or ()}
    if not resumed:
        return RestorePoint(given, {}, sorted(given.values(), key=_finish_time))
    stored = {r.node_id: r for r in await store.node_results(execution_id)}
    merged = {**given, **stored}
    prior: dict[str, int] = {}
    for node_id, entry in (await read_checkpoint(events.redis, events.keys, execution_id)).items():
        if entry.get("status") == "running":
            prior[node_id] = max(prior.get(node_id, 0), int(entry.get("attempt") or 1))
        else:
            merged[node_id] = NodeResult.from_dict(entry)
    for node_id, result in merged.items():
        if result.status is NodeStatus.CANCELLED:  # interrupted: it runs again
            prior[node_id] = max(prior.get(node_id, 0), result.attempt)
    restored = {n: r for n, r in merged.items() if r.status in RESTORABLE}
    unsaved = [
        result
        for node_id, result in restored.items()
        if node_id not in stored or stored[node_id].status is not result.status
    ]
    return RestorePoint(restored, prior, sorted(unsaved, key=_finish_time))


def _finish_time(result: NodeResult) -> float:
    return result.completed_at or result.started_at or 0.0
