"""The store's errors: one base, and the class says whether to retry."""

from __future__ import annotations

from workflow_engine.errors import WorkflowEngineError
from workflow_engine.vocabulary import ExecutionStatus


class StoreError(WorkflowEngineError):
    """Base of store errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached; retry later."""


class IllegalTransition(StoreError):
    def __init__(self, execution_id: str, to: ExecutionStatus, current: ExecutionStatus | None):
        self.execution_id = execution_id
        self.to = to
        self.current = current
        where = f"is {current}" if current is not None else "does not exist"
        super().__init__(f"execution {execution_id} {where}; it cannot become {to}")
