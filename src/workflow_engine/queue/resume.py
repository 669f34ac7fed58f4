"""Delivering an answer to an execution parked on ``wait_input``: check it against the node's
schema, record it (only while the execution still waits), and wake the execution's delayed
job so that a worker resumes it now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema

from workflow_engine.errors import AnswerValidationError, InvalidRequest, Problem
from workflow_engine.jsonschemas import compile_schema, schema_problems
from workflow_engine.monitor.logging import get_logger
from workflow_engine.nodes.wait_input import WAITING_FOR_INPUT
from workflow_engine.queue.children import wake
from workflow_engine.queue.queues import QueueSet
from workflow_engine.queue.submit import Conflict, NotFound
from workflow_engine.store.base import StateStore
from workflow_engine.vocabulary import ExecutionStatus, NodeResult, NodeStatus

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Resumed:
    execution_id: str
    node_id: str


def asks_for_input(result: NodeResult) -> bool:
    ticket = result.output
    return (
        result.status is NodeStatus.WAITING
        and isinstance(ticket, dict)
        and ticket.get("waitingFor") == WAITING_FOR_INPUT
        and "answer" not in ticket
    )


class Resumer:
    def __init__(self, store: StateStore, queues: QueueSet) -> None:
        self.store = store
        self.queues = queues

    async def resume(
        self, execution_id: str, tenant_id: str | None, node_id: str | None, answer: Any
    ) -> Resumed:
        """``NotFound``; ``Conflict`` when the execution does not wait for input (any more);
        ``AnswerValidationError`` when the answer breaks the node's schema;
        ``InvalidRequest`` when several nodes wait and ``node_id`` does not say which."""
        record = await self.store.get(execution_id, tenant_id)
        if record is None:
            raise NotFound(f"execution {execution_id} not found")
        if record.status is not ExecutionStatus.WAITING:
            raise Conflict(
                f"execution {execution_id} is {record.status}; only a waiting execution can be "
                "resumed"
            )
        asking = {r.node_id: r for r in await self.store.node_results(execution_id)}
        asking = {k: r for k, r in asking.items() if asks_for_input(r)}
        node = self._choose(execution_id, asking, node_id)
        ticket = node.output or {}
        try:
            validator = compile_schema(ticket.get("schema") or {})
        except jsonschema.SchemaError:  # checked at submit time; an old ticket, say
            validator = compile_schema({})
        problems = schema_problems(validator, answer, "input", "invalid_answer")
        if problems:
            raise AnswerValidationError(problems)
        if not await self.store.answer(execution_id, node.node_id, answer):
            raise Conflict(f"execution {execution_id} no longer waits for node {node.node_id}")
        await self._wake(record.queue, execution_id)
        log.info("answer delivered", executionId=execution_id, nodeId=node.node_id)
        return Resumed(execution_id, node.node_id)

    @staticmethod
    def _choose(
        execution_id: str, asking: dict[str, NodeResult], node_id: str | None
    ) -> NodeResult:
        if node_id is not None:
            if node_id not in asking:
                raise Conflict(
                    f"node {node_id} of execution {execution_id} is not waiting for input"
                )
            return asking[node_id]
        if not asking:
            raise Conflict(f"execution {execution_id} is not waiting for input")
        if len(asking) > 1:
            raise InvalidRequest(
                [
                    Problem(
                        "nodeId",
                        f"several nodes wait for input ({', '.join(sorted(asking))}); "
                        "say which one",
                        "required",
                    )
                ]
            )
        return next(iter(asking.values()))

    async def _wake(self, queue_name: str, execution_id: str) -> None:
        await wake(self.store, self.queues, queue_name, execution_id)
