"""The executor: runs one workflow graph in-process."""

from workflow_engine.engine.executor import Executor, WorkflowRun
from workflow_engine.engine.hooks import (
    ExecutionHooks,
    NodeFinished,
    NodeLogged,
    NodeRetrying,
    NodeStarted,
    NodeStreamed,
    ProgressChanged,
)
from workflow_engine.engine.results import ExecutionOutcome
from workflow_engine.plan import WorkflowPlan
from workflow_engine.vocabulary import (
    ExecutionError,
    ExecutionStatus,
    NodeResult,
    NodeStatus,
    Progress,
)

# WorkflowPlan, the statuses, NodeResult and Progress live below the engine (``plan``,
# ``vocabulary``) and are re-exported here, where they were first published.
__all__ = [
    "ExecutionError",
    "ExecutionHooks",
    "ExecutionOutcome",
    "ExecutionStatus",
    "Executor",
    "NodeFinished",
    "NodeLogged",
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
