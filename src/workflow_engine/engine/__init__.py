"""The executor: runs one workflow graph in-process."""

from workflow_engine.engine.executor import Executor, WorkflowRun
from workflow_engine.engine.hooks import (
    ExecutionHooks,
    NodeFinished,
    NodeRetrying,
    NodeStarted,
    NodeStreamed,
    ProgressChanged,
)
from workflow_engine.engine.plan import WorkflowPlan
from workflow_engine.engine.results import ExecutionOutcome, NodeResult, Progress
from workflow_engine.engine.status import ExecutionStatus, NodeStatus

__all__ = [
    "ExecutionHooks",
    "ExecutionOutcome",
    "ExecutionStatus",
    "Executor",
    "NodeFinished",
    "NodeResult",
    "NodeRetrying",
    "NodeStarted",
    "NodeStatus",
    "NodeStreamed",
    "Progress",
    "ProgressChanged",
    "WorkflowPlan",
    "WorkflowRun",
]
