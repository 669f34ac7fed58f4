"""Rebuilding an execution's event stream from the store after events were lost (Redis was
down while they were published, or the worker that published them died before they were
written): every node the store has a final result for gets its ``node.completed``/``failed``/
``skipped`` event if the stream lacks it, marked ``recovered``. They come after the events
already there (a replay shows them late, never not at all); the execution's own final event
is written by the caller, after them."""

from __future__ import annotations

from typing import Any, cast

from workflow_engine.events.model import decode_entry, entry_type
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.monitor.logging import get_logger
from workflow_engine.store.base import StateStore
from workflow_engine.worker.hooks import NODE_EVENT, node_event

log = get_logger(__name__)

_NODE_FINAL_TYPES = frozenset(NODE_EVENT.values())


async def republish_node_events(
    store: StateStore, events: EventPublisher, execution_id: str
) -> int:
    """Append the node events the stream lacks; how many were appended (and written)."""
    key = events.keys.events(execution_id)
    entries: list[tuple[str, dict[str, str]]] = cast(Any, await events.redis.xrange(key))
    seen: set[tuple[str, str]] = set()
    for entry_id, fields in entries:
        event_type = entry_type(fields)
        if event_type in _NODE_FINAL_TYPES:
            data = decode_entry(execution_id, entry_id, fields).data
            if isinstance(data, dict) and "childExecutionId" not in data:  # not a child's copy
                seen.add((event_type, str(data.get("nodeId"))))
    missing = [
        (event_type, result)
        for result in await store.node_results(execution_id)
        if (event_type := NODE_EVENT.get(result.status)) is not None
        and (event_type, result.node_id) not in seen
    ]
    written = None
    for event_type, result in missing:
        data = node_event({**result.to_dict(), "recovered": True})
        written = events.publish(execution_id, event_type, data)
    if written is not None:
        await written
        log.info("lost node events written again", executionId=execution_id, events=len(missing))
    return len(missing)
