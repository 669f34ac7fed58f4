"""The writes a group-commit batch is made of, and the one table of status transitions each
``Transition`` is checked against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflow_engine.vocabulary import ExecutionStatus, NodeResult

S = ExecutionStatus

ALLOWED_FROM: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    S.PENDING: frozenset({S.FAILED}),  # only an admin's retry of failed jobs (queue/admin.py)
    S.RUNNING: frozenset({S.PENDING, S.RUNNING, S.WAITING}),
    S.WAITING: frozenset({S.RUNNING}),
    S.COMPLETED: frozenset({S.RUNNING}),
    S.FAILED: frozenset({S.PENDING, S.RUNNING, S.WAITING}),
    S.CANCELLED: frozenset({S.PENDING, S.RUNNING, S.WAITING}),
    S.SKIPPED: frozenset({S.PENDING, S.RUNNING}),
}
"""Status -> the statuses it may follow. pending -> running -> completed|failed|cancelled|skipped;
running -> running is a retry or a stalled job taken over; waiting is reserved for parked runs;
failed -> pending is an admin's retry of the failed jobs."""


@dataclass(frozen=True, slots=True)
class Transition:
    execution_id: str
    to: ExecutionStatus
    values: dict[str, Any] = field(default_factory=dict)
    """Other columns to set with the status (result, error, progress, attempts, *_at), in
    their stored form (``error`` as its wire dict)."""
    expect: frozenset[ExecutionStatus] | None = None
    """Narrow the statuses it may follow (``{PENDING}``: only if it has not started)."""
    stamp: frozenset[str] = frozenset()
    """Time columns the backend sets to the commit time (``started_at`` only if unset)."""

    @property
    def allowed_from(self) -> frozenset[ExecutionStatus]:
        allowed = ALLOWED_FROM[self.to]
        return allowed if self.expect is None else allowed & self.expect


@dataclass(frozen=True, slots=True)
class SaveNode:
    execution_id: str
    result: NodeResult
    seq: int = 0
    """Position in the execution's order of events: node results are listed by it."""


@dataclass(frozen=True, slots=True)
class SaveProgress:
    execution_id: str
    progress: dict[str, Any]


Write = Transition | SaveNode | SaveProgress
